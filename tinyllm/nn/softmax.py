"""Softmax and log-softmax, fused and composed (chapter 03, "Softmax and cross-entropy").

Softmax turns a vector of scores z (logits) into probabilities (eq. 3.1):

    softmax(z)_i = exp(z_i) / sum_j exp(z_j)

It does not change when a constant is added to every z_i (eq. 3.2), so we subtract the maximum first
and no exponential can overflow (eq. 3.3, the log-sum-exp trick). The fused ops below compute the
forward pass in a few whole-array passes and use the gradients derived in the chapter:

    softmax:      dL/dz = y * (g - sum(g * y))          (eq. 3.5)
    log_softmax:  dL/dz = g - softmax(z) * sum(g)       (eq. 3.7)

``softmax_composed`` and ``log_softmax_composed`` build the same functions from primitive Tensor
ops: they are the chapter's starting point, and the tests and benchmarks compare the fused ops with
them.
"""

from __future__ import annotations

import numpy as np

from tinyllm.backend import get_array_module
from tinyllm.tensor import Function, Tensor, apply


def _check_floating(x: Tensor, name: str) -> None:
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            f"{name} expects floating-point scores, got dtype {x.dtype}; convert them first, "
            "e.g. x.astype(np.float32)"
        )


class Softmax(Function):
    """y = exp(x - max x) / sum(exp(x - max x)) along ``axis``   (eqs. 3.1, 3.3)

    dL/dx = y * (g - sum(g * y, axis)), the vector-Jacobian product of J = diag(y) - y y^T
    (eqs. 3.4, 3.5)
    """

    def __init__(self, axis: int = -1):
        self.axis = axis

    def forward(self, x):
        xp = get_array_module(x)
        y = x - x.max(axis=self.axis, keepdims=True)  # a new array we own: shifted scores, all <= 0
        xp.exp(y, out=y)  # in place: no second array of x's size
        y *= 1 / y.sum(axis=self.axis, keepdims=True)
        self.y = y
        return y

    def backward(self, grad):
        xp = get_array_module(grad)
        y = self.y
        grad_x = grad * y  # a new array, reused below so that the backward allocates only this one
        grad_dot_y = grad_x.sum(axis=self.axis, keepdims=True)  # <g, y> for every slice
        xp.subtract(grad, grad_dot_y, out=grad_x)  # g - <g, y>
        grad_x *= y
        return grad_x


class LogSoftmax(Function):
    """y = x - max x - log(sum(exp(x - max x))) along ``axis``   (eq. 3.6)

    dL/dx = g - softmax(x) * sum(g, axis)   (eq. 3.7); softmax(x) = exp(y) is recomputed from y.
    """

    def __init__(self, axis: int = -1):
        self.axis = axis

    def forward(self, x):
        xp = get_array_module(x)
        y = x - x.max(axis=self.axis, keepdims=True)  # a new array we own
        y -= xp.log(xp.exp(y).sum(axis=self.axis, keepdims=True))  # sum in [1, n]: no overflow
        self.y = y
        return y

    def backward(self, grad):
        xp = get_array_module(grad)
        grad_x = xp.exp(self.y)  # softmax(x), a new array we own
        grad_x *= -grad.sum(axis=self.axis, keepdims=True)  # - softmax(x) sum(g)
        grad_x += grad
        return grad_x


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Probabilities along ``axis`` (they sum to 1 there); fused, overflow-free (eqs. 3.1-3.5)."""
    _check_floating(x, "softmax")
    return apply(Softmax(axis), x)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Log-probabilities along ``axis``, fused and stable for any finite input (eqs. 3.6, 3.7).

    Example: ``F.log_softmax(tl.tensor([1e4, 0.0]))`` is exactly ``[0, -1e4]``.
    """
    _check_floating(x, "log_softmax")
    return apply(LogSoftmax(axis), x)


def softmax_composed(x: Tensor, axis: int = -1) -> Tensor:
    """Softmax from primitive ops: exp(x - c) / sum(exp(x - c)), c = max x held constant (eq. 3.2).

    The chapter's starting point; used to test and benchmark the fused :func:`softmax`. The shift c
    gets no gradient: adding a constant to every score does not change the output, so its gradient
    is zero anyway.
    """
    shift = x.max(axis=axis, keepdims=True).detach()
    e = (x - shift).exp()
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax_composed(x: Tensor, axis: int = -1) -> Tensor:
    """Log-softmax from primitive ops: (x - c) - log(sum(exp(x - c))), c = max x constant (eq. 3.6).

    The chapter's starting point; used to test and benchmark the fused :func:`log_softmax`.
    """
    shifted = x - x.max(axis=axis, keepdims=True).detach()
    return shifted - shifted.exp().sum(axis=axis, keepdims=True).log()
