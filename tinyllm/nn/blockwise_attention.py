"""Memory-efficient (blockwise) attention: the online softmax and FlashAttention (chapter 17).

The fused op of chapter 06 builds the scores S = Q K^T / sqrt(D) and the weights P, both
(..., T_q, T_k), and keeps P for its backward: attention memory grows with T^2. Here the keys are
visited in blocks of ``block_k`` (and the queries in blocks of ``block_q``), so no array larger
than (..., block_q, block_k) ever exists. For one query row and key blocks b = 1, 2, ... the
online softmax (Milakov & Gimelshein 2018) keeps a running maximum m, normaliser l and
unnormalised output o (eqs. 17.6-17.9):

    m_b = max(m_{b-1}, rowmax(S_b))
    l_b = exp(m_{b-1} - m_b) l_{b-1} + rowsum(exp(S_b - m_b))
    o_b = exp(m_{b-1} - m_b) o_{b-1} + exp(S_b - m_b) V_b
    O = o_last / l_last,        L = m_last + log(l_last)   (the row's logsumexp)

The backward (Dao et al. 2022, FlashAttention, Algorithm 2; eqs. 17.10-17.12) keeps only O and L
and recomputes each block's weights from its scores, P_b = exp(S_b - L), then applies the
chapter 06 gradients block by block, with D_i = rowsum(dO * O) (eq. 6.13):

    dV_b += P~_b^T dO,   dP_b = dO V_b^T (* M_b / (1 - p)),   dS_b = P_b * (dP_b - D)
    dQ += dS_b K_b / sqrt(D),   dK_b += dS_b^T Q / sqrt(D)

Saved for backward: q, k, v, O and L, all O(T); the price is a second product Q K^T per block.
Conventions are the fused op's: boolean masks (True = may attend) broadcastable to the scores,
``is_causal`` aligned bottom-right (blocks wholly above the diagonal are skipped), a row with no
visible key gives output 0 and gradient 0. Dropout is supported, but its keep-mask M is drawn per
block from a seed (regenerated in the backward, never stored) and so differs from the fused op's
mask for the same generator: equal in distribution, not in values.
"""

from __future__ import annotations

import math

import numpy as np

from tinyllm.backend import get_array_module
from tinyllm.creation import default_rng
from tinyllm.nn.attention import _scores_shape, attention_mask
from tinyllm.nn.layers import check_dropout
from tinyllm.tensor import Function, Tensor, apply

BLOCK_Q = 128  # query rows per block: the default block sizes of blockwise_attention
BLOCK_K = 256  # keys per block; the largest temporary is (B, H, BLOCK_Q, BLOCK_K)


def _spans(length: int, block: int):
    """(start, stop) of consecutive blocks of ``block`` positions covering range(length)."""
    return [(start, min(start + block, length)) for start in range(0, length, block)]


