"""Chapter 12: the BERT model and its pretraining task (masked-language modelling + next-sentence
prediction).

Under test: ``tinyllm/models/bert.py`` (parameter count eq. 12.5, bidirectional attention, the
padding mask, the MLM head tied to the token embedding, the NSP head, the ``masked_positions``
shortcut, initialisation, input errors) and ``tinyllm/objectives/masked_lm.py``: the 80/10/10
corruption (``mask_tokens``, eq. 12.2), sentence pairs (``nsp_pairs``) and ``MaskedLMTask`` (its
batches, its loss eq. 12.3 and its metrics). Evidence: float64 gradient checks of the whole MLM +
NSP loss; the heads, the loss and the masking statistics recomputed from their definitions in NumPy;
exact invariances (padding, bidirectionality).
"""

import math

import numpy as np
import pytest
from synthetic import synthetic_play

import tinyllm as tl
from tinyllm.models import BERT, BERT_PRESETS, BERTConfig, bert_parameter_count
from tinyllm.nn.losses import IGNORE_INDEX
from tinyllm.objectives import (
    BERT_SPECIAL_TOKENS,
    MaskedLMTask,
    mask_tokens,
    mlm_loss,
    nsp_loss,
    nsp_pairs,
    text_segments,
)
from tinyllm.tokenizers import BPETokenizer

pytestmark = pytest.mark.ch12

TINY = BERTConfig(vocab_size=30, context_length=16, num_layers=2, num_heads=2, d_model=16, d_ff=32)
TINY_NO_DROPOUT = BERTConfig(
    vocab_size=30, context_length=16, num_layers=2, num_heads=2, d_model=16, d_ff=32, dropout=0.0
)


def tiny_bert(seed: int = 0, config: BERTConfig = TINY) -> BERT:
    return BERT(config, rng=np.random.default_rng(seed)).eval()


def random_ids(shape, seed: int = 0, vocab: int = TINY.vocab_size) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, shape)


def padded_batch(seed: int = 0):
    """Two rows of 16 positions: row 0 has 10 real tokens (segments 0 then 1), row 1 has 7."""
    ids = random_ids((2, 16), seed)
    mask = np.zeros((2, 16), dtype=bool)
    mask[0, :10] = True
    mask[1, :7] = True
    segments = np.zeros((2, 16), dtype=np.int64)
    segments[0, 5:10] = 1
    segments[1, 4:7] = 1
    return ids, segments, mask


def numpy_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def numpy_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    log_probs = numpy_log_softmax(logits.astype(np.float64))
    return float(-np.take_along_axis(log_probs, targets[:, None], axis=-1).mean())


def numpy_layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * gamma + beta


numpy_erf = np.vectorize(math.erf)


# ==================================================================================================
# Parameters (eq. 12.5)
# ==================================================================================================


def expected_bert_shapes(config: BERTConfig) -> dict[str, tuple[int, ...]]:
    V, T, S = config.vocab_size, config.context_length, config.type_vocab_size
    C, F = config.d_model, config.d_ff
    shapes = {
        "mlm_bias": (V,),
        "tok_emb.weight": (V, C),
        "pos_emb.weight": (T, C),
        "seg_emb.weight": (S, C),
        "emb_ln.weight": (C,),
        "emb_ln.bias": (C,),
    }
    for layer in range(config.num_layers):
        p = f"encoder.layers.{layer}."
        for norm in ("ln1", "ln2"):
            shapes[p + norm + ".weight"] = shapes[p + norm + ".bias"] = (C,)
        for name, (fan_in, fan_out) in {
            "attn.q_proj": (C, C),
            "attn.k_proj": (C, C),
            "attn.v_proj": (C, C),
            "attn.out_proj": (C, C),
            "ff.fc1": (C, F),
            "ff.fc2": (F, C),
        }.items():
            shapes[p + name + ".weight"], shapes[p + name + ".bias"] = (fan_in, fan_out), (fan_out,)
    shapes.update(
        {
            "pooler.weight": (C, C),
            "pooler.bias": (C,),
            "nsp_head.weight": (C, 2),
            "nsp_head.bias": (2,),
            "mlm_dense.weight": (C, C),
            "mlm_dense.bias": (C,),
            "mlm_ln.weight": (C,),
            "mlm_ln.bias": (C,),
        }
    )
    return shapes


