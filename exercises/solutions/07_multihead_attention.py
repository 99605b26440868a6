"""Reference solutions of exercises/07_multihead_attention.py. Try the exercises first."""

from __future__ import annotations

import numpy as np

from tinyllm.backend import get_array_module
from tinyllm.nn.attention import scaled_dot_product_attention
from tinyllm.nn.blockwise_attention import blockwise_attention
from tinyllm.tensor import Tensor


def mha_forward(self, x, context=None, mask=None, is_causal=False, return_weights=False,
                cache=None):
    """Q, K, V projections (eq. 7.1), H heads by reshapes, one batched attention, W_O (eq. 7.2)."""
    if self.attention == "blockwise" and return_weights:
        raise ValueError("blockwise attention never builds the weights (B, H, T_q, T_k), so it "
                         "cannot return them; use attention='fused' to plot them")
    mask = self._check_inputs(x, context, mask, cache)  # 4 axes, or None
    source = x if context is None else context  # (B, T_s, C): keys and values come from it
    B, T_q, C = x.shape
    H, D = self.num_heads, self.head_dim
    q = self.q_proj(x).reshape(B, T_q, H, D).transpose(0, 2, 1, 3)  # (B, H, T_q, D)   eq. 7.1
    k = self.k_proj(source).reshape(B, -1, H, D).transpose(0, 2, 1, 3)  # (B, H, T_s, D)
    v = self.v_proj(source).reshape(B, -1, H, D).transpose(0, 2, 1, 3)  # (B, H, T_s, D)
    if cache is not None:
        k, v = (Tensor(a) for a in cache.append(k.data, v.data))  # (B, H, T_past + T_q, D)
    dropout_p = self.dropout_p if self.training else 0.0
    if self.attention == "blockwise":
        out = blockwise_attention(q, k, v, mask=mask, is_causal=is_causal, dropout_p=dropout_p,
                                  rng=self.rng)  # (B, H, T_q, D)
        return self.out_proj(out.transpose(0, 2, 1, 3).reshape(B, T_q, C))  # (B, T_q, C)
    result = scaled_dot_product_attention(q, k, v, mask=mask, is_causal=is_causal,
                                          dropout_p=dropout_p, rng=self.rng,
                                          return_weights=return_weights)
    out, weights = result if return_weights else (result, None)  # out (B, H, T_q, D)
    out = out.transpose(0, 2, 1, 3).reshape(B, T_q, C)  # (B, T_q, H, D) -> (B, T_q, C)
    out = self.out_proj(out)  # (B, T_q, C)   eq. 7.2
    return (out, weights) if return_weights else out


def head_mask(self, mask, B, T_q, T_k):
    """(B, T_k) -> (B, 1, 1, T_k); (B, T_q, T_k) -> (B, 1, T_q, T_k); 4 axes as given."""
    if mask is None:
        return None
    data = mask.data if isinstance(mask, Tensor) else mask
    data = data if hasattr(data, "dtype") else np.asarray(data)
    if data.ndim == 2:
        if data.shape[0] not in (1, B) or data.shape[1] != T_k:
            raise ValueError(
                f"a 2-D mask is a key padding mask (B, T_k) = ({B}, {T_k}), True = real token; "
                f"got {data.shape}. For a (T_q, T_k) pattern shared by the batch "
                "pass mask[None] (1, T_q, T_k)"
            )
        return data[:, None, None, :]  # (B, 1, 1, T_k)
    if data.ndim == 3:
        return data[:, None, :, :]  # (B, 1, T_q, T_k)
    if data.ndim == 4:
        return data  # (B, H, T_q, T_k)
    raise ValueError(
        f"mask expected (B, T_k), (B, T_q, T_k) or (B, H, T_q, T_k) = ({B}, {T_k}), "
        f"({B}, {T_q}, {T_k}) or ({B}, {self.num_heads}, {T_q}, {T_k}), got {data.shape}"
    )


def kv_cache_append(self, keys, values):
    """Write the new keys and values after the cached ones; return everything cached."""
    B, H, T_new, D = keys.shape
    D_v = values.shape[-1]
    if self.keys is None:  # the first step: allocate every position once
        xp = get_array_module(keys)
        self.keys = xp.empty((B, H, self.context_length, D), dtype=keys.dtype)
        self.values = xp.empty((B, H, self.context_length, D_v), dtype=values.dtype)
    cached = (self.keys.shape[:2], self.keys.shape[-1], self.values.shape[-1])
    if cached != ((B, H), D, D_v) or values.shape[:3] != (B, H, T_new):
        raise ValueError(
            "KV cache holds keys (B, H, T, D) = "
            f"{(*self.keys.shape[:2], self.length, self.keys.shape[-1])}, "
            f"got new keys {keys.shape} and values {values.shape}; "
            "call reset() before caching another batch"
        )
    end = self.length + T_new
    if end > self.context_length:
        raise ValueError(
            f"KV cache full: {self.length} cached + {T_new} new positions > context_length = "
            f"{self.context_length}; create KVCache(context_length) with the longest sequence, "
            "or reset() it"
        )
    self.keys[:, :, self.length:end] = keys  # in place: only the new positions are written
    self.values[:, :, self.length:end] = values
    self.length = end
    return self.keys[:, :, :end], self.values[:, :, :end]  # (B, H, T_past + T_new, D)
