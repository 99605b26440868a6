"""Telling attention where each token is: sinusoidal, learned and rotary positions (chapter 05).

Attention treats its input as a set: permute the tokens and its outputs permute the same way (eq.
5.1). Three ways to give it word order, in the order the chapter derives them:

- :class:`SinusoidalPositionalEncoding` adds a fixed table (Vaswani et al. 2017, sec. 3.5; eq. 5.2):
  PE[pos, 2i] = sin(pos w_i), PE[pos, 2i+1] = cos(pos w_i), w_i = 10000^(-2i/C). Shifting the
  position by k rotates every (sin, cos) pair by the angle k w_i, PE[pos + k] = M_k PE[pos]
  (eq. 5.4).
- :class:`LearnedPositionalEmbedding` adds a learned row per position (GPT-2, BERT; eq. 5.6).
- :class:`RotaryEmbedding` (RoPE, Su et al. 2021) rotates queries and keys instead of adding
  anything, so that <R_m q, R_n k> depends on the positions only through n - m (eq. 5.9).

The fixed tables are constants, not parameters: they are computed once in float64 on the host and
converted to the dtype and device of the input on first use (then cached), so ``state_dict`` holds
only learned weights.
"""

from __future__ import annotations

import numpy as np

from tinyllm.backend import device_of, get_array_module, to_device
from tinyllm.creation import default_rng
from tinyllm.nn.module import Module, Parameter
from tinyllm.tensor import DEFAULT_DTYPE, Function, Tensor, apply


def _check_positions(layer: Module, x: Tensor, offset: int, width: int, axes: str) -> int:
    """Check that x is (``axes``, width) and that the layer's table has the positions offset ..
    offset+T-1; return T. ``axes`` names the leading axes for the message, e.g. "B, T"."""
    name, context_length = type(layer).__name__, layer.context_length
    if x.ndim < 2 or x.shape[-1] != width:
        raise ValueError(
            f"{name} expected inputs ({axes}, {width}) with the last axis {width}, got {x.shape}"
        )
    if not isinstance(offset, (int, np.integer)) or offset < 0:
        raise ValueError(
            f"{name} offset must be a non-negative integer (the first position), got {offset!r}"
        )
    length = x.shape[-2]
    if offset + length > context_length:
        raise ValueError(
            f"{name}: T={length} tokens at offset {offset} need positions up to "
            f"{offset + length - 1}, but the table has context_length={context_length} (positions "
            f"0..{context_length - 1}); build it with context_length >= {offset + length} or feed "
            "shorter sequences"
        )
    return length


def _on_device_of(cache: dict, tables: tuple[np.ndarray, ...], like) -> tuple:
    """``tables`` (float64 host arrays) in the dtype and on the device of array ``like``; converted
    once."""
    key = (device_of(like), np.dtype(like.dtype))
    if key not in cache:
        cache[key] = tuple(to_device(table.astype(like.dtype), key[0]) for table in tables)
    return cache[key]


# --------------------------------------------------------------------------------------------------
# Sinusoidal positions (eqs. 5.2-5.5)
# --------------------------------------------------------------------------------------------------


def sinusoidal_table(context_length: int, d_model: int, base: float = 10000.0) -> np.ndarray:
    """The (context_length, C) float64 table PE[pos, 2i] = sin(pos w_i), PE[pos, 2i+1] = cos(...)

    (eq. 5.2) with frequencies w_i = base^(-2i/C), i = 0 .. C/2 - 1: wavelengths 2 pi / w_i from
    2 pi (i = 0) to nearly 2 pi * base (eq. 5.3).
    """
    if d_model < 2 or d_model % 2:
        raise ValueError(
            "sinusoidal positions need an even width d_model (one (sin, cos) pair per frequency), "
            f"got {d_model}"
        )
    if context_length < 1:
        raise ValueError(f"context_length must be at least 1, got {context_length}")
    frequencies = base ** (-np.arange(0, d_model, 2) / d_model)  # (C/2,)  w_i
    angles = np.arange(context_length)[:, None] * frequencies  # (context_length, C/2)  pos * w_i
    table = np.empty((context_length, d_model))  # (context_length, C)
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles)
    return table