@pytest.mark.parametrize(
    "config",
    [
        TINY,
        BERTConfig(
            vocab_size=7,
            context_length=5,
            num_layers=1,
            num_heads=1,
            d_model=4,
            d_ff=12,
            type_vocab_size=3,
        ),
    ],
)
def test_parameter_count_closed_form_and_by_name(config):
    model = BERT(config, rng=np.random.default_rng(0))
    expected = expected_bert_shapes(config)
    assert {name: p.shape for name, p in model.named_parameters()} == expected
    assert (
        model.num_parameters()
        == bert_parameter_count(config)
        == sum(math.prod(s) for s in expected.values())
    )


def test_parameter_count_of_bert_base():
    """BERT-base with its MLM and NSP heads has 110,106,428 parameters, the encoder and pooler alone
    109,482,240 (the counts of the released checkpoint)."""
    config = BERT_PRESETS["bert-base"]
    assert bert_parameter_count(config) == 110_106_428
    C, V = config.d_model, config.vocab_size
    heads = (2 * C + 2) + (C * C + C + 2 * C + V)
    assert bert_parameter_count(config) - heads == 109_482_240


def test_mlm_output_layer_is_the_token_embedding():
    model = tiny_bert()
    matrices = [p for p in model.parameters() if p.shape == (TINY.vocab_size, TINY.d_model)]
    assert len(matrices) == 1 and matrices[0] is model.tok_emb.weight


# ==================================================================================================
# The heads, recomputed from their definitions
# ==================================================================================================


def test_heads_follow_their_definitions():
    # eq. 12.4: z = LN(GELU(W_d h + b_d)) E_tok^T + b_out
    """MLM: LN(GELU(h W_d + b_d)) W_te^T + b;   NSP: tanh(h_cls W_p + b_p) W_n + b_n."""
    model = BERT(TINY, rng=np.random.default_rng(1)).astype(np.float64).eval()
    ids, segments, mask = padded_batch(1)
    with tl.no_grad():
        h = model.encode(ids, segments, mask).numpy()  # (B, T, C)
        mlm, nsp = model(ids, segments, mask)
    weights = {name: p.numpy() for name, p in model.named_parameters()}
    a = h @ weights["mlm_dense.weight"] + weights["mlm_dense.bias"]
    a = 0.5 * a * (1 + numpy_erf(a / math.sqrt(2)))
    a = numpy_layer_norm(a, weights["mlm_ln.weight"], weights["mlm_ln.bias"], TINY.eps)
    # GELU's float64 erf is Cody's (relative error ~1e-16), so the MLM logits match to rounding
    np.testing.assert_allclose(
        mlm.numpy(), a @ weights["tok_emb.weight"].T + weights["mlm_bias"], atol=1e-12
    )
    pooled = np.tanh(h[:, 0] @ weights["pooler.weight"] + weights["pooler.bias"])
    np.testing.assert_allclose(
        nsp.numpy(), pooled @ weights["nsp_head.weight"] + weights["nsp_head.bias"], atol=1e-12
    )
    assert mlm.shape == (2, 16, TINY.vocab_size) and nsp.shape == (2, 2)


def test_embeddings_follow_their_definition():
    # eq. 12.4: h0 = LN(E_tok + E_pos + E_seg)
    """The encoder input: LN(W_te[ids] + P[t] + W_seg[segments]) with eps 1e-12 (dropout off)."""
    model = BERT(TINY, rng=np.random.default_rng(2)).astype(np.float64).eval()
    ids, segments, _ = padded_batch(2)
    w = {name: p.numpy() for name, p in model.named_parameters()}
    x = w["tok_emb.weight"][ids] + w["pos_emb.weight"][:16] + w["seg_emb.weight"][segments]
    x = numpy_layer_norm(x, w["emb_ln.weight"], w["emb_ln.bias"], 1e-12)
    with tl.no_grad():
        expected = model.encoder(tl.tensor(x)).numpy()
        np.testing.assert_allclose(model.encode(ids, segments).numpy(), expected, atol=1e-12)


# ==================================================================================================
# Bidirectional attention and the padding mask
# ==================================================================================================


def test_attention_is_bidirectional():
    """Unlike GPT, an earlier position sees a later token: change position 12 and position 2
    changes."""
    model = tiny_bert()
    ids = random_ids((2, 16), 3)
    changed = ids.copy()
    changed[:, 12] = (changed[:, 12] + 1) % TINY.vocab_size
    with tl.no_grad():
        before, after = model(ids)[0].numpy(), model(changed)[0].numpy()
    # at initialisation attention is nearly uniform and its effect is small, but exactly nonzero
    assert (
        np.abs(before[:, :12] - after[:, :12]).max(axis=-1).min() > 1e-6
    )  # every earlier position


