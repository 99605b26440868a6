"""Scaled dot-product attention (chapter 06); its multi-head form is in ``multihead.py`` (ch. 07).

Chapter 06: every query row q_i compares itself with every key k_j, turns the scores into weights
with a softmax, and returns the weighted average of the values (a soft dictionary lookup):

    S = Q K^T / sqrt(D)                                         (eq. 6.3)
    P = softmax(S) row by row, masked pairs get weight 0        (eqs. 6.4, 6.5)
    O = P V                                                     (eq. 6.6)

:class:`ScaledDotProductAttention` is one fused op whose backward is the chapter's derivation
(eqs. 6.10-6.14); :func:`scaled_dot_product_attention_composed` builds the same function from
primitive ops (the chapter's starting point; used to test and benchmark the fused op).

Conventions shared by both:
- masks are boolean, True = "this query may attend to this key", broadcastable to the scores
  (..., T_q, T_k);
- ``is_causal=True`` is bottom-right aligned: with T_q queries and T_k >= T_q keys, the queries are
  the *last* T_q positions, so query i (absolute position T_k - T_q + i) sees the keys
  j <= T_k - T_q + i. With T_q = T_k that is the usual lower triangle; with a KV cache it is what
  generation needs (eq. 6.7);
- a row whose keys are all masked gets weights 0 and output 0 (not NaN), so its gradients are 0
  (eq. 6.8);
- dropout zeroes weights with probability p and scales the others by 1 / (1 - p) (eq. 6.9).
"""

from __future__ import annotations

import math

import numpy as np

from tinyllm.backend import get_array_module, to_device
from tinyllm.creation import default_rng, uniform, where
from tinyllm.nn.layers import check_dropout, dropout
from tinyllm.nn.softmax import softmax_composed
from tinyllm.tensor import Function, Tensor, apply

# The composed reference masks scores with a large finite negative number instead of -inf, so that
# no inf - inf = NaN appears in its primitive ops; exp(-1e30 - max) underflows to exactly 0 in
# float32 and float64.
MASKED_SCORE = -1e30

# --------------------------------------------------------------------------------------------------
# Checking shapes and building the mask of allowed (query, key) pairs
# --------------------------------------------------------------------------------------------------


