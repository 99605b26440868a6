"""Reference solutions of exercises/05_positional_encoding.py. Try the exercises first."""

from __future__ import annotations

import numpy as np

from tinyllm.backend import get_array_module


def sinusoidal_table(context_length, d_model, base=10000.0):
    """PE[pos, 2i] = sin(pos w_i), PE[pos, 2i+1] = cos(pos w_i)   (eq. 5.2)"""
    frequencies = base ** (-np.arange(0, d_model, 2) / d_model)  # (C/2,)
    angles = np.arange(context_length)[:, None] * frequencies  # (context_length, C/2)
    table = np.empty((context_length, d_model))  # (context_length, C)
    table[:, 0::2], table[:, 1::2] = np.sin(angles), np.cos(angles)
    return table


def rotary_angles(context_length, head_dim, base=10000.0):
    """theta[t, i] = t base^(-2i/D)   (eq. 5.8)"""
    frequencies = base ** (-np.arange(0, head_dim, 2) / head_dim)  # (D/2,)
    return np.arange(context_length)[:, None] * frequencies  # (context_length, D/2)


def _swap_halves(x):
    half = x.shape[-1] // 2
    return get_array_module(x).concatenate([x[..., half:], x[..., :half]], axis=-1)  # (..., T, D)


def rotary_forward(self, x):
    """y = x cos_full + swap_halves(x) sin_signed   (eq. 5.7)"""
    return x * self.cos_full + _swap_halves(x) * self.sin_signed


def rotary_backward(self, grad):
    """R_(-theta) g   (eq. 5.10)"""
    return grad * self.cos_full - _swap_halves(grad) * self.sin_signed