class SinusoidalPositionalEncoding(Module):
    """x + PE[offset : offset + T] for x of shape (B, T, C), PE the fixed table of eq. 5.2.

    No parameters; the gradient of the sum is the identity in x. ``table`` is the full float64
    (context_length, C) table and ``encoding(T)`` its first T rows, for plots.
    """

    def __init__(self, context_length: int, d_model: int, base: float = 10000.0):
        self.context_length, self.d_model, self.base = context_length, d_model, base
        self.table = sinusoidal_table(context_length, d_model, base)  # (context_length, C), float64
        self._cache: dict = {}

    def encoding(self, length: int, offset: int = 0) -> np.ndarray:
        """Rows offset .. offset+length-1 of the table: a (length, C) float64 NumPy array."""
        return self.table[offset:offset + length]  # (T, C)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        T = _check_positions(self, x, offset, self.d_model, "B, T")
        (table,) = _on_device_of(self._cache, (self.table,), x.data)
        return x + Tensor(table[offset:offset + T])  # (B, T, C) + (T, C)

    def extra_repr(self) -> str:
        return f"context_length={self.context_length}, d_model={self.d_model}, base={self.base:g}"


# --------------------------------------------------------------------------------------------------
# Learned positions (eq. 5.6)
# --------------------------------------------------------------------------------------------------


class LearnedPositionalEmbedding(Module):
    """x + P[offset : offset + T] with a learned table ``weight`` P (context_length, C)   (eq. 5.6)

    dL/dx = g;  dL/dP[offset + t] = sum over the batch of g[:, t], zero for rows not used.
    ``offset`` is the position of the first token: during generation with a key/value cache the new
    tokens sit at positions offset, offset + 1, ... Initialised N(0, 1) like
    :class:`~tinyllm.nn.embedding.Embedding` (GPT-2 and BERT re-initialise it to N(0, 0.02^2)).
    """

    def __init__(self, context_length: int, d_model: int, rng: np.random.Generator | None = None,
                 dtype=DEFAULT_DTYPE):
        if context_length < 1 or d_model < 1:
            raise ValueError(
                "LearnedPositionalEmbedding needs context_length >= 1 and d_model >= 1, "
                f"got ({context_length}, {d_model})"
            )
        rng = rng or default_rng()
        self.context_length, self.d_model = context_length, d_model
        table = rng.standard_normal((context_length, d_model)).astype(dtype)  # (context_length, C)
        self.weight = Parameter(table)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        T = _check_positions(self, x, offset, self.d_model, "B, T")
        return x + self.weight[offset:offset + T]  # (B, T, C) + (T, C)

    def extra_repr(self) -> str:
        return f"context_length={self.context_length}, d_model={self.d_model}"


# --------------------------------------------------------------------------------------------------
# Rotary positions, RoPE (eqs. 5.7-5.10)
# --------------------------------------------------------------------------------------------------


def rotary_angles(context_length: int, head_dim: int, base: float = 10000.0) -> np.ndarray:
    """The (context_length, D/2) float64 angles theta[t, i] = t * base^(-2i/D)   (eq. 5.8)"""
    if head_dim < 2 or head_dim % 2:
        raise ValueError(
            "rotary embeddings rotate pairs of coordinates, so head_dim must be even, "
            f"got {head_dim}"
        )
    if context_length < 1:
        raise ValueError(f"context_length must be at least 1, got {context_length}")
    frequencies = base ** (-np.arange(0, head_dim, 2) / head_dim)  # (D/2,)
    return np.arange(context_length)[:, None] * frequencies  # (context_length, D/2)


def _rotate_halves(x, cos_full, sin_signed):
    """x * cos_full + swap_halves(x) * sin_signed: each pair (x_i, x_{i+D/2}) rotated (eq. 5.7).

    With cos_full = [cos, cos] and sin_signed = [-sin, sin] (both (..., T, D)) this is
    y_i = x_i cos - x_{i+D/2} sin,  y_{i+D/2} = x_{i+D/2} cos + x_i sin. Every product runs over
    whole contiguous rows (twice as fast in NumPy as working on the two halves separately).
    """
    half = x.shape[-1] // 2
    swapped = get_array_module(x).empty_like(x)  # (..., T, D)
    swapped[..., :half] = x[..., half:]
    swapped[..., half:] = x[..., :half]
    swapped *= sin_signed
    out = x * cos_full  # (..., T, D)
    out += swapped
    return out