class BlockwiseAttention(Function):
    """O = dropout(softmax(Q K^T / sqrt(D), masked)) V, computed block by block (module docstring).

    ``mask``: checked boolean array broadcastable to the scores, or None; ``seed``: the dropout
    masks' seed (each block's mask is a function of the seed and the block's position).
    """

    def __init__(self, mask, is_causal: bool, dropout_p: float, seed: int, block_q: int,
                 block_k: int):
        if mask is not None and mask.ndim < 2:  # give it the (T_q, T_k) axes the blocks slice
            mask = mask.reshape((1,) * (2 - mask.ndim) + mask.shape)
        self.mask, self.is_causal = mask, is_causal
        self.dropout_p, self.seed = dropout_p, seed
        self.block_q, self.block_k = block_q, block_k

    # --- the blocks ------------------------------------------------------------------------------
    def _key_blocks(self, xp, i0: int, i1: int, T_q: int, T_k: int):
        """(j0, j1, allowed) for each key block that query rows i0..i1-1 can see; ``allowed`` is
        the block's boolean mask (..., i1 - i0, j1 - j0), or None when every pair is visible."""
        offset = T_k - T_q  # bottom-right alignment: query i sees key j iff j <= i + offset
        end = min(T_k, i1 + offset) if self.is_causal else T_k  # later blocks: all above diagonal
        for j0 in range(0, end, self.block_k):
            j1 = min(j0 + self.block_k, T_k)  # the blocks of _spans(T_k, block_k) that count
            allowed = None
            if self.mask is not None:
                rows = slice(i0, i1) if self.mask.shape[-2] != 1 else slice(None)
                cols = slice(j0, j1) if self.mask.shape[-1] != 1 else slice(None)
                allowed = self.mask[..., rows, cols]  # (..., bq or 1, bk or 1)
            if self.is_causal and j1 - 1 > i0 + offset:  # the block crosses the diagonal
                i = xp.arange(i0, i1)[:, None]  # (bq, 1)
                causal = xp.arange(j0, j1)[None, :] <= i + offset  # (bq, bk), eq. 6.7
                allowed = causal if allowed is None else allowed & causal
            yield j0, j1, allowed

    def _keep(self, xp, i0: int, j0: int, shape: tuple[int, ...], dtype):
        """The dropout factor M / (1 - p) of the block at (i0, j0): the same in forward and
        backward, because the block's generator is seeded by (seed, i0, j0)."""
        keep = np.random.default_rng((self.seed, i0, j0)).random(shape) >= self.dropout_p  # host
        return xp.asarray(keep, dtype=dtype) * (1 / (1 - self.dropout_p))  # (..., bq, bk)

    # --- forward: the online softmax --------------------------------------------------------------
    def forward(self, q, k, v):
        xp = get_array_module(q)
        batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2])  # (B, H)
        T_q, T_k, D_v = q.shape[-2], k.shape[-2], v.shape[-1]
        self.scale = 1 / math.sqrt(q.shape[-1])
        out = xp.empty((*batch, T_q, D_v), dtype=q.dtype)  # (..., T_q, D_v)
        logsumexp = xp.empty((*batch, T_q, 1), dtype=q.dtype)  # L, (..., T_q, 1)
        for i0, i1 in _spans(T_q, self.block_q):
            q_block = q[..., i0:i1, :] * self.scale  # (..., bq, D)
            row_max = xp.full((*batch, i1 - i0, 1), -xp.inf, dtype=q.dtype)  # m, (..., bq, 1)
            total = xp.zeros((*batch, i1 - i0, 1), dtype=q.dtype)  # l, (..., bq, 1)
            acc = xp.zeros((*batch, i1 - i0, D_v), dtype=q.dtype)  # o, (..., bq, D_v)
            for j0, j1, allowed in self._key_blocks(xp, i0, i1, T_q, T_k):
                scores = q_block @ xp.swapaxes(k[..., j0:j1, :], -1, -2)  # S_b (..., bq, bk)
                if allowed is not None:
                    xp.copyto(scores, -xp.inf, where=~allowed)  # masked pairs: exp(-inf) = 0
                new_max = xp.maximum(row_max, scores.max(axis=-1, keepdims=True))  # eq. 17.6
                shift = xp.where(xp.isinf(new_max), 0, new_max)  # no key seen yet: shift by 0
                scores -= shift
                weights = xp.exp(scores, out=scores)  # exp(S_b - m_b), the same buffer
                rescale = xp.exp(row_max - shift)  # exp(m_{b-1} - m_b), (..., bq, 1)
                total *= rescale
                total += weights.sum(axis=-1, keepdims=True)  # eq. 17.7
                if self.dropout_p > 0:
                    weights *= self._keep(xp, i0, j0, weights.shape, weights.dtype)  # eq. 6.9
                acc *= rescale
                acc += weights @ v[..., j0:j1, :]  # eq. 17.8, (..., bq, D_v)
                row_max = new_max
            has_key = total > 0  # False: a fully masked row (eq. 6.8)
            total[~has_key] = 1
            out[..., i0:i1, :] = acc / total  # eq. 17.9; 0 / 1 = 0 for a fully masked row
            shift = xp.where(has_key, row_max, 0)
            logsumexp[..., i0:i1, :] = shift + xp.log(total)  # L; 0 for a fully masked row
        self.q, self.k, self.v, self.out, self.logsumexp = q, k, v, out, logsumexp
        return out

    # --- backward: recompute each block's weights from L -----------------------------------------
    def backward(self, grad):
        xp = get_array_module(grad)
        q, k, v = self.q, self.k, self.v
        T_q, T_k = q.shape[-2], k.shape[-2]
        delta = (grad * self.out).sum(axis=-1, keepdims=True)  # D = rowsum(dO * O), eq. 6.13
        grad_q = xp.zeros(grad.shape[:-1] + q.shape[-1:], dtype=q.dtype)  # (..., T_q, D)
        grad_k = xp.zeros(grad.shape[:-2] + k.shape[-2:], dtype=k.dtype)  # (..., T_k, D)
        grad_v = xp.zeros(grad.shape[:-2] + v.shape[-2:], dtype=v.dtype)  # (..., T_k, D_v)
        for i0, i1 in _spans(T_q, self.block_q):
            q_block = q[..., i0:i1, :] * self.scale  # (..., bq, D)
            grad_block = grad[..., i0:i1, :]  # dO, (..., bq, D_v)
            lse_block, delta_block = self.logsumexp[..., i0:i1, :], delta[..., i0:i1, :]
            for j0, j1, allowed in self._key_blocks(xp, i0, i1, T_q, T_k):
                k_block, v_block = k[..., j0:j1, :], v[..., j0:j1, :]  # (..., bk, D), (.., D_v)
                scores = q_block @ xp.swapaxes(k_block, -1, -2)  # S_b (..., bq, bk), recomputed
                if allowed is not None:
                    xp.copyto(scores, -xp.inf, where=~allowed)
                scores -= lse_block
                weights = xp.exp(scores, out=scores)  # P_b = exp(S_b - L), eq. 17.10
                dropped = weights  # P~_b
                if self.dropout_p > 0:
                    keep = self._keep(xp, i0, j0, weights.shape, weights.dtype)
                    dropped = weights * keep
                grad_v[..., j0:j1, :] += xp.swapaxes(dropped, -1, -2) @ grad_block  # eq. 6.10
                grad_s = grad_block @ xp.swapaxes(v_block, -1, -2)  # dP~_b, eq. 6.11
                if self.dropout_p > 0:
                    grad_s *= keep  # dP_b
                grad_s -= delta_block  # dP_b - D, eq. 6.13
                grad_s *= weights  # dS_b = P_b * (dP_b - D), eq. 6.12
                grad_q[..., i0:i1, :] += (grad_s @ k_block) * self.scale  # eq. 6.14
                grad_k[..., j0:j1, :] += xp.swapaxes(grad_s, -1, -2) @ q_block  # eq. 6.14
        return grad_q, grad_k, grad_v


