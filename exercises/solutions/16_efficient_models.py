"""Reference solutions of exercises/16_efficient_models.py. Try the exercises first."""

from __future__ import annotations

import numpy as np

from tinyllm.backend import get_array_module, to_numpy
from tinyllm.compress.prune import prunable_weights
from tinyllm.compress.quantize import (
    INT32_MAX,
    QuantizedWeight,
    _check_groups,
    max_level,
    pack_int4,
    quantize_rows,
)


def bfloat16_bits(x):
    """float32 -> the nearest bfloat16 bit patterns (uint16), ties to even (eq. 16.3)."""
    xp = get_array_module(x)
    x = xp.asarray(x, dtype=np.float32)
    bits = x.view(np.uint32)
    lowest_kept = (bits >> np.uint32(16)) & np.uint32(1)  # 1 if the truncated value is odd
    rounded = bits + (np.uint32(0x7FFF) + lowest_kept)  # a tie goes up only to an even value
    quiet_nan = bits | np.uint32(0x00400000)  # a nan keeps its sign, becomes quiet
    high = xp.where(xp.isnan(x), quiet_nan, rounded) >> np.uint32(16)
    return high.astype(np.uint16)


def loss_scaler_update(self):
    """S / 2 (and a skipped step) on overflow, 2 S after N clean steps, else S (eq. 16.4)."""
    if self.found_overflow is None:
        raise RuntimeError("LossScaler.update() needs a verdict: call unscale_and_check() on "
                           "this step's gradients first")
    if self.found_overflow:
        self.skipped_steps += 1
        self.clean_steps = 0
        if self.enabled:
            self.loss_scale *= self.backoff_factor
    else:
        self.clean_steps += 1
        if self.enabled and self.clean_steps >= self.growth_interval:
            self.loss_scale *= self.growth_factor
            self.clean_steps = 0
    self.found_overflow = None


def quantize_absmax(weight, bits=8, group_size=None):
    """s_Gj = max_G |W_ij| / q_max, q_ij = round(W_ij / s_Gj)   (eq. 16.5)."""
    xp = get_array_module(weight)
    q_max = max_level(bits)
    g = _check_groups(weight.shape, group_size, bits)
    K, N = weight.shape
    groups = weight.astype(np.float64).reshape(K // g, g, N)  # (K/g, g, N)
    absmax = xp.abs(groups).max(axis=1, keepdims=True)  # (K/g, 1, N)
    scales = xp.where(absmax > 0, absmax / q_max, 1.0).astype(np.float32)  # (K/g, 1, N)
    levels = xp.rint(groups / scales).astype(np.int8).reshape(K, N)  # (K, N), ties to even
    values = pack_int4(levels) if bits == 4 else levels  # (K/2, N) or (K, N)
    return QuantizedWeight(values, scales[:, 0, :], bits, g, (K, N))


def int8_matmul(x, qweight):
    """y_mj = t_m sum_G s_Gj sum_{i in G} p_mi q_ij, the inner sums in int32 (eq. 16.8)."""
    K, N = qweight.shape
    g = qweight.group_size
    if x.ndim != 2 or x.shape[1] != K:
        raise ValueError(f"int8_matmul expects x (M, K) with K = {K}, got {x.shape}")
    if g * 127 * max_level(qweight.bits) > INT32_MAX:
        raise ValueError(f"groups of {g} rows could overflow the int32 sums")
    M, G = x.shape[0], K // g
    p, t = quantize_rows(x)  # (M, K) int8, (M, 1)
    p = p.astype(np.int32).reshape(M, G, g).transpose(1, 0, 2)  # (G, M, g)
    q = qweight.levels.astype(np.int32).reshape(G, g, N)  # (G, g, N)
    sums = p @ q  # (G, M, N) int32, exact
    scaled = sums * qweight.scales.astype(np.float64)[:, None, :]  # (G, M, N)
    return (scaled.sum(axis=0) * t).astype(np.float32)  # (M, N)


def _log_softmax(z):
    xp = get_array_module(z)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


def distillation_kl_forward(self, student):
    """L = T^2 / N sum_{n kept} KL(p_n || q_n), p = softmax(t/T), q = softmax(s/T) (eq. 16.10)."""
    xp = get_array_module(student)
    T, V = self.temperature, student.shape[-1]
    kept = self.kept.reshape(-1)  # (N_all,)
    self.count = max(int(kept.sum()), 1)  # N
    self.shape = student.shape
    log_p = _log_softmax(self.teacher.astype(student.dtype).reshape(-1, V) / T)  # (N_all, V)
    log_q = _log_softmax(student.reshape(-1, V) / T)  # (N_all, V)
    self.p, self.q = xp.exp(log_p), xp.exp(log_q)
    self.weights = kept.astype(student.dtype)[:, None]  # (N_all, 1)
    kl = (self.p * (log_p - log_q) * self.weights).sum()  # over kept rows and the vocabulary
    return xp.asarray(T * T * kl / self.count, dtype=student.dtype)


def magnitude_masks(model, sparsity, include_embeddings=False):
    """Prune the k = round(s n) weights of smallest |w| over the whole model (eq. 16.12)."""
    if not 0 <= sparsity <= 1:
        raise ValueError(f"sparsity is a fraction in [0, 1], got {sparsity}")
    weights = prunable_weights(model, include_embeddings)
    if not weights:
        raise ValueError(f"{type(model).__name__} has no weights to prune")
    magnitudes = np.concatenate([np.abs(to_numpy(p.data)).reshape(-1)
                                 for p in weights.values()])  # (n,)
    k = int(round(sparsity * magnitudes.size))
    keep = np.ones(magnitudes.size, dtype=bool)  # (n,)
    if k > 0:
        keep[np.argpartition(magnitudes, k - 1)[:k]] = False
    masks, start = {}, 0
    for name, p in weights.items():
        masks[name] = keep[start:start + p.size].reshape(p.shape)  # (n,) slice -> p's shape
        start += p.size
    return masks