def test_padded_positions_do_not_change_real_positions():
    """Changing the tokens and segments under [PAD] leaves every real position and the NSP logits
    exact."""
    model = tiny_bert(4)
    ids, segments, mask = padded_batch(4)
    changed_ids, changed_segments = ids.copy(), segments.copy()
    changed_ids[~mask] = (ids[~mask] + 7) % TINY.vocab_size
    changed_segments[~mask] = 1
    with tl.no_grad():
        mlm, nsp = model(ids, segments, mask)
        mlm2, nsp2 = model(changed_ids, changed_segments, mask)
        unmasked = model(changed_ids, changed_segments)[0]  # without the mask padding is visible
    np.testing.assert_array_equal(mlm.numpy()[mask], mlm2.numpy()[mask])
    np.testing.assert_array_equal(nsp.numpy(), nsp2.numpy())
    assert np.abs(unmasked.numpy()[mask] - mlm.numpy()[mask]).max() > 1e-4


def test_masked_positions_path_equals_gathering_the_full_logits():
    model = tiny_bert(5)
    ids, segments, mask = padded_batch(5)
    chosen = np.zeros((2, 16), dtype=bool)
    chosen[0, [1, 4, 8]] = True
    chosen[1, [2, 6]] = True
    with tl.no_grad():
        full, nsp_full = model(ids, segments, mask)
        some, nsp_some = model(ids, segments, mask, masked_positions=chosen)
    assert some.shape == (5, TINY.vocab_size)
    rows, cols = np.nonzero(chosen)  # row-major order
    np.testing.assert_allclose(some.numpy(), full.numpy()[rows, cols], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(nsp_some.numpy(), nsp_full.numpy())


# ==================================================================================================
# Gradients and the loss at initialisation
# ==================================================================================================


@pytest.mark.parametrize(
    "name",
    [
        "tok_emb.weight",
        "mlm_bias",
        "seg_emb.weight",
        "emb_ln.weight",
        "encoder.layers.0.attn.q_proj.weight",
        "encoder.layers.1.ff.fc2.bias",
        "pooler.weight",
        "nsp_head.weight",
    ],
)
def test_gradcheck_of_mlm_plus_nsp_loss(name):
    model = BERT(TINY_NO_DROPOUT, rng=np.random.default_rng(6)).astype(np.float64)
    ids, segments, mask = padded_batch(6)
    chosen = np.zeros((2, 16), dtype=bool)
    chosen[0, [1, 3, 7]] = True
    chosen[1, [2, 5]] = True
    targets = random_ids(5, 7)
    nsp_labels = np.array([0, 1])
    parameter = dict(model.named_parameters())[name]

    def loss(_):
        mlm, nsp = model(ids, segments, mask, masked_positions=chosen)
        return mlm_loss(mlm, targets) + nsp_loss(nsp, nsp_labels)  # eq. 12.3

    assert tl.gradcheck(loss, parameter)


def test_losses_at_initialisation():
    """Near-uniform heads: MLM loss ~ ln V, NSP loss ~ ln 2."""
    config = BERTConfig(
        vocab_size=200, context_length=32, num_layers=2, num_heads=2, d_model=32, d_ff=64
    )
    model = BERT(config, rng=np.random.default_rng(8)).eval()
    ids = random_ids((8, 32), 9, 200)
    with tl.no_grad():
        mlm, nsp = model(ids)
    mlm_loss = numpy_cross_entropy(mlm.numpy().reshape(-1, 200), random_ids(8 * 32, 10, 200))
    nsp_loss = numpy_cross_entropy(nsp.numpy(), random_ids(8, 11, 2))
    assert abs(mlm_loss - math.log(200)) < 0.1
    assert abs(nsp_loss - math.log(2)) < 0.02


def test_initialisation():
    config = BERTConfig(
        vocab_size=300, context_length=64, num_layers=2, num_heads=4, d_model=128, d_ff=512
    )
    model = BERT(config, rng=np.random.default_rng(0))
    for name, p in model.named_parameters():
        values = p.numpy()
        if p.ndim == 2 and values.size >= 10_000:
            assert values.std() == pytest.approx(0.02, rel=0.05), name
        elif p.ndim == 2:  # the segment table (2, C) and the NSP classifier (C, 2): 256 entries
            assert values.std() == pytest.approx(0.02, rel=0.25), name
        elif "ln" in name and name.endswith("weight"):
            np.testing.assert_array_equal(values, 1.0, err_msg=name)
        else:
            np.testing.assert_array_equal(values, 0.0, err_msg=name)


def test_dropout_acts_in_training_mode_only():
    model = BERT(TINY, rng=np.random.default_rng(0))
    ids = random_ids((2, 16))
    with tl.no_grad():
        a, b = model(ids)[0].numpy(), model(ids)[0].numpy()
        model.eval()
        c, d = model(ids)[0].numpy(), model(ids)[0].numpy()
    assert np.abs(a - b).max() > 1e-3
    np.testing.assert_array_equal(c, d)


# ==================================================================================================
# Bad inputs
# ==================================================================================================


def test_bad_inputs_are_clear_errors():
    model = tiny_bert()
    with pytest.raises(ValueError, match=r"input of 17 tokens is longer than context_length = 16"):
        model(random_ids((1, 17)))
    with pytest.raises(ValueError, match=r"BERT expects token ids \(B, T\), got shape \(8,\)"):
        model(random_ids(8))
    ids = random_ids((2, 8))
    ids[0, 5] = 30
    with pytest.raises(IndexError, match=r"token id 30 at position \(0, 5\).*V=30"):
        model(ids)
    with pytest.raises(ValueError, match=r"segment_ids expected \(B, T\) = \(2, 8\), got \(2, 7\)"):
        model(random_ids((2, 8)), np.zeros((2, 7), dtype=np.int64))
    with pytest.raises(IndexError, match=r"token id 2 .*V=2"):
        model(random_ids((2, 8)), np.full((2, 8), 2))
    with pytest.raises(TypeError, match=r"attention mask must be boolean"):
        model(random_ids((2, 8)), attention_mask=np.ones((2, 8), dtype=np.int64))
    with pytest.raises(ValueError, match=r"a 2-D mask is a key padding mask \(B, T_k\) = \(2, 8\)"):
        model(random_ids((2, 8)), attention_mask=np.ones((2, 9), dtype=bool))


# ==================================================================================================
# The pretraining task (MaskedLMTask)
# ==================================================================================================


@pytest.fixture(scope="module")
def task_and_model():
    text = synthetic_play(40)
    cut = int(0.9 * len(text))
    tokenizer = BPETokenizer.train(text[:cut], 300, special_tokens=BERT_SPECIAL_TOKENS)
    task = MaskedLMTask(tokenizer, text[:cut], text[cut:], batch_size=4, context_length=24)
    config = BERTConfig(
        vocab_size=tokenizer.vocab_size,
        context_length=24,
        num_layers=1,
        num_heads=2,
        d_model=16,
        d_ff=32,
    )
    return task, BERT(config, rng=np.random.default_rng(0)).eval()


def test_task_batches(task_and_model):
    task, _ = task_and_model
    batch = task.batch("train", np.random.default_rng(0))
    special = np.array([task.special[name] for name in BERT_SPECIAL_TOKENS])
    inputs, labels, mask = batch["inputs"], batch["labels"], batch["attention_mask"]
    assert inputs.shape == labels.shape == mask.shape == batch["segment_ids"].shape == (4, 24)
    assert (inputs[:, 0] == task.special["[CLS]"]).all()
    chosen = labels != IGNORE_INDEX
    assert chosen.any(axis=1).all() and (chosen <= mask).all()  # every row predicts something real
    assert not np.isin(labels[chosen], special).any()  # never a special token
    ordinary = mask & ~np.isin(np.where(chosen, labels, inputs), special)
    np.testing.assert_array_equal(
        chosen.sum(axis=1), np.maximum(1, np.round(0.15 * ordinary.sum(axis=1)))
    )
    assert set(batch["nsp_labels"].tolist()) <= {0, 1}
    again = task.batch("train", np.random.default_rng(0))
    for key in batch:
        np.testing.assert_array_equal(batch[key], again[key])  # seeded


def test_task_loss_is_mlm_plus_nsp_cross_entropy(task_and_model):
    # eq. 12.1: the MLM part, the mean over the chosen positions of all rows
    """eq. 12.3: mean cross-entropy over the chosen positions + mean NSP cross-entropy over the
    pairs."""
    task, model = task_and_model
    batch = task.batch("train", np.random.default_rng(1))
    with tl.no_grad():
        mlm, nsp = model(batch["inputs"], batch["segment_ids"], batch["attention_mask"])
        loss = task.loss(model, batch).item()
    chosen = batch["labels"] != IGNORE_INDEX
    expected = numpy_cross_entropy(
        mlm.numpy()[chosen], batch["labels"][chosen]
    ) + numpy_cross_entropy(nsp.numpy(), batch["nsp_labels"])
    assert loss == pytest.approx(expected, rel=1e-5)


def test_task_evaluate_recomputed(task_and_model):
    task, model = task_and_model
    metrics = task.evaluate(model, "val", iters=3, seed=5)
    rng = np.random.default_rng(5)
    mlm_losses, nsp_losses, correct, baseline, chosen_total, nsp_correct = [], [], 0, 0, 0, 0
    for _ in range(3):
        batch = task.batch("val", rng)
        with tl.no_grad():
            mlm, nsp = model(batch["inputs"], batch["segment_ids"], batch["attention_mask"])
        chosen = batch["labels"] != IGNORE_INDEX
        logits, targets = mlm.numpy()[chosen], batch["labels"][chosen]
        mlm_losses.append(numpy_cross_entropy(logits, targets))
        nsp_losses.append(numpy_cross_entropy(nsp.numpy(), batch["nsp_labels"]))
        correct += int((logits.argmax(-1) == targets).sum())
        baseline += int((targets == task.most_frequent).sum())
        nsp_correct += int((nsp.numpy().argmax(-1) == batch["nsp_labels"]).sum())
        chosen_total += len(targets)
    assert metrics["mlm_loss"] == pytest.approx(np.mean(mlm_losses), rel=1e-5)
    assert metrics["loss"] == pytest.approx(np.mean(mlm_losses) + np.mean(nsp_losses), rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["mlm_loss"]), rel=1e-9)
    assert metrics["mlm_accuracy"] == correct / chosen_total
    assert metrics["baseline_accuracy"] == baseline / chosen_total
    assert metrics["nsp_accuracy"] == nsp_correct / 12
    # the baseline token is the most frequent ordinary token of the training text
    counts = np.bincount(np.concatenate([np.asarray(s) for s in task.segments["train"]]))
    assert task.most_frequent == counts.argmax()