def blockwise_attention(q: Tensor, k: Tensor, v: Tensor, mask=None, is_causal: bool = False,
                        dropout_p: float = 0.0, rng: np.random.Generator | None = None,
                        block_q: int = BLOCK_Q, block_k: int = BLOCK_K) -> Tensor:
    """softmax(q k^T / sqrt(D)) v like :func:`scaled_dot_product_attention`, in O(T) memory.

    q (..., T_q, D), k (..., T_k, D), v (..., T_k, D_v) -> (..., T_q, D_v); ``mask`` and
    ``is_causal`` as for the fused op. ``dropout_p``: dropout on the weights with a seed drawn from
    ``rng`` (default: the generator seeded by ``tl.manual_seed``); the masks differ from the fused
    op's (module docstring). ``block_q``, ``block_k``: the block sizes (any positive integers; they
    need not divide T). The weights P are never built, so there is no ``return_weights``.
    """
    scores_shape = _scores_shape(q, k, v)
    check_dropout(dropout_p, "attention dropout")
    for name, size in (("block_q", block_q), ("block_k", block_k)):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"blockwise attention needs {name} a positive integer, got {size!r}")
    checked = attention_mask(mask, False, scores_shape, q.data)  # the causal part: per block
    seed = int((rng or default_rng()).integers(2**63)) if dropout_p > 0 else 0
    fn = BlockwiseAttention(checked, is_causal, dropout_p, seed, int(block_q), int(block_k))
    return apply(fn, q, k, v)  # (..., T_q, D_v)
