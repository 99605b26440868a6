"""Chapter 12 exercises: the 80/10/10 corruption, BERT's embeddings, its two heads and the masked
loss. Grade them with

    python exercises/grade.py 12

Each function replaces one piece of ``tinyllm/models/bert.py`` or
``tinyllm/objectives/masked_lm.py`` while the chapter's real tests run (see exercises/README.md).
Shapes: ids, segment ids and the attention mask (B, T), width C, vocabulary V; h (B, T, C).
Labels use ``IGNORE_INDEX`` = -100 (``tinyllm.nn.losses``) at the positions that carry no loss.
"""

from __future__ import annotations


def mask_tokens(tokens, mask_id, vocab_size, special_ids=(), p=0.15, rng=None):
    """Replaces ``tinyllm.objectives.masked_lm.mask_tokens``: BERT's corruption   (eq. 12.2)

    ``tokens`` (T,) or (B, T) integer ids (leave them unmodified); returns new int64 arrays
    ``(inputs, labels)`` of the same shape. Per row, of its n ordinary tokens (not in
    ``special_ids`` and not ``mask_id``) choose exactly k = max(1, round(p n)) positions (k = 0
    when n = 0) uniformly at random, e.g. the k smallest of random keys, with the specials' keys
    set to inf. Each chosen token independently becomes
        ``mask_id`` with probability 0.8, a uniformly drawn ordinary id (never a special one)
        with probability 0.1, and stays itself with probability 0.1;
    the other positions are untouched. ``labels`` hold the original token at the chosen positions
    and -100 elsewhere (eq. 12.1 counts only those). ``rng`` None: ``np.random.default_rng()``.
    Refuse (ValueError) tokens that are not integer (T,) or (B, T) ids in [0, vocab_size), a
    mask_id outside the vocabulary, p outside (0, 1), and a vocabulary with no ordinary token.
    """
    raise NotImplementedError("exercise 12.1: choose 15% of the ordinary tokens, then 80/10/10")


def bert_encode(self, ids, segment_ids=None, attention_mask=None):
    """Replaces ``tinyllm.models.bert.BERT.encode``: the contextual vectors h (B, T, C)   (12.4)

    ``ids`` an array, a list or a Tensor (use ``ids.data``); ``segment_ids`` None means all 0
    (``xp.zeros_like(ids)``). Check them with ``self._check_ids(ids, segment_ids)``. Then
        h^(0) = LN(E_tok[x_t] + E_pos[t] + E_seg[s_t])   ``self.tok_emb``, ``self.pos_emb`` (it adds
                                                           the positions to its input),
                                                           ``self.seg_emb``, ``self.emb_ln``,
                                                           then dropout ``self.emb_drop``
        h = ``self.encoder(h^(0), mask=attention_mask)``  L post-LN blocks, no causal mask: only
                                                           the padding mask (True = real token)
    """
    raise NotImplementedError("exercise 12.2: token + position + segment, LayerNorm, the encoder")


def bert_mlm_logits(self, h):
    """Replaces ``tinyllm.models.bert.BERT.mlm_logits``: the MLM head, h (..., C) -> (..., V)

    z = LN(GELU(h W_d + b_d)) E_tok^T + b_out     (eq. 12.4)
    with ``self.mlm_dense`` (W_d, b_d), ``self.mlm_act`` (GELU), ``self.mlm_ln``; the output layer
    is tied to the token embedding ``self.tok_emb.weight`` (V, C), transposed, with its own bias
    ``self.mlm_bias`` (V,).
    """
    raise NotImplementedError("exercise 12.3: dense, GELU, LayerNorm, then the tied E_tok^T + b")


def bert_nsp_logits(self, h):
    """Replaces ``tinyllm.models.bert.BERT.nsp_logits``: the NSP head, h (B, T, C) -> (B, 2)

    On the vector of the [CLS] position (position 0 of every row):
        logits = W_nsp tanh(W_p h_[CLS] + b_p) + b_nsp      (inside the softmax of eq. 12.3)
    with the pooler ``self.pooler`` (W_p, b_p) and the classifier ``self.nsp_head``. Class 0 is
    IsNext, class 1 NotNext.
    """
    raise NotImplementedError("exercise 12.4: the pooler's tanh on h[:, 0], then the classifier")


