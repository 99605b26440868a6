"""The feed-forward network, the Transformer block and the stack of blocks (chapter 08).

A block is two sub-layers, each wrapped in a residual connection and a LayerNorm:

    pre-LN  (GPT-2):                      x = x + Attn(LN1(x));   x = x + FF(LN2(x))   (eq. 8.14)
    post-LN (original Transformer, BERT): x = LN1(x + Attn(x));   x = LN2(x + FF(x))   (eq. 8.15)

with FF(x) = fc2(act(fc1(x))) (eq. 8.9). A decoder block adds cross-attention to an encoder output
between the two (``cross_attention=True``). One :class:`TransformerStack` stacks L blocks: an
encoder (bidirectional, BERT) or a decoder (causal, with cross-attention);
:class:`TransformerEncoder` and :class:`TransformerDecoder` are its two settings. The module tree,
by attribute name (checkpoints and the loaders of pretrained weights rely on these names):

    TransformerBlock: ln1, attn, [ln_cross, cross_attn], ln2, ff (fc1, fc2)
    TransformerStack (Encoder, Decoder): layers.0 ... layers.{L-1}, [norm]
"""

from __future__ import annotations

import numpy as np

from tinyllm.creation import default_rng, spawn_rng
from tinyllm.nn.activations import GELU, ReLU
from tinyllm.nn.layers import Dropout, Linear
from tinyllm.nn.module import Module
from tinyllm.nn.multihead import MultiHeadAttention
from tinyllm.nn.normalization import LayerNorm
from tinyllm.tensor import DEFAULT_DTYPE, Tensor

ACTIVATIONS = ("gelu", "gelu_tanh", "relu")


def _activation(name: str) -> Module:
    """The activation layer called ``name``: exact GELU, GPT-2's tanh GELU, or ReLU."""
    if name == "gelu":
        return GELU()
    if name == "gelu_tanh":
        return GELU(approximate="tanh")
    if name == "relu":
        return ReLU()
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")


class FeedForward(Module):
    """FF(x) = dropout(fc2(act(fc1(x)))), applied to every token on its own (eq. 8.9).

    ``fc1`` widens C -> d_ff (4C in GPT and BERT), ``fc2`` narrows back; ``activation`` is "gelu"
    (exact), "gelu_tanh" (GPT-2) or "relu" (the original Transformer). The dropout is the block's
    residual dropout after the feed-forward sub-layer.
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu", dropout: float = 0.0,
                 bias: bool = True, rng: np.random.Generator | None = None, dtype=DEFAULT_DTYPE):
        rng = rng or default_rng()
        self.d_model, self.d_ff = d_model, d_ff
        self.fc1 = Linear(d_model, d_ff, bias=bias, rng=rng, dtype=dtype)
        self.activation = _activation(activation)
        self.fc2 = Linear(d_ff, d_model, bias=bias, rng=rng, dtype=dtype)
        self.dropout = Dropout(dropout, rng=spawn_rng(rng))  # masks seeded from rng

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        h = self.activation(self.fc1(x))  # (B, T, F)
        return self.dropout(self.fc2(h))  # (B, T, C)

    def _check_input(self, x: Tensor) -> None:
        if x.ndim == 0 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"FeedForward expected inputs (..., C) with C = d_model = {self.d_model}, "
                f"got {x.shape}"
            )

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_ff={self.d_ff}"


class TransformerBlock(Module):
    """A Transformer block: self-attention, [cross-attention,] feed-forward, residuals, LayerNorms.

    ``norm_first=True`` is the pre-LN block of GPT-2 (eq. 8.14), ``False`` the post-LN block of the
    original Transformer and BERT (eq. 8.15). ``d_ff`` defaults to 4 * d_model. With
    ``cross_attention=True`` the block is a decoder block: after self-attention it attends to
    ``context`` (the encoder output, (B, S, C)). Dropout (probability ``dropout``) acts on the
    attention weights inside attention and on every sub-layer's output before it is added to the
    residual stream; each dropout has its own generator, spawned from ``rng`` (or from the one
    ``tl.manual_seed`` seeds), so one seed fixes the weights and every mask.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int | None = None, dropout: float = 0.0,
                 norm_first: bool = True, bias: bool = True, activation: str = "gelu",
                 eps: float = 1e-5, cross_attention: bool = False,
                 rng: np.random.Generator | None = None, dtype=DEFAULT_DTYPE):
        rng = rng or default_rng()
        self.d_model, self.num_heads, self.norm_first = d_model, num_heads, norm_first
        self.d_ff = 4 * d_model if d_ff is None else d_ff
        self.ln1 = LayerNorm(d_model, eps=eps, bias=bias, dtype=dtype)
        self.attn = MultiHeadAttention(d_model, num_heads, dropout=dropout, bias=bias, rng=rng,
                                       dtype=dtype)
        self.ln_cross = self.cross_attn = None
        if cross_attention:  # a decoder block
            self.ln_cross = LayerNorm(d_model, eps=eps, bias=bias, dtype=dtype)
            self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout, bias=bias,
                                                 rng=rng, dtype=dtype)
        self.ln2 = LayerNorm(d_model, eps=eps, bias=bias, dtype=dtype)
        self.ff = FeedForward(d_model, self.d_ff, activation=activation, dropout=dropout, bias=bias,
                              rng=rng, dtype=dtype)
        self.dropout = Dropout(dropout, rng=spawn_rng(rng))  # masks seeded from rng

    def forward(self, x: Tensor, mask=None, is_causal: bool = False, context: Tensor | None = None,
                context_mask=None, cache=None) -> Tensor:
        """x (B, T, C) -> (B, T, C). ``mask``/``is_causal`` go to self-attention (with the KV
        ``cache``, if any); ``context`` (B, S, C) and ``context_mask`` to cross-attention."""
        self._check_inputs(x, context)
        drop = self.dropout  # residual dropout; the feed-forward network drops its own output
        if self.norm_first:  # pre-LN, eq. 8.14
            x = x + drop(self.attn(self.ln1(x), mask=mask, is_causal=is_causal, cache=cache))
            if self.cross_attn is not None:
                x = x + drop(self.cross_attn(self.ln_cross(x), context=context, mask=context_mask))
            return x + self.ff(self.ln2(x))  # (B, T, C)
        # post-LN, eq. 8.15
        x = self.ln1(x + drop(self.attn(x, mask=mask, is_causal=is_causal, cache=cache)))
        if self.cross_attn is not None:
            x = self.ln_cross(x + drop(self.cross_attn(x, context=context, mask=context_mask)))
        return self.ln2(x + self.ff(x))  # (B, T, C)

    def _check_inputs(self, x: Tensor, context: Tensor | None) -> None:
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"TransformerBlock expected x (B, T, C) with C = d_model = {self.d_model}, "
                f"got {x.shape}"
            )
        if self.cross_attn is None and context is not None:
            raise ValueError(
                "this TransformerBlock has no cross-attention, so it cannot use context; build it "
                "with cross_attention=True"
            )
        if self.cross_attn is not None and context is None:
            raise ValueError(
                "this TransformerBlock has cross-attention (a decoder block) and needs context "
                "(B, S, C), the encoder output"
            )

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, num_heads={self.num_heads}, d_ff={self.d_ff}, "
                f"norm_first={self.norm_first}")