def test_task_evaluate_measures_the_model_without_dropout(task_and_model):
    task, eval_model = task_and_model
    model = BERT(
        eval_model.config, rng=np.random.default_rng(0)
    )  # the same weights, in training mode
    assert model.training
    metrics = task.evaluate(model, "val", iters=2, seed=3)
    assert metrics == task.evaluate(eval_model, "val", iters=2, seed=3)
    assert model.training


def test_task_errors():
    text = synthetic_play(4)
    plain = BPETokenizer.train(text, 260)
    with pytest.raises(
        ValueError, match=r"needs a tokenizer with special tokens \['\[PAD\]', '\[CLS\]'"
    ):
        MaskedLMTask(plain, text, text, 2, 16)
    tokenizer = BPETokenizer.train(text, 270, special_tokens=BERT_SPECIAL_TOKENS)
    one_paragraph = "A:\nonly one speech here\n"
    assert len(text_segments(one_paragraph)) == 1
    with pytest.raises(ValueError, match=r"the val text has 1 paragraphs; NSP needs at least 2"):
        MaskedLMTask(tokenizer, text, one_paragraph, 2, 16)


# ==================================================================================================
# Masking (eq. 12.2) and sentence pairs
# ==================================================================================================

VOCAB, PAD, CLS, SEP, MASK = 1000, 0, 1, 2, 3