class Rotary(Function):
    """y = R_theta x: coordinates i and i + D/2 rotated together by the angle theta[t, i] (eq. 5.7)

    dL/dx = R_theta^T g = R_(-theta) g: a rotation is orthogonal, so its backward is the inverse
    rotation, the same op with sin negated (eq. 5.10). ``cos``, ``sin``: the (..., T, D/2) tables,
    broadcast over x's leading axes.
    """

    def __init__(self, cos, sin):
        xp = get_array_module(cos)
        self.cos_full = xp.concatenate([cos, cos], axis=-1)  # (..., T, D)
        self.sin_signed = xp.concatenate([-sin, sin], axis=-1)  # (..., T, D)

    def forward(self, x):
        return _rotate_halves(x, self.cos_full, self.sin_signed)

    def backward(self, grad):
        return _rotate_halves(grad, self.cos_full, -self.sin_signed)


def apply_rotary(x: Tensor, cos, sin) -> Tensor:
    """Rotate x (..., T, D) by the angles whose cos and sin are given, (T, D/2) (or broadcastable).

    Eq. 5.7. Pairing convention: coordinate i is paired with i + D/2 (the two halves of the head),
    as in GPT-NeoX and Hugging Face's LLaMA. The RoFormer paper pairs neighbours (2i, 2i+1); the two
    differ only by a fixed permutation of the head's coordinates, which the learned query and key
    projections absorb, so they are equally good but their weights are not interchangeable. The
    tables are cast to x's dtype and device.
    """
    _check_rotary_inputs(x, cos, sin)
    cos, sin = (_table_like(table, x) for table in (cos, sin))  # (T, D/2) each
    return apply(Rotary(cos, sin), x)


def _check_rotary_inputs(x: Tensor, cos, sin) -> None:
    if x.ndim < 2 or x.shape[-1] % 2:
        raise ValueError(f"apply_rotary expected x of shape (..., T, D) with D even, got {x.shape}")
    if tuple(cos.shape) != tuple(sin.shape) or cos.shape[-1] != x.shape[-1] // 2:
        raise ValueError(
            "apply_rotary expected cos and sin of the same shape (T, D/2) = "
            f"(T, {x.shape[-1] // 2}), got {tuple(cos.shape)} and {tuple(sin.shape)}"
        )


def _table_like(table, x: Tensor):
    """A cos or sin table (array or Tensor) as an array in x's dtype, on x's device."""
    table = table.data if isinstance(table, Tensor) else table
    return to_device(table, x.device).astype(x.dtype, copy=False)


class RotaryEmbedding(Module):
    """RoPE (Su et al. 2021): rotates queries or keys x (B, H, T, D) by their positions (eq. 5.7).

    Position t rotates the pair of coordinates (i, i + D/2) by the angle t * base^(-2i/D) (halves
    pairing, see :func:`apply_rotary`). Apply it to q and k after the head split; then
    <R_m q, R_n k> = <q, R_(n-m) k> depends only on the offset n - m (eq. 5.9). No parameters;
    ``cos`` and ``sin`` are the (context_length, D/2) float64 tables. ``offset`` is the position of
    the first token (generation with a key/value cache).
    """

    def __init__(self, head_dim: int, context_length: int = 2048, base: float = 10000.0):
        angles = rotary_angles(context_length, head_dim, base)  # (context_length, D/2)
        self.head_dim, self.context_length, self.base = head_dim, context_length, base
        self.cos, self.sin = np.cos(angles), np.sin(angles)  # (context_length, D/2) each, float64
        self._cache: dict = {}

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        T = _check_positions(self, x, offset, self.head_dim, "B, H, T")
        cos, sin = _on_device_of(self._cache, (self.cos, self.sin), x.data)  # (context_length, D/2)
        return apply_rotary(x, cos[offset:offset + T], sin[offset:offset + T])  # (B, H, T, D)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, context_length={self.context_length}, base={self.base:g}"