class TransformerStack(Module):
    """``num_layers`` blocks in a row (``layers``), then an optional final LayerNorm (``norm``).

    One class for both stacks of the original Transformer; two flags say how the blocks attend:

    - encoder (BERT; the defaults): ``cross_attention=False, is_causal=False``; every position sees
      every position, except where ``mask`` says no: a (B, T) padding mask, True at real tokens (or
      any boolean mask :class:`MultiHeadAttention` takes, e.g. (B, T, T));
    - decoder: ``cross_attention=True, is_causal=True``; causal self-attention, then cross-attention
      to ``memory`` (B, S, C), the encoder output, with ``memory_mask`` (B, S) True at its real
      tokens. Causality makes target padding harmless: with the padding at the end, real positions
      never see it.

    ``final_norm`` adds ``norm`` after the last block; by default it is there exactly for pre-LN
    stacks, whose residual stream is otherwise never normalised. The other settings are
    :class:`TransformerBlock`'s.
    """

    def __init__(self, num_layers: int, d_model: int, num_heads: int, d_ff: int | None = None,
                 dropout: float = 0.0, norm_first: bool = False, bias: bool = True,
                 activation: str = "gelu", eps: float = 1e-5, final_norm: bool | None = None,
                 cross_attention: bool = False, is_causal: bool = False,
                 rng: np.random.Generator | None = None, dtype=DEFAULT_DTYPE):
        if num_layers < 1:
            raise ValueError(f"{type(self).__name__} needs num_layers >= 1, got {num_layers}")
        rng = rng or default_rng()
        self.cross_attention, self.is_causal = cross_attention, is_causal
        self.layers = [
            TransformerBlock(d_model, num_heads, d_ff=d_ff, dropout=dropout, norm_first=norm_first,
                             bias=bias, activation=activation, eps=eps,
                             cross_attention=cross_attention, rng=rng, dtype=dtype)
            for _ in range(num_layers)
        ]
        final_norm = norm_first if final_norm is None else final_norm
        self.norm = LayerNorm(d_model, eps=eps, bias=bias, dtype=dtype) if final_norm else None

    def forward(self, x: Tensor, mask=None, memory: Tensor | None = None,
                memory_mask=None) -> Tensor:
        """x (B, T, C) and its mask (B, T) [, memory (B, S, C) and its mask (B, S)] -> (B, T, C)."""
        for block in self.layers:
            x = block(x, mask, self.is_causal, context=memory, context_mask=memory_mask)
        return self.norm(x) if self.norm is not None else x  # (B, T, C)

    def extra_repr(self) -> str:
        return f"cross_attention={self.cross_attention}, is_causal={self.is_causal}"


class TransformerEncoder(TransformerStack):
    """BERT's encoder: a :class:`TransformerStack` of bidirectional blocks; ``encoder(x, mask)``."""


class TransformerDecoder(TransformerStack):
    """The original Transformer's decoder: a :class:`TransformerStack` with causal self-attention
    and cross-attention; ``decoder(x, memory, memory_mask)``."""

    def __init__(self, num_layers: int, d_model: int, num_heads: int, **settings):
        super().__init__(num_layers, d_model, num_heads, cross_attention=True, is_causal=True,
                         **settings)

    def forward(self, x: Tensor, memory: Tensor, memory_mask=None, mask=None) -> Tensor:
        return super().forward(x, mask=mask, memory=memory, memory_mask=memory_mask)
