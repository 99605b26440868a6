"""Multi-head attention and the key/value cache (chapter 07).

:class:`MultiHeadAttention` splits the width C into H heads of width D = C / H with reshapes and
runs the fused scaled dot-product attention of chapter 06 on all heads at once; :class:`KVCache`
keeps the keys and values of past positions so that generation computes each new position once.
"""

from __future__ import annotations

import numpy as np

from tinyllm.backend import get_array_module
from tinyllm.creation import default_rng, spawn_rng
from tinyllm.nn.attention import attention_mask, scaled_dot_product_attention
from tinyllm.nn.blockwise_attention import blockwise_attention
from tinyllm.nn.layers import Linear, check_dropout
from tinyllm.nn.module import Module
from tinyllm.tensor import DEFAULT_DTYPE, Tensor, is_grad_enabled

# The attention op a layer runs: the fused op (chapter 06, keeps the (T_q, T_k) weights) or the
# blockwise op with the online softmax (chapter 17, memory O(T)); both give the same function.
ATTENTION_KINDS = ("fused", "blockwise")


def check_attention(kind: str) -> str:
    """``kind`` if it names an attention op of ATTENTION_KINDS, else a ValueError."""
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"unknown attention {kind!r}; expected one of {list(ATTENTION_KINDS)}")
    return kind


class KVCache:
    """Keys and values that one attention layer has computed so far, for generation (chapter 07).

    ``keys`` (B, H, context_length, D) and ``values`` (B, H, context_length, D_v) are plain arrays
    (no graph: generation runs under ``tl.no_grad()``), allocated at the first :meth:`append`;
    ``length`` counts the filled positions. Preallocating ``context_length`` positions makes each
    step copy only the new entries (O(T) work per token), where concatenating would copy the whole
    past every step (O(T^2) over a sequence).

    A model with L layers keeps one cache per layer,
    ``caches = [KVCache(context_length) for _ in range(L)]``, and passes ``cache=caches[l]`` to
    layer l's attention. :meth:`reset` empties a cache for a new sequence.
    """

    def __init__(self, context_length: int):
        if context_length < 1:
            raise ValueError(
                "KVCache needs context_length >= 1 (the longest sequence to generate), "
                f"got {context_length}"
            )
        self.context_length = context_length
        self.keys = None
        self.values = None
        self.length = 0

    def append(self, keys, values) -> tuple[object, object]:
        """Store keys (B, H, T_new, D) and values (B, H, T_new, D_v); return all cached ones."""
        B, H, T_new, D = keys.shape
        if self.keys is None:
            xp = get_array_module(keys)
            T_max, D_v = self.context_length, values.shape[-1]  # T_max = context_length
            self.keys = xp.empty((B, H, T_max, D), dtype=keys.dtype)  # (B, H, T_max, D)
            self.values = xp.empty((B, H, T_max, D_v), dtype=values.dtype)  # (B, H, T_max, D_v)
        cached = (self.keys.shape[:2], self.keys.shape[-1], self.values.shape[-1])
        if cached != ((B, H), D, values.shape[-1]) or values.shape[:3] != (B, H, T_new):
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
                f"{self.context_length}; create KVCache(context_length) with the longest sequence "
                "(the context length), or reset() it"
            )
        self.keys[:, :, self.length:end] = keys
        self.values[:, :, self.length:end] = values
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]  # (B, H, T_past + T_new, D)

    def reset(self) -> None:
        """Forget everything (the next append may have another batch size)."""
        self.keys = self.values = None
        self.length = 0

    def __repr__(self) -> str:
        return f"KVCache(length={self.length}, context_length={self.context_length})"


