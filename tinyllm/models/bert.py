"""BERT: a bidirectional Transformer encoder pretrained by masked-language modelling (chapter 12).

    ids, segments (B, T) -> token + position + segment embeddings -> LayerNorm -> dropout
    -> L post-LN encoder blocks (every position sees every real position)
    -> MLM head: dense C -> C, GELU, LayerNorm, then logits = h W_te^T + b (B, T, V), tied to the
       input embedding (Devlin et al. 2019, as in the released BERT)
    -> NSP head on the [CLS] position: pooler tanh(h_cls W_p + b_p), then a 2-way classifier.

The module names and the LayerNorm epsilon 1e-12 follow the released BERT, so its weights map one to
one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyllm.backend import get_array_module, to_numpy
from tinyllm.creation import default_rng, spawn_rng
from tinyllm.nn import (
    Dropout,
    Embedding,
    LayerNorm,
    LearnedPositionalEmbedding,
    Linear,
    Module,
    Parameter,
    TransformerEncoder,
)
from tinyllm.nn.transformer import _activation as activation_layer
from tinyllm.tensor import DEFAULT_DTYPE, Tensor


@dataclass(frozen=True)
class BERTConfig:
    """The shape of a BERT. ``vocab_size`` comes from the tokenizer."""

    vocab_size: int = 2000  # V: BPE vocabulary including [PAD] [CLS] [SEP] [MASK]
    context_length: int = 64  # longest input, [CLS] A [SEP] B [SEP] (number of learned positions)
    num_layers: int = 4  # L: encoder blocks
    num_heads: int = 4  # H: attention heads per block
    d_model: int = 128  # C: model width (BERT-base: 768)
    d_ff: int = 512  # feed-forward width, 4 C
    type_vocab_size: int = 2  # segment ids: 0 for sentence A, 1 for sentence B
    dropout: float = 0.1  # BERT's dropout on embeddings, attention weights and residual branches
    eps: float = 1e-12  # LayerNorm epsilon of the released BERT
    activation: str = "gelu"  # hidden_act: exact GELU (BERT), "gelu_tanh" or "relu"


BERT_PRESETS = {
    # a small BERT that pretrains on the Shakespeare corpus in minutes on a laptop CPU
    "shakespeare-bert": BERTConfig(),
    # BERT-base's shape (Devlin et al. 2019): 110M parameters with V = 30522
    "bert-base": BERTConfig(vocab_size=30522, context_length=512, num_layers=12, num_heads=12,
                            d_model=768, d_ff=3072),
}


def bert_parameter_count(config: BERTConfig) -> int:
    """Closed form (eq. 12.5): embeddings (V + T + 2) C + 2 C; per block 4 (C^2 + C) + 2 C d_ff +
    d_ff + C + 4 C; pooler C^2 + C; NSP 2 C + 2; MLM head C^2 + C + 2 C + V (its output matrix is
    the tied W_te)."""
    V, T, S = config.vocab_size, config.context_length, config.type_vocab_size
    C, F, L = config.d_model, config.d_ff, config.num_layers
    embeddings = (V + T + S) * C + 2 * C
    block = 4 * (C * C + C) + 2 * C * F + F + C + 4 * C
    return embeddings + L * block + (C * C + C) + (2 * C + 2) + (C * C + C + 2 * C + V)


class BERT(Module):
    """``model(ids, segment_ids, attention_mask)`` -> (MLM logits (B, T, V), NSP logits (B, 2))."""

    def __init__(self, config: BERTConfig, rng: np.random.Generator | None = None,
                 dtype=DEFAULT_DTYPE):
        rng = rng or default_rng()
        self.config = config
        C = config.d_model
        self.tok_emb = Embedding(config.vocab_size, C, rng=rng, dtype=dtype)
        self.pos_emb = LearnedPositionalEmbedding(config.context_length, C, rng=rng, dtype=dtype)
        self.seg_emb = Embedding(config.type_vocab_size, C, rng=rng, dtype=dtype)
        self.emb_ln = LayerNorm(C, eps=config.eps, dtype=dtype)
        self.emb_drop = Dropout(config.dropout, rng=spawn_rng(rng))
        self.encoder = TransformerEncoder(config.num_layers, C, config.num_heads, d_ff=config.d_ff,
                                          dropout=config.dropout, norm_first=False, eps=config.eps,
                                          activation=config.activation, rng=rng, dtype=dtype)
        self.pooler = Linear(C, C, rng=rng, dtype=dtype)
        self.nsp_head = Linear(C, 2, rng=rng, dtype=dtype)
        self.mlm_dense = Linear(C, C, rng=rng, dtype=dtype)
        self.mlm_act = activation_layer(config.activation)  # BERT: GELU
        self.mlm_ln = LayerNorm(C, eps=config.eps, dtype=dtype)
        self.mlm_bias = Parameter(np.zeros(config.vocab_size, dtype=dtype))
        self._init_weights(rng)

    def _init_weights(self, rng: np.random.Generator) -> None:
        """BERT's initialisation: every matrix N(0, 0.02^2), biases 0, LayerNorms (1, 0)."""
        for name, p in self.named_parameters():
            if p.ndim == 2:
                p.data = rng.normal(0.0, 0.02, p.shape).astype(p.dtype)
            elif name.endswith("bias") and "ln" not in name:
                p.data = np.zeros(p.shape, dtype=p.dtype)

    def encode(self, ids, segment_ids=None, attention_mask=None) -> Tensor:
        """The contextual vectors h (B, T, C) of every position."""
        ids = ids.data if isinstance(ids, Tensor) else ids
        ids = ids if hasattr(ids, "dtype") else np.asarray(ids)  # host or device ids, as given
        segment_ids = get_array_module(ids).zeros_like(ids) if segment_ids is None else segment_ids
        self._check_ids(ids, segment_ids)
        x = self.pos_emb(self.tok_emb(ids)) + self.seg_emb(segment_ids)  # (B, T, C)
        x = self.emb_drop(self.emb_ln(x))  # (B, T, C)
        return self.encoder(x, mask=attention_mask)  # (B, T, C)

    def _check_ids(self, ids, segment_ids) -> None:
        if ids.ndim != 2:
            raise ValueError(f"BERT expects token ids (B, T), got shape {ids.shape}")
        if ids.shape[1] > self.config.context_length:
            raise ValueError(
                f"input of {ids.shape[1]} tokens is longer than context_length = "
                f"{self.config.context_length}"
            )
        shape = segment_ids.shape if hasattr(segment_ids, "shape") else np.shape(segment_ids)
        if tuple(shape) != ids.shape:
            raise ValueError(f"segment_ids expected (B, T) = {ids.shape}, got {tuple(shape)}")

    def mlm_logits(self, h: Tensor) -> Tensor:
        """The MLM head on vectors h (..., C) -> logits (..., V), tied to the token embedding."""
        h = self.mlm_ln(self.mlm_act(self.mlm_dense(h)))  # (..., C)
        return h @ self.tok_emb.weight.T + self.mlm_bias  # (..., C) @ (C, V) -> (..., V)

    def nsp_logits(self, h: Tensor) -> Tensor:
        """The NSP head on the [CLS] vectors of h (B, T, C) -> (B, 2); 0 = IsNext, 1 = NotNext."""
        pooled = self.pooler(h[:, 0, :]).tanh()  # (B, C)
        return self.nsp_head(pooled)  # (B, 2)

    def forward(self, ids, segment_ids=None, attention_mask=None, masked_positions=None):
        """-> (MLM logits, NSP logits (B, 2)).

        The MLM logits are (B, T, V) for every position, or, when ``masked_positions`` (a boolean
        (B, T) array) is given, (N, V) for the N chosen positions only, in row-major order: the
        V-wide output layer then runs on about 15% of the positions, which is all the MLM loss
        needs.
        """
        h = self.encode(ids, segment_ids, attention_mask)  # (B, T, C)
        if masked_positions is not None:
            xp = get_array_module(h.data)
            chosen = np.nonzero(to_numpy(masked_positions))  # row and column indices, (N,) each
            rows, cols = (xp.asarray(index) for index in chosen)  # on the model's device
            return self.mlm_logits(h[rows, cols]), self.nsp_logits(h)  # (N, V), (B, 2)
        return self.mlm_logits(h), self.nsp_logits(h)  # (B, T, V), (B, 2)

    def extra_repr(self) -> str:
        c = self.config
        return (f"V={c.vocab_size}, T={c.context_length}, L={c.num_layers}, H={c.num_heads}, "
                f"C={c.d_model}")
