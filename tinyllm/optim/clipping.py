"""Gradient clipping by global norm (chapter 09, section "Gradient clipping").

All gradients of a model are treated as one long vector g. If its length exceeds ``max_norm`` the
whole vector is scaled down to that length, so the direction of the update is kept and only its size
is capped.
"""

from __future__ import annotations

import math
from typing import Iterable

from tinyllm.backend import get_array_module
from tinyllm.tensor import Tensor


def clip_grad_norm_(params: Iterable[Tensor] | Tensor, max_norm: float) -> float:
    """Scale all gradients in place to a global norm of at most ``max_norm``; returns the old norm.

    ||g|| = sqrt(sum over parameters i of ||g_i||^2)                                  (eq. 9.13)
    c = max_norm / (||g|| + 1e-6);  if c < 1:  g_i <- c g_i  for every i

    PyTorch's semantics (the 1e-6 guards against a zero norm): after clipping the norm is max_norm
    up to about 1e-6 relative. Parameters whose grad is None are ignored. A non-finite norm (inf or
    nan) is returned as it is, so a trainer can notice it and skip the step.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    params = [params] if isinstance(params, Tensor) else list(params)
    grads = [p.grad for p in params if p.grad is not None]
    squared = 0.0
    for g in grads:
        flat = g.data.reshape(-1)
        squared += float(get_array_module(flat).dot(flat, flat))  # ||g_i||^2, no g*g temporary
    total_norm = math.sqrt(squared)
    scale = max_norm / (total_norm + 1e-6)
    if scale < 1.0:
        for g in grads:
            g.data *= scale  # in place: the engine gave each parameter its own gradient array
    return total_norm