def _scores_shape(q: Tensor, k: Tensor, v: Tensor) -> tuple[int, ...]:
    """Check q (..., T_q, D), k (..., T_k, D), v (..., T_k, D_v); return the scores' shape
    (..., T_q, T_k)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(
                f"attention expects Tensors for q, k, v; {name} is a {type(t).__name__}"
            )
        if t.ndim < 2:
            raise ValueError(f"attention expects {name} of shape (..., T, D), e.g. (B, H, T, D), "
                             f"got {t.shape}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k head widths differ: {q.shape[-1]} vs {k.shape[-1]} "
            f"(q {q.shape}, k {k.shape}); "
            "a query is compared with a key by a dot product, so both need the same D"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v sequence lengths differ: {k.shape[-2]} vs {v.shape[-2]} "
            f"(k {k.shape}, v {v.shape}); "
            "every key needs exactly one value"
        )
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    try:
        batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2])
        if np.broadcast_shapes(batch, v.shape[:-2]) != batch:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"the leading (B, H) axes of q {q.shape}, k {k.shape}, v {v.shape} do not broadcast "
            "together"
        ) from None
    return (*batch, q.shape[-2], k.shape[-2])  # (B, H, T_q, T_k)


def attention_mask(mask, is_causal: bool, scores_shape: tuple[int, ...], like) -> object | None:
    """The boolean array of allowed (query, key) pairs, broadcastable to ``scores_shape``, or None.

    ``mask`` (array or bool Tensor, True = may attend) is checked against the scores
    (B, H, T_q, T_k); ``is_causal`` adds the bottom-right aligned lower triangle
    key j <= i + (T_k - T_q) (eq. 6.7). ``like`` is an array on the device the result must live on.
    """
    T_q, T_k = scores_shape[-2:]
    allowed = None
    if mask is not None:
        mask = mask.data if isinstance(mask, Tensor) else mask
        mask = mask if hasattr(mask, "dtype") else np.asarray(mask)
        if mask.dtype != bool:
            raise TypeError(
                f"attention mask must be boolean (True = may attend), got dtype {mask.dtype}; "
                "build it with a comparison, e.g. ids != pad_id"
            )
        try:
            fits = np.broadcast_shapes(mask.shape, scores_shape) == scores_shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"mask of shape {mask.shape} does not broadcast to the attention scores "
                "(B, H, T_q, T_k) = "
                f"{scores_shape}; e.g. a key padding mask (B, 1, 1, T_k) or a pattern (T_q, T_k)"
            )
        allowed = to_device(mask, "cuda" if get_array_module(like) is not np else "cpu")
    if is_causal:
        xp = get_array_module(like)
        causal = xp.tri(T_q, T_k, k=T_k - T_q, dtype=bool)  # (T_q, T_k): j <= i + T_k - T_q
        allowed = causal if allowed is None else allowed & causal  # (..., T_q, T_k)
    return allowed


# --------------------------------------------------------------------------------------------------
# The fused op (chapter 06)
# --------------------------------------------------------------------------------------------------


class ScaledDotProductAttention(Function):
    """O = dropout(softmax(Q K^T / sqrt(D), masked)) V, one op with the gradients of chapter 06.

    Forward (eqs. 6.3-6.6, 6.9), with M the dropout keep-mask (all ones without dropout):
        S = Q K^T / sqrt(D),   P = softmax(S),   P~ = P * M / (1 - p),   O = P~ V
    Backward, g = dL/dO (eqs. 6.10-6.14):
        dV = P~^T g                                  (6.10)
        dP~ = g V^T,   dP = dP~ * M / (1 - p)        (6.11)
        dS = P * (dP - rowsum(dP * P))               (6.12)
           with rowsum(dP * P) = rowsum(g * O)       (6.13)
        dQ = dS K / sqrt(D),   dK = dS^T Q / sqrt(D) (6.14)
    Saved for backward: q, k, v, P (and the keep-mask with dropout); O is the output array itself,
    kept by reference, so eq. 6.13 costs a (T_q, D) product instead of a second (T_q, T_k) one.
    """

    def __init__(self, allowed, dropout_p: float, rng: np.random.Generator):
        self.allowed, self.dropout_p, self.rng = allowed, dropout_p, rng

    def forward(self, q, k, v):
        xp = get_array_module(q)
        self.scale = 1 / math.sqrt(q.shape[-1])
        scores = (q * self.scale) @ xp.swapaxes(k, -1, -2)  # (..., T_q, T_k)  eq. 6.3
        if self.allowed is not None:
            xp.copyto(scores, -xp.inf, where=~self.allowed)  # masked pairs: exp(-inf) = 0 exactly
        row_max = scores.max(axis=-1, keepdims=True)  # (..., T_q, 1)
        if self.allowed is not None:
            xp.copyto(row_max, 0, where=xp.isinf(row_max))  # fully masked row: max -inf, shift 0
        scores -= row_max  # in place: every entry <= 0, no overflow (eq. 6.4)
        weights = xp.exp(scores, out=scores)  # the same buffer, now exp(S - max)
        total = weights.sum(axis=-1, keepdims=True)  # (..., T_q, 1); >= 1 unless fully masked
        if self.allowed is not None:
            xp.copyto(total, 1, where=total == 0)  # fully masked row: weights 0 / 1 = 0 (eq. 6.8)
        weights /= total  # P, eq. 6.4
        self.q, self.k, self.v, self.weights = q, k, v, weights
        if self.dropout_p > 0:
            self.keep = uniform(weights.shape, self.rng, xp) >= self.dropout_p  # where P lives
            weights = weights * self.keep  # P~ = P * M / (1 - p), eq. 6.9
            weights *= 1 / (1 - self.dropout_p)
        self.out = weights @ v  # (..., T_q, D_v)  eq. 6.6
        return self.out

    def backward(self, grad):
        xp = get_array_module(grad)
        dropped = self.weights  # P, or P~ with dropout
        if self.dropout_p > 0:
            dropped = self.weights * self.keep
            dropped *= 1 / (1 - self.dropout_p)
        grad_v = xp.swapaxes(dropped, -1, -2) @ grad  # (..., T_k, D_v)  eq. 6.10
        grad_s = grad @ xp.swapaxes(self.v, -1, -2)  # dP~ (..., T_q, T_k)  eq. 6.11
        if self.dropout_p > 0:
            grad_s *= self.keep  # dP = dP~ * M / (1 - p), eq. 6.11
            grad_s *= 1 / (1 - self.dropout_p)
        grad_s -= (grad * self.out).sum(axis=-1, keepdims=True)  # dP - rowsum(g * O), eq. 6.13
        grad_s *= self.weights  # dS = P * (dP - rowsum(dP * P)), eq. 6.12
        grad_s *= self.scale  # dS / sqrt(D)
        grad_q = grad_s @ self.k  # (..., T_q, D)  eq. 6.14
        grad_k = xp.swapaxes(grad_s, -1, -2) @ self.q  # (..., T_k, D)  eq. 6.14
        return grad_q, grad_k, grad_v


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, mask=None,
                                 is_causal: bool = False, dropout_p: float = 0.0,
                                 rng: np.random.Generator | None = None,
                                 return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(D)) v for q (..., T_q, D), k (..., T_k, D), v (..., T_k, D_v).

    Returns (..., T_q, D_v). ``mask``: boolean, True = may attend, broadcastable to
    (B, H, T_q, T_k), e.g. (B, 1, 1, T_k) for key padding or (T_q, T_k) for a pattern.
    ``is_causal``: key j is visible to query i when j <= i + (T_k - T_q) (bottom-right aligned,
    eq. 6.7); combined with ``mask`` by "and". A row with no visible key gives output 0 and weights
    0 (eq. 6.8). ``dropout_p``: dropout on the weights, drawn from ``rng`` (default: the generator
    seeded by ``tl.manual_seed``), scaled by 1/(1 - p). ``return_weights=True`` also returns P
    (..., T_q, T_k), the weights before dropout, as a Tensor outside the graph (for plots). Fused
    op: :class:`ScaledDotProductAttention` (eqs. 6.3-6.14).
    """
    scores_shape = _scores_shape(q, k, v)
    check_dropout(dropout_p, "attention dropout")
    allowed = attention_mask(mask, is_causal, scores_shape, q.data)
    fn = ScaledDotProductAttention(allowed, dropout_p, rng or default_rng())
    out = apply(fn, q, k, v)  # (..., T_q, D_v)
    if not return_weights:
        return out
    weights = fn.weights.copy() if out.requires_grad else fn.weights  # backward still needs P
    return out, Tensor(weights)