def mlm_loss(logits, labels):
    """Replaces ``tinyllm.objectives.masked_lm.mlm_loss``: the masked-token loss   (eq. 12.1)

    L_MLM = -1/|M| sum_{(b,i) in M} log softmax(z_{b,i})[x_{b,i}],  M the labelled positions.
    ``logits`` (B, T, V) with ``labels`` (B, T), or logits (N, V) with labels (N,); a label of -100
    (``IGNORE_INDEX``) marks a position without loss. Equal to ``cross_entropy(logits, labels)``
    with ignore_index -100 (``tinyllm.nn.losses``), but gather the labelled rows of the flattened
    logits (..., V) -> (N, V) first, so the V-wide softmax runs only on them (the gather's backward
    scatters the gradient back). ``labels`` may be an array, a list or a Tensor: turn them into
    the flat ids with ``as_targets(labels, logits, "mlm_loss", move=False).reshape(-1)``
    (``tinyllm.nn.losses``, it checks them). No labelled row at all: the loss is 0 with a zero
    gradient (cross_entropy of zero rows gives that).
    """
    raise NotImplementedError("exercise 12.5: gather the labelled rows, then cross-entropy")


# number, the library attribute it replaces, your function, the tests that grade it
EXERCISES = (
    ("12.1", "tinyllm.objectives.masked_lm:mask_tokens", mask_tokens,
     ("tests/test_12_bert.py::test_mask_tokens_chooses_15_percent_of_ordinary_tokens",
      "tests/test_12_bert.py::test_mask_tokens_80_10_10",
      "tests/test_12_bert.py::test_mask_tokens_on_one_sequence",
      "tests/test_12_bert.py::test_task_batches")),
    ("12.2", "tinyllm.models.bert:BERT.encode", bert_encode,
     ("tests/test_12_bert.py::test_embeddings_follow_their_definition",
      "tests/test_12_bert.py::test_attention_is_bidirectional",
      "tests/test_12_bert.py::test_padded_positions_do_not_change_real_positions",
      "tests/test_12_bert.py::test_bad_inputs_are_clear_errors",
      "tests/test_12_bert.py::test_dropout_acts_in_training_mode_only",
      "tests/test_12_bert.py::test_gradcheck_of_mlm_plus_nsp_loss[seg_emb.weight]",
      "tests/test_12_bert.py::test_gradcheck_of_mlm_plus_nsp_loss[emb_ln.weight]",
      "tests/test_12_bert.py::test_gradcheck_of_mlm_plus_nsp_loss"
      "[encoder.layers.0.attn.q_proj.weight]")),
    ("12.3", "tinyllm.models.bert:BERT.mlm_logits", bert_mlm_logits,
     ("tests/test_12_bert.py::test_heads_follow_their_definitions",
      "tests/test_12_bert.py::test_masked_positions_path_equals_gathering_the_full_logits",
      "tests/test_12_bert.py::test_gradcheck_of_mlm_plus_nsp_loss[tok_emb.weight]")),
    ("12.4", "tinyllm.models.bert:BERT.nsp_logits", bert_nsp_logits,
     ("tests/test_12_bert.py::test_losses_at_initialisation",
      "tests/test_12_bert.py::test_gradcheck_of_mlm_plus_nsp_loss[pooler.weight]",
      "tests/test_12_bert.py::test_gradcheck_of_mlm_plus_nsp_loss[nsp_head.weight]")),
    ("12.5", "tinyllm.objectives.masked_lm:mlm_loss", mlm_loss,
     ("tests/test_12_bert.py::test_gradcheck_of_mlm_plus_nsp_loss[mlm_bias]",
      "tests/test_12_bert.py::test_task_loss_is_mlm_plus_nsp_cross_entropy",
      "tests/test_12_bert.py::test_task_evaluate_recomputed",
      "tests/test_03_softmax.py::test_mlm_loss_equals_cross_entropy_with_ignore_index")),
)