class MultiHeadAttention(Module):
    """H attention heads side by side on a width C = H * D (chapter 07, eqs. 7.1-7.3).

    q = x W_q + b_q, k = c W_k + b_k, v = c W_v + b_v with c = x (self-attention) or c = ``context``
    (cross-attention); each is cut into H heads by a reshape (B, T, C) -> (B, T, H, D) ->
    (B, H, T, D); :func:`scaled_dot_product_attention` runs on all heads at once; the heads are
    glued back and mixed by ``out_proj``. Parameters: 4 (C^2 + C) with bias (eq. 7.3). Dropout
    (probability ``dropout``) acts on the attention weights in training mode only, with masks drawn
    from a generator seeded from ``rng``. ``attention`` picks the op (ATTENTION_KINDS): "fused"
    (chapter 06) or "blockwise" (chapter 17: the same values in memory O(T), no weights to return);
    a model may change the attribute after construction.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 rng: np.random.Generator | None = None, dtype=DEFAULT_DTYPE,
                 attention: str = "fused"):
        if num_heads < 1 or d_model < 1 or d_model % num_heads:
            raise ValueError(
                "MultiHeadAttention needs d_model = num_heads * head_dim: d_model = "
                f"{d_model} is not divisible by num_heads = {num_heads}; choose num_heads among "
                f"{[h for h in range(1, d_model + 1) if d_model % h == 0]}"
            )
        check_dropout(dropout, "attention dropout")
        rng = rng or default_rng()
        self.d_model, self.num_heads, self.head_dim = d_model, num_heads, d_model // num_heads
        self.dropout_p, self.attention = dropout, check_attention(attention)
        self.q_proj = Linear(d_model, d_model, bias=bias, rng=rng, dtype=dtype)
        self.k_proj = Linear(d_model, d_model, bias=bias, rng=rng, dtype=dtype)
        self.v_proj = Linear(d_model, d_model, bias=bias, rng=rng, dtype=dtype)
        self.out_proj = Linear(d_model, d_model, bias=bias, rng=rng, dtype=dtype)
        self.rng = spawn_rng(rng)  # for dropout masks, seeded from rng: one seed fixes all

    def forward(self, x: Tensor, context: Tensor | None = None, mask=None, is_causal: bool = False,
                return_weights: bool = False,
                cache: KVCache | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """x (B, T_q, C) -> (B, T_q, C); with ``return_weights`` also the weights (B, H, T_q, T_k).

        ``context`` (B, T_k, C): keys and values come from it (cross-attention); None: from x.
        ``mask``: see :meth:`_head_mask`. ``cache``: a :class:`KVCache`; x holds only the new
        positions, their keys and values are appended, and the queries attend to every cached
        position (with ``is_causal``, aligned bottom-right, so new position i sees the past and the
        new positions up to i). Needs ``tl.no_grad()``.
        """
        if check_attention(self.attention) == "blockwise" and return_weights:
            raise ValueError("blockwise attention never builds the weights (B, H, T_q, T_k), so it "
                             "cannot return them; use attention='fused' to plot them")
        mask = self._check_inputs(x, context, mask, cache)  # 4 axes against (B, H, T_q, T_k)
        source = x if context is None else context  # (B, T_s, C): keys and values come from it
        B, T_q, C = x.shape
        H, D = self.num_heads, self.head_dim
        q = self.q_proj(x).reshape(B, T_q, H, D).transpose(0, 2, 1, 3)  # (B, H, T_q, D)   eq. 7.1
        k = self.k_proj(source).reshape(B, -1, H, D).transpose(0, 2, 1, 3)  # (B, H, T_s, D)
        v = self.v_proj(source).reshape(B, -1, H, D).transpose(0, 2, 1, 3)  # (B, H, T_s, D)
        if cache is not None:
            k, v = (Tensor(a) for a in cache.append(k.data, v.data))  # (B, H, T_past + T_q, D)
        dropout_p = self.dropout_p if self.training else 0.0
        if self.attention == "blockwise":  # chapter 17: never builds the (T_q, T_k) weights
            out = blockwise_attention(q, k, v, mask=mask, is_causal=is_causal,
                                      dropout_p=dropout_p, rng=self.rng)  # (B, H, T_q, D)
            return self.out_proj(out.transpose(0, 2, 1, 3).reshape(B, T_q, C))  # (B, T_q, C)
        result = scaled_dot_product_attention(  # every head at once, eq. 7.2
            q, k, v, mask=mask, is_causal=is_causal, dropout_p=dropout_p, rng=self.rng,
            return_weights=return_weights,
        )
        out, weights = result if return_weights else (result, None)  # out (B, H, T_q, D)
        out = self.out_proj(out.transpose(0, 2, 1, 3).reshape(B, T_q, C))  # (B, T_q, C)   eq. 7.2
        return (out, weights) if return_weights else out

    # --- input checks: every one runs before the cache is touched -------------------------------
    def _check_inputs(self, x: Tensor, context: Tensor | None, mask, cache: KVCache | None):
        """Check x, context and the cache; return the mask with 4 axes (see :meth:`_head_mask`)."""
        self._check_width(x, "x")
        B, T_q = x.shape[:2]
        if context is not None:
            self._check_width(context, "context")
            if context.shape[0] != B:
                raise ValueError(f"x and context batch sizes differ: {B} vs {context.shape[0]}")
        if cache is not None:
            if context is not None:
                raise ValueError(
                    "the KV cache is for causal self-attention; cross-attention takes no cache"
                )
            if is_grad_enabled():
                raise RuntimeError(
                    "the KV cache holds plain arrays outside the graph, so it is for generation "
                    "only: call the model under `with tl.no_grad():`"
                )
        T_past = cache.length if cache is not None else 0
        T_k = T_past + (x if context is None else context).shape[1]
        mask = self._head_mask(mask, B, T_q, T_k)  # broadcastable to (B, H, T_q, T_k), or None
        attention_mask(mask, False, (B, self.num_heads, T_q, T_k), x.data)  # raises on a bad mask
        return mask

    def _check_width(self, x: Tensor, name: str) -> None:
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"MultiHeadAttention expected {name} (B, T, C) with C = d_model = {self.d_model}, "
                f"got {x.shape}"
            )

    def _head_mask(self, mask, B: int, T_q: int, T_k: int):
        """A user mask as 4 axes against the scores (B, H, T_q, T_k).

        (B, T_k) is a key padding mask (True = real token) -> (B, 1, 1, T_k): every query of example
        b ignores b's padded keys, in every head. (B, T_q, T_k) -> (B, 1, T_q, T_k): shared by the
        heads. Four axes are used as given. A (T_q, T_k) pattern for the whole batch is passed as
        (1, T_q, T_k).
        """
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
            return data
        raise ValueError(
            f"mask expected (B, T_k), (B, T_q, T_k) or (B, H, T_q, T_k) = ({B}, {T_k}), "
            f"({B}, {T_q}, {T_k}) or ({B}, {self.num_heads}, {T_q}, {T_k}), got {data.shape}"
        )

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, num_heads={self.num_heads}, dropout={self.dropout_p}"
                + (f", attention={self.attention!r}" if self.attention != "fused" else ""))