def scaled_dot_product_attention_composed(q: Tensor, k: Tensor, v: Tensor, mask=None,
                                          is_causal: bool = False, dropout_p: float = 0.0,
                                          rng: np.random.Generator | None = None) -> Tensor:
    """Attention from primitive ops (matmul, where, softmax_composed, dropout), with the fused op's
    conventions.

    The chapter's starting point; used to test and benchmark the fused
    :func:`scaled_dot_product_attention`. Masked scores become ``MASKED_SCORE`` (finite, so no NaN
    appears); a fully masked row is then uniform, and multiplying by the constant 0/1 "row has a
    visible key" turns it into the convention's zeros (eq. 6.8).
    """
    scores_shape = _scores_shape(q, k, v)
    check_dropout(dropout_p, "attention dropout")
    allowed = attention_mask(mask, is_causal, scores_shape, q.data)
    axes = (*range(k.ndim - 2), k.ndim - 1, k.ndim - 2)
    scores = (q @ k.transpose(axes)) / math.sqrt(q.shape[-1])  # (..., T_q, T_k)  eq. 6.3
    if allowed is not None:
        scores = where(allowed, scores, MASKED_SCORE)
    weights = softmax_composed(scores, axis=-1)  # (..., T_q, T_k)  eq. 6.4
    if allowed is not None:
        has_key = allowed.any(axis=-1, keepdims=True)  # (..., T_q, 1)
        weights = weights * has_key.astype(weights.dtype)
    weights = dropout(weights, dropout_p, training=True, rng=rng)
    return weights @ v  # (..., T_q, D_v)  eq. 6.6
