"""Reference solutions of exercises/03_softmax_cross_entropy.py. Try the exercises first."""

from __future__ import annotations

import numpy as np

from tinyllm.backend import get_array_module, to_numpy
from tinyllm.nn.softmax import log_softmax
from tinyllm.tensor import Tensor


def softmax_forward(self, x):
    """exp(x - max x) / sum exp(x - max x)   (eqs. 3.1, 3.3)"""
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=self.axis, keepdims=True))  # entries in (0, 1]
    self.y = e / e.sum(axis=self.axis, keepdims=True)
    return self.y


def softmax_backward(self, grad):
    """y * (g - <g, y>)   (eq. 3.5)"""
    return self.y * (grad - (grad * self.y).sum(axis=self.axis, keepdims=True))


def log_softmax_forward(self, x):
    """x - max x - log sum exp(x - max x)   (eq. 3.6)"""
    xp = get_array_module(x)
    shifted = x - x.max(axis=self.axis, keepdims=True)  # entries <= 0
    self.y = shifted - xp.log(xp.exp(shifted).sum(axis=self.axis, keepdims=True))
    return self.y


def log_softmax_backward(self, grad):
    """g - softmax(x) sum(g)   (eq. 3.7)"""
    xp = get_array_module(grad)
    return grad - xp.exp(self.y) * grad.sum(axis=self.axis, keepdims=True)


def cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """-(1 - eps) log p[t] - eps mean log p, ignored rows 0, then the reduction (3.8, 3.12, 3.13)"""
    targets = to_numpy(targets.data if isinstance(targets, Tensor) else np.asarray(targets))
    num_classes = logits.shape[-1]
    flat = targets.reshape(-1)  # (N,)
    kept = flat != ignore_index  # (N,)
    log_p = log_softmax(logits.reshape(-1, num_classes))  # (N, V)
    losses = -log_p[np.arange(flat.size), np.where(kept, flat, 0)]  # (N,)
    if label_smoothing:
        losses = losses * (1 - label_smoothing) - log_p.mean(axis=1) * label_smoothing
    losses = losses * Tensor(kept.astype(logits.dtype))  # (N,) zero on ignored rows
    if reduction == "none":
        return losses.reshape(targets.shape)
    total = losses.sum()
    return total if reduction == "sum" else total * (1.0 / max(int(kept.sum()), 1))