@pytest.fixture(scope="module")
def masked():
    rng = np.random.default_rng(0)
    tokens = rng.integers(4, VOCAB, size=(1000, 200))  # 200k tokens
    tokens[:, 0], tokens[:, -1], tokens[::7, 150:] = CLS, SEP, PAD
    original = tokens.copy()
    inputs, labels = mask_tokens(tokens, MASK, VOCAB, special_ids=(PAD, CLS, SEP), rng=rng)
    assert np.array_equal(tokens, original)  # the input is not modified
    return tokens, inputs, labels


def test_mask_tokens_chooses_15_percent_of_ordinary_tokens(masked):
    tokens, inputs, labels = masked
    ordinary = tokens > MASK
    chosen = labels != IGNORE_INDEX
    assert not np.any(chosen & ~ordinary)  # special tokens are never chosen
    assert abs(chosen.sum() / ordinary.sum() - 0.15) < 0.005
    n = ordinary.sum(axis=1)
    np.testing.assert_array_equal(chosen.sum(axis=1), np.maximum(1, np.round(0.15 * n)))


def test_mask_tokens_80_10_10(masked):
    # eq. 12.2
    tokens, inputs, labels = masked
    chosen = labels != IGNORE_INDEX
    np.testing.assert_array_equal(labels[chosen], tokens[chosen])
    np.testing.assert_array_equal(inputs[~chosen], tokens[~chosen])  # the rest is untouched
    as_mask = inputs[chosen] == MASK
    kept = inputs[chosen] == tokens[chosen]
    random = ~as_mask & ~kept
    assert abs(as_mask.mean() - 0.8) < 0.015
    assert abs(random.mean() - 0.1) < 0.015
    assert abs(kept.mean() - 0.1) < 0.015
    assert np.all(inputs[chosen][random] > MASK)  # random tokens are never special


