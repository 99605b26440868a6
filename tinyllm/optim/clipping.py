"""Gradient clipping by global norm (chapter 09, section "Gradient clipping").

All gradients of a model are treated as one long vector g. If its length exceeds ``max_norm`` the
whole vector is scaled down to that length, so the direction of the update is kept and only its size
is capped.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from tinyllm.backend import get_array_module
from tinyllm.tensor import Tensor


def clip_grad_norm_(params: Iterable[Tensor] | Tensor, max_norm: float):
    """Scale all gradients in place to a global norm of at most ``max_norm``; returns the old norm
    (a float on the CPU; on a GPU a 0-d device array, so that clipping never waits for the device:
    ``float(norm)`` is then one device->host transfer, for the caller to make when it needs it).

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
    if not grads:
        return 0.0
    xp = get_array_module(grads[0].data)
    squared = xp.zeros((), dtype=np.float64)  # on the device: summed there, in float64
    for g in grads:
        flat = g.data.reshape(-1)
        squared = squared + xp.dot(flat, flat).astype(np.float64)  # ||g_i||^2, no g*g temporary
    total_norm = xp.sqrt(squared)
    scale = xp.fmin(max_norm / (total_norm + 1e-6), 1.0)  # c, or 1: no clip (and for a NaN norm)
    if xp is not np or scale < 1:  # on a GPU a multiply by 1 (exact) costs less than a sync
        for g in grads:
            g.data *= scale.astype(g.dtype)  # in place: each parameter has its own gradient array
    return float(total_norm) if xp is np else total_norm
