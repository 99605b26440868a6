"""Reference solutions of exercises/12_bert.py. Try the exercises first."""

from __future__ import annotations

import numpy as np

from tinyllm.backend import get_array_module
from tinyllm.nn.losses import IGNORE_INDEX, as_targets, check_logits, cross_entropy
from tinyllm.tensor import Tensor


def mask_tokens(tokens, mask_id, vocab_size, special_ids=(), p=0.15, rng=None):
    """Exactly max(1, round(p n)) ordinary tokens per row chosen, then 80/10/10 (eq. 12.2)."""
    tokens = np.asarray(tokens)
    if tokens.ndim not in (1, 2) or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"tokens must be integer ids of shape (T,) or (B, T), got {tokens.dtype} "
                         f"{tokens.shape}")
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id={mask_id} is outside the vocabulary [0, {vocab_size})")
    if not 0.0 < p < 1.0:
        raise ValueError(f"masking probability p must be in (0, 1), got {p}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"token ids must be in [0, {vocab_size}), got range "
                         f"[{tokens.min()}, {tokens.max()}]")
    rng = np.random.default_rng() if rng is None else rng
    special = np.union1d(np.asarray(special_ids, dtype=np.int64), [mask_id])
    ordinary = np.setdiff1d(np.arange(vocab_size), special)  # the ids a random token comes from
    if len(ordinary) == 0:
        raise ValueError("every id is special: there is no ordinary token to substitute")

    rows = np.atleast_2d(tokens).astype(np.int64)  # (B, T), a copy
    can_choose = ~np.isin(rows, special)  # (B, T)
    n = can_choose.sum(axis=1)  # (B,)
    k = np.where(n > 0, np.maximum(1, np.round(p * n)), 0)  # (B,) positions to choose per row
    keys = np.where(can_choose, rng.random(rows.shape), np.inf)  # (B, T), specials sort last
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)  # (B, T) the rank of each key in its row
    chosen = rank < k[:, None]  # (B, T): the k smallest keys of each row

    action = rng.random(rows.shape)  # (B, T): below 0.8 mask, below 0.9 random, else keep
    to_mask = chosen & (action < 0.8)
    to_random = chosen & (action >= 0.8) & (action < 0.9)
    inputs = rows.copy()
    inputs[to_mask] = mask_id
    inputs[to_random] = ordinary[rng.integers(0, len(ordinary), to_random.sum())]
    labels = np.where(chosen, rows, IGNORE_INDEX)  # (B, T)
    return inputs.reshape(tokens.shape), labels.reshape(tokens.shape)


def bert_encode(self, ids, segment_ids=None, attention_mask=None):
    """h = Encoder(LN(E_tok[x] + E_pos[t] + E_seg[s]), padding mask)   (eq. 12.4)."""
    ids = ids.data if isinstance(ids, Tensor) else ids
    ids = ids if hasattr(ids, "dtype") else np.asarray(ids)  # host or device ids, as given
    segment_ids = get_array_module(ids).zeros_like(ids) if segment_ids is None else segment_ids
    self._check_ids(ids, segment_ids)
    x = self.pos_emb(self.tok_emb(ids)) + self.seg_emb(segment_ids)  # (B, T, C)
    x = self.emb_drop(self.emb_ln(x))  # (B, T, C)
    return self.encoder(x, mask=attention_mask)  # (B, T, C)


def bert_mlm_logits(self, h):
    """z = LN(GELU(h W_d + b_d)) E_tok^T + b_out   (eq. 12.4)."""
    h = self.mlm_ln(self.mlm_act(self.mlm_dense(h)))  # (..., C)
    return h @ self.tok_emb.weight.T + self.mlm_bias  # (..., C) @ (C, V) -> (..., V)


def bert_nsp_logits(self, h):
    """tanh(h_[CLS] W_p + b_p) W_nsp + b_nsp   (eq. 12.3)."""
    pooled = self.pooler(h[:, 0, :]).tanh()  # (B, T, C) -> (B, C)
    return self.nsp_head(pooled)  # (B, 2)


def mlm_loss(logits, labels):
    """The mean cross-entropy over the labelled rows only, gathered first   (eq. 12.1)."""
    check_logits(logits, "mlm_loss")
    labels = as_targets(labels, logits, "mlm_loss", move=False).reshape(-1)  # (N,)
    rows = get_array_module(labels).flatnonzero(labels != IGNORE_INDEX)  # (K,)
    flat = logits.reshape(-1, logits.shape[-1])  # (N, V)
    if rows.size < flat.shape[0]:
        flat = flat[rows]  # (K, V): the backward scatters the gradient back to its rows
    return cross_entropy(flat, labels[rows])
