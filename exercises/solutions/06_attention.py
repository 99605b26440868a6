"""Reference solutions of exercises/06_attention.py. Try the exercises first."""

from __future__ import annotations

import math

from tinyllm.backend import get_array_module
from tinyllm.tensor import Tensor


def attention_mask(mask, is_causal, scores_shape, like):
    """mask and-ed with the bottom-right aligned causal triangle j <= i + T_k - T_q (eq. 6.7)."""
    xp = get_array_module(like)
    T_q, T_k = scores_shape[-2:]
    allowed = None
    if mask is not None:
        allowed = xp.asarray(mask.data if isinstance(mask, Tensor) else mask)
    if is_causal:
        causal = xp.tri(T_q, T_k, k=T_k - T_q, dtype=bool)  # (T_q, T_k)
        allowed = causal if allowed is None else allowed & causal  # (..., T_q, T_k)
    return allowed


def attention_forward(self, q, k, v):
    """O = softmax(Q K^T / sqrt(D), masked) V, fully masked rows 0 (eqs. 6.3-6.6, 6.8)."""
    xp = get_array_module(q)
    self.scale = 1 / math.sqrt(q.shape[-1])
    scores = (q @ xp.swapaxes(k, -1, -2)) * self.scale  # (..., T_q, T_k)  eq. 6.3
    if self.allowed is not None:
        scores = xp.where(self.allowed, scores, -xp.inf)
    row_max = scores.max(axis=-1, keepdims=True)  # (..., T_q, 1)
    row_max = xp.where(xp.isinf(row_max), 0, row_max)  # a fully masked row: shift by 0
    weights = xp.exp(scores - row_max)  # masked pairs: exp(-inf) = 0
    total = weights.sum(axis=-1, keepdims=True)  # (..., T_q, 1)
    self.weights = weights / xp.where(total == 0, 1, total)  # P; a fully masked row stays 0
    self.q, self.k, self.v = q, k, v
    self.out = self.weights @ v  # (..., T_q, D_v)
    return self.out


def attention_backward(self, grad):
    """dV = P^T g, dP = g V^T, dS = P (dP - rowsum(g O)), dQ = dS K s, dK = dS^T Q s."""
    xp = get_array_module(grad)
    grad_v = xp.swapaxes(self.weights, -1, -2) @ grad  # (..., T_k, D_v)  eq. 6.10
    grad_p = grad @ xp.swapaxes(self.v, -1, -2)  # (..., T_q, T_k)  eq. 6.11
    grad_s = self.weights * (grad_p - (grad * self.out).sum(axis=-1, keepdims=True)) * self.scale
    return grad_s @ self.k, xp.swapaxes(grad_s, -1, -2) @ self.q, grad_v  # eq. 6.14
