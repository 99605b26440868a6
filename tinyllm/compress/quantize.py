"""Symmetric absmax quantization of weights to int8 and int4 (chapter 16, "Quantization").

A weight matrix W (K, N) (``Linear`` stores (in_features, out_features)) is cut along its input
axis into groups of g rows; group G of output column j gets one scale (eq. 16.5)

    s_Gj = max_{i in G} |W_ij| / q_max,      q_max = 2^(b-1) - 1   (127 for int8, 7 for int4)
    q_ij = round(W_ij / s_Gj)   in [-q_max, q_max],      dequant(q)_ij = s_Gj q_ij

(Jacob et al. 2018 use an affine zero point; the symmetric absmax form is Dettmers et al. 2022's,
LLM.int8()). g = K is *per output channel* (one scale per column); a smaller g follows outliers
more closely at the price of more scales. No entry is clipped (|W_ij / s_Gj| <= q_max), so the only
error is rounding to the nearest integer, and for every entry (eq. 16.6)

    |W_ij - dequant(q)_ij| <= s_Gj / 2.

Two ways to multiply activations x (M, K) by a quantized W:

- dequantize, then multiply in float: x @ dequant(q); its error is |x (W - dequant(q))|_mj <=
  sum_i |x_mi| s_{G(i) j} / 2 (eq. 16.7);
- integer product: quantize each row of x on the fly, x_m ~ t_m p_m with t_m = max_i |x_mi| / 127
  and p int8, then y_mj = t_m sum_G s_Gj sum_{i in G} p_mi q_ij, the inner sums in int32
  (eq. 16.8). With e = x - t p and E = W - s q, x W - (t p)(s q) = e W + (t p) E, so
  |error_mj| <= sum_i (t_m / 2) |W_ij| + |t_m p_mi| s_{G(i) j} / 2 (eq. 16.9).

int4 packs two values per byte (:func:`pack_int4`): 4 bits per weight plus the scales.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyllm.backend import get_array_module

INT32_MAX = 2 ** 31 - 1


def max_level(bits: int) -> int:
    """q_max = 2^(bits-1) - 1: the largest integer level of a symmetric b-bit code."""
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 (int8) or 4 (int4), got {bits}")
    return 2 ** (bits - 1) - 1


@dataclass(frozen=True)
class QuantizedWeight:
    """A quantized (K, N) matrix: ``values`` int8 (K, N), or for 4 bits uint8 (K/2, N) with two
    values per byte; ``scales`` float32 (K/g, N), one per group and output column."""

    values: np.ndarray
    scales: np.ndarray
    bits: int
    group_size: int  # g: rows of W that share a scale; g = K is per output channel
    shape: tuple[int, int]  # (K, N) of the float matrix

    @property
    def levels(self) -> np.ndarray:
        """The integer levels q (K, N) as int8, unpacked if 4-bit."""
        return unpack_int4(self.values) if self.bits == 4 else self.values

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes + self.scales.nbytes)


def _check_groups(shape: tuple[int, ...], group_size: int | None, bits: int) -> int:
    if len(shape) != 2:
        raise ValueError(f"quantize_absmax expects a matrix (K, N) = (in_features, out_features), "
                         f"got shape {shape}")
    K = shape[0]
    g = K if group_size is None else int(group_size)
    if g < 1 or K % g:
        raise ValueError(f"group_size {group_size} must divide the input width K = {K}; choose "
                         f"one of {[d for d in range(1, K + 1) if K % d == 0]}, or None (per "
                         "output channel)")
    if bits == 4 and K % 2:
        raise ValueError(f"int4 packs two rows per byte, so K = {K} must be even")
    return g


def quantize_absmax(weight, bits: int = 8, group_size: int | None = None) -> QuantizedWeight:
    """W (K, N) -> int levels and scales, symmetric absmax per group of ``group_size`` input rows
    (None: per output channel), eq. 16.5. Rounding is to nearest, ties to even."""
    q_max = max_level(bits)
    xp = get_array_module(weight)
    g = _check_groups(weight.shape, group_size, bits)
    K, N = weight.shape
    w = weight.astype(np.float64).reshape(K // g, g, N)  # (G, g, N), float64: exact division
    absmax = xp.abs(w).max(axis=1, keepdims=True)  # (G, 1, N)
    scales = xp.where(absmax > 0, absmax / q_max, 1.0).astype(np.float32)  # an all-zero group: 1
    levels = (w / scales).round().astype(np.int8).reshape(K, N)  # |w / s| <= q_max: no clip
    values = pack_int4(levels) if bits == 4 else levels
    return QuantizedWeight(values, scales[:, 0, :], bits, g, (K, N))


def dequantize(qweight: QuantizedWeight) -> np.ndarray:
    """s_Gj q_ij as float32 (K, N)  (eq. 16.5)."""
    K, N = qweight.shape
    g = qweight.group_size
    levels = qweight.levels.reshape(K // g, g, N)  # (G, g, N)
    return (levels * qweight.scales[:, None, :]).reshape(K, N).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# int4: two values in one byte
# --------------------------------------------------------------------------------------------------


def pack_int4(levels) -> np.ndarray:
    """Integers in [-8, 7] (K, N), K even -> uint8 (K/2, N): row 2k in the low nibble, row 2k+1 in
    the high one, each stored as level + 8 (offset binary, 0..15)."""
    if levels.shape[0] % 2:
        raise ValueError(f"pack_int4 needs an even number of rows, got {levels.shape}")
    if levels.size and (int(levels.min()) < -8 or int(levels.max()) > 7):
        raise ValueError("pack_int4 takes integers in [-8, 7]; quantize with bits=4 first")
    offset = (levels.astype(np.int16) + 8).astype(np.uint8)  # (K, N) in 0..15
    return (offset[0::2] | (offset[1::2] << np.uint8(4))).astype(np.uint8)  # (K/2, N)


def unpack_int4(packed) -> np.ndarray:
    """uint8 (K/2, N) from :func:`pack_int4` -> int8 (K, N), the original levels."""
    xp = get_array_module(packed)
    low = (packed & np.uint8(0x0F)).astype(np.int8) - 8  # (K/2, N) rows 0, 2, 4, ...
    high = (packed >> np.uint8(4)).astype(np.int8) - 8  # (K/2, N) rows 1, 3, 5, ...
    levels = xp.empty((2 * packed.shape[0], *packed.shape[1:]), dtype=np.int8)  # (K, N)
    levels[0::2], levels[1::2] = low, high
    return levels


# --------------------------------------------------------------------------------------------------
# The two matrix products
# --------------------------------------------------------------------------------------------------


def quantize_rows(x) -> tuple[np.ndarray, np.ndarray]:
    """Activations x (M, K) -> int8 levels p (M, K) and per-row scales t (M, 1), absmax over each
    row (eq. 16.8): x_m ~ t_m p_m, |x_mi - t_m p_mi| <= t_m / 2."""
    xp = get_array_module(x)
    x64 = x.astype(np.float64)
    absmax = xp.abs(x64).max(axis=-1, keepdims=True)  # (M, 1)
    scales = xp.where(absmax > 0, absmax / 127, 1.0)  # (M, 1)
    return (x64 / scales).round().astype(np.int8), scales.astype(np.float32)  # ties to even


def dequantized_matmul(x, qweight: QuantizedWeight) -> np.ndarray:
    """x (M, K) @ dequant(W) (K, N) -> (M, N) float32: weight-only quantization (eq. 16.7)."""
    return x.astype(np.float32, copy=False) @ dequantize(qweight)


def int8_matmul(x, qweight: QuantizedWeight) -> np.ndarray:
    """x (M, K) float -> (M, N) float32 through int8 x int8 products summed in int32 (eq. 16.8).

    Per group G: (p[:, G] @ q[G, :]) is exact in int32 as long as g * 127 * q_max < 2^31; the
    groups are then scaled by s_Gj and summed (in float64, so the float part adds no error of
    note), and each row is scaled by t_m.
    """
    K, N = qweight.shape
    g = qweight.group_size
    if x.ndim != 2 or x.shape[1] != K:
        raise ValueError(f"int8_matmul expects x (M, K) with K = {K}, got {x.shape}")
    if g * 127 * max_level(qweight.bits) > INT32_MAX:
        raise ValueError(f"a group of {g} rows could overflow the int32 sums; use group_size "
                         f"<= {INT32_MAX // (127 * max_level(qweight.bits))}")
    p, t = quantize_rows(x)  # (M, K) int8, (M, 1)
    M, G = x.shape[0], K // g
    p = p.astype(np.int32).reshape(M, G, g).transpose(1, 0, 2)  # (G, M, g)
    q = qweight.levels.astype(np.int32).reshape(G, g, N)  # (G, g, N)
    sums = p @ q  # (G, M, N) int32, exact
    y = (sums * qweight.scales[:, None, :].astype(np.float64)).sum(axis=0)  # (M, N), float64
    return (y * t).astype(np.float32)  # (M, N)
