"""Reference solutions of exercises/02_tensors.py. Try the exercises first."""

from __future__ import annotations

from tinyllm.backend import get_array_module
from tinyllm.ops import _as_matrices


def unbroadcast(grad, shape):
    """Sum the prepended axes and the stretched length-1 axes (eq. 2.3)."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)  # leading axes that broadcasting prepended
    stretched = [extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1]
    return grad.sum(axis=(*range(extra), *stretched), keepdims=True).reshape(shape)


def sum_backward(self, grad):
    """g copied along the summed axes (eq. 2.4)."""
    xp = get_array_module(grad)
    expanded = grad if self.keepdims else xp.expand_dims(grad, self.axes)  # summed axes: length 1
    return xp.broadcast_to(expanded, self.input_shape)


def matmul_backward(self, grad):
    """dL/dA = G B^T, dL/dB = A^T G (eq. 2.6), vectors and folded batches via _as_matrices."""
    a, b, g = _as_matrices(self.a, self.b, grad)  # (..., M, K), (..., K, N), (..., M, N)
    grad_a = g @ b.swapaxes(-1, -2)  # (..., M, K)
    grad_b = a.swapaxes(-1, -2) @ g  # (..., K, N)
    if self.a.ndim == 1:
        grad_a = grad_a[..., 0, :]  # (..., K)
    elif a.ndim < self.a.ndim:
        grad_a = grad_a.reshape(self.a.shape)  # unfold the rows
    if self.b.ndim == 1:
        grad_b = grad_b[..., 0]  # (..., K)
    return grad_a, grad_b