def test_mask_tokens_on_one_sequence():
    tokens = np.arange(4, 24)  # 20 ordinary tokens
    inputs, labels = mask_tokens(tokens, MASK, 30, rng=np.random.default_rng(3))
    assert inputs.shape == labels.shape == (20,)
    assert (labels != IGNORE_INDEX).sum() == 3  # round(0.15 * 20)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mask_id": 1000}, r"mask_id=1000 is outside the vocabulary \[0, 1000\)"),
        ({"p": 0.0}, r"p must be in \(0, 1\)"),
        ({"p": 1.0}, r"p must be in \(0, 1\)"),
        ({"tokens": np.array([5, 1000])}, r"token ids must be in \[0, 1000\)"),
        ({"tokens": np.array([0.5, 1.0])}, "integer ids"),
    ],
)
def test_mask_tokens_errors(kwargs, message):
    args = {"tokens": np.array([4, 5, 6]), "mask_id": MASK, "vocab_size": VOCAB} | kwargs
    with pytest.raises(ValueError, match=message):
        mask_tokens(**args)


def test_nsp_pairs_structure_and_labels():
    rng = np.random.default_rng(0)
    # Segment s starts with id 100 + s, so a row tells which segments it holds.
    segments = [[100 + s] + list(rng.integers(10, 100, rng.integers(1, 12))) for s in range(50)]
    batch = nsp_pairs(
        segments, batch_size=2000, context_length=16, cls_id=CLS, sep_id=SEP, pad_id=PAD, rng=rng
    )
    assert batch.input_ids.shape == batch.segment_ids.shape == batch.attention_mask.shape
    assert batch.input_ids.shape == (2000, 16) and batch.nsp_labels.shape == (2000,)
    np.testing.assert_array_equal(batch.attention_mask, batch.input_ids != PAD)
    assert abs(batch.nsp_labels.mean() - 0.5) < 0.05
    for ids, seg, label in zip(batch.input_ids, batch.segment_ids, batch.nsp_labels):
        real = ids[ids != PAD]
        seps = np.flatnonzero(real == SEP)
        assert real[0] == CLS and len(seps) == 2 and seps[1] == len(real) - 1
        a, b = real[1 : seps[0]], real[seps[0] + 1 : seps[1]]
        first, second = a[0] - 100, b[0] - 100
        np.testing.assert_array_equal(a, segments[first][: len(a)])  # truncated from the end
        np.testing.assert_array_equal(b, segments[second][: len(b)])
        full_a, full_b = len(segments[first]), len(segments[second])
        assert len(a) + len(b) == min(full_a + full_b, 16 - 3)  # the block is used fully
        assert len(a) >= min(full_a, 6) and len(b) >= min(full_b, 6)  # only the longer is cut
        assert label == (0 if second == first + 1 else 1)
        np.testing.assert_array_equal(seg[: len(a) + 2], 0)
        np.testing.assert_array_equal(seg[len(a) + 2 : len(real)], 1)
        np.testing.assert_array_equal(seg[len(real) :], 0)


def test_nsp_pairs_errors():
    kwargs = {
        "batch_size": 2,
        "cls_id": CLS,
        "sep_id": SEP,
        "pad_id": PAD,
        "rng": np.random.default_rng(0),
    }
    with pytest.raises(ValueError, match="at least 2 segments"):
        nsp_pairs([[5, 6]], context_length=8, **kwargs)
    with pytest.raises(ValueError, match="at least 5"):
        nsp_pairs([[5], [6]], context_length=4, **kwargs)
