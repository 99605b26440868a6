"""Reference solutions of exercises/17_scale.py. Try the exercises first."""

from __future__ import annotations

import math

import numpy as np

from tinyllm.backend import get_array_module, to_numpy
from tinyllm.bench.training import matmul_weights
from tinyllm.nn.blockwise_attention import _spans
from tinyllm.tensor import Tensor


def reduce_gradients(self, model, loss_sum):
    """Sum the ranks' gradients (eq. 17.1): one flat buffer and one Allreduce per dtype."""
    params = model.parameters()
    xp = get_array_module(*[p.data for p in params])
    by_dtype = {}
    for p in params:
        by_dtype.setdefault(np.dtype(p.data.dtype), []).append(p)
    for dtype, group in by_dtype.items():
        sizes = [p.data.size for p in group]
        total = sum(sizes)
        flat = np.empty(total + len(group), dtype=dtype)  # (N + P,): gradients, then counts
        flat[:total] = np.concatenate([
            to_numpy(p.grad.data).reshape(-1) if p.grad is not None else np.zeros(size, dtype)
            for p, size in zip(group, sizes)])  # (N,)
        flat[total:] = [p.grad is not None for p in group]  # (P,)
        self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)
        offset = 0
        for p, size, count in zip(group, sizes, flat[total:]):
            if count > 0:  # some rank used this parameter
                summed = xp.asarray(flat[offset:offset + size].reshape(p.data.shape))
                if p.grad is None:
                    p.grad = Tensor(summed)
                else:
                    p.grad.data = summed
            offset += size
    loss = np.array([float(to_numpy(loss_sum))], dtype=np.float64)  # (1,)
    self.comm.Allreduce(self.MPI.IN_PLACE, loss, op=self.MPI.SUM)
    return xp.asarray(loss[0])


def blockwise_forward(self, q, k, v):
    """The online softmax over key blocks: running m, l, o per query row (eqs. 17.6-17.9)."""
    xp = get_array_module(q)
    lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2])  # (B, H)
    T_q, T_k, D_v = q.shape[-2], k.shape[-2], v.shape[-1]
    self.scale = 1 / math.sqrt(q.shape[-1])
    out = xp.zeros((*lead, T_q, D_v), dtype=q.dtype)  # O, (..., T_q, D_v)
    logsumexp = xp.zeros((*lead, T_q, 1), dtype=q.dtype)  # L, (..., T_q, 1)
    for i0, i1 in _spans(T_q, self.block_q):
        q_block = q[..., i0:i1, :] * self.scale  # (..., b_q, D)
        m = xp.full((*lead, i1 - i0, 1), -xp.inf, dtype=q.dtype)  # (..., b_q, 1)
        ell = xp.zeros((*lead, i1 - i0, 1), dtype=q.dtype)  # (..., b_q, 1)
        o = xp.zeros((*lead, i1 - i0, D_v), dtype=q.dtype)  # (..., b_q, D_v)
        for j0, j1, allowed in self._key_blocks(xp, i0, i1, T_q, T_k):
            scores = q_block @ xp.swapaxes(k[..., j0:j1, :], -1, -2)  # S_b, (..., b_q, b_k)
            if allowed is not None:
                scores = xp.where(allowed, scores, -xp.inf)
            m_new = xp.maximum(m, scores.max(axis=-1, keepdims=True))  # eq. 17.6
            shift = xp.where(xp.isinf(m_new), 0, m_new)  # no visible key yet: shift by 0
            weights = xp.exp(scores - shift)  # e^(S_b - m_b), (..., b_q, b_k)
            rescale = xp.exp(m - shift)  # e^(m_{b-1} - m_b), (..., b_q, 1)
            ell = rescale * ell + weights.sum(axis=-1, keepdims=True)  # eq. 17.7
            if self.dropout_p > 0:
                weights = weights * self._keep(xp, i0, j0, weights.shape, weights.dtype)
            o = rescale * o + weights @ v[..., j0:j1, :]  # eq. 17.8, (..., b_q, D_v)
            m = m_new
        seen = ell > 0  # False: every key of the row is masked
        out[..., i0:i1, :] = o / xp.where(seen, ell, 1)  # eq. 17.9; 0 for a masked row
        logsumexp[..., i0:i1, :] = xp.where(seen, m + xp.log(xp.where(seen, ell, 1)), 0)
    self.q, self.k, self.v, self.out, self.logsumexp = q, k, v, out, logsumexp
    return out


def blockwise_backward(self, grad):
    """Recompute P_b = exp(S_b - L) per block; Delta = rowsum(dO O) (eqs. 17.10-17.12)."""
    xp = get_array_module(grad)
    q, k, v = self.q, self.k, self.v
    T_q, T_k = q.shape[-2], k.shape[-2]
    delta = (grad * self.out).sum(axis=-1, keepdims=True)  # (..., T_q, 1), eq. 17.11
    grad_q = xp.zeros(grad.shape[:-1] + q.shape[-1:], dtype=q.dtype)  # (..., T_q, D)
    grad_k = xp.zeros(grad.shape[:-2] + k.shape[-2:], dtype=k.dtype)  # (..., T_k, D)
    grad_v = xp.zeros(grad.shape[:-2] + v.shape[-2:], dtype=v.dtype)  # (..., T_k, D_v)
    for i0, i1 in _spans(T_q, self.block_q):
        q_block = q[..., i0:i1, :] * self.scale  # (..., b_q, D)
        g_block = grad[..., i0:i1, :]  # dO, (..., b_q, D_v)
        lse, d_block = self.logsumexp[..., i0:i1, :], delta[..., i0:i1, :]  # (..., b_q, 1)
        for j0, j1, allowed in self._key_blocks(xp, i0, i1, T_q, T_k):
            k_block, v_block = k[..., j0:j1, :], v[..., j0:j1, :]
            scores = q_block @ xp.swapaxes(k_block, -1, -2)  # (..., b_q, b_k)
            if allowed is not None:
                scores = xp.where(allowed, scores, -xp.inf)
            weights = xp.exp(scores - lse)  # P_b, eq. 17.10
            grad_p = g_block @ xp.swapaxes(v_block, -1, -2)  # dP_b, (..., b_q, b_k)
            dropped = weights
            if self.dropout_p > 0:
                keep = self._keep(xp, i0, j0, weights.shape, weights.dtype)
                dropped, grad_p = weights * keep, grad_p * keep
            grad_s = weights * (grad_p - d_block)  # dS_b, eq. 17.11
            grad_v[..., j0:j1, :] += xp.swapaxes(dropped, -1, -2) @ g_block  # eq. 17.12
            grad_q[..., i0:i1, :] += (grad_s @ k_block) * self.scale
            grad_k[..., j0:j1, :] += xp.swapaxes(grad_s, -1, -2) @ q_block  # q_block has scale
    return grad_q, grad_k, grad_v


def training_flops_per_token(config):
    """6 N_mm + 12 L T C: three forward passes of 2 N_mm + 4 L T C (eq. 17.14)."""
    L, T, C = config.num_layers, config.context_length, config.d_model
    forward = 2 * matmul_weights(config) + 4 * L * T * C  # products with weights, QK^T and PV
    return 3 * forward
