"""Primitive differentiable ops, one class each, forward and backward side by side (chapters 01-02).

``backward(grad)`` returns, for each input, ``grad`` times the local derivative (chapter 01,
eq. 1.4), possibly in the broadcast shape. Ops that only move entries are in ``shape_ops.py``.
"""

from __future__ import annotations

import math

from tinyllm.autograd import Function, normalize_axes
from tinyllm.backend import device_of, get_array_module, to_device
from tinyllm.special import erf_array


# --- Arithmetic (chapter 01, table 1.1) -----------------------------------------------------------
class Add(Function):
    """z = a + b;  dL/da = g,  dL/db = g"""

    def forward(self, a, b):
        return a + b

    def backward(self, grad):
        return grad, grad


class Sub(Function):
    """z = a - b;  dL/da = g,  dL/db = -g"""

    def forward(self, a, b):
        return a - b

    def backward(self, grad):
        return grad, -grad


class Mul(Function):
    """z = a * b;  dL/da = g * b,  dL/db = g * a"""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        need_a, need_b = self.needs_input_grad
        return grad * self.b if need_a else None, grad * self.a if need_b else None


class Div(Function):
    """z = a / b;  dL/da = g / b,  dL/db = -g * a / b**2 = -g * z / b"""

    def forward(self, a, b):
        self.b, self.z = b, a / b
        return self.z

    def backward(self, grad):
        grad_a = grad / self.b
        return grad_a, -grad_a * self.z


class Neg(Function):
    """z = -a;  dL/da = -g"""

    def forward(self, a):
        return -a

    def backward(self, grad):
        return -grad


class Pow(Function):
    """z = a ** p for a constant number p;  dL/da = g * p * a**(p - 1), and 0 for p = 0 (z = 1 does
    not depend on a; the formula would give 0 * inf = NaN at a = 0)"""

    def __init__(self, exponent: float):
        self.exponent = exponent

    def forward(self, a):
        self.a = a
        return a ** self.exponent

    def backward(self, grad):
        if self.exponent == 0:
            return get_array_module(grad).zeros_like(grad)
        return grad * self.exponent * self.a ** (self.exponent - 1)


# --- Elementwise functions (chapter 01, table 1.2) ------------------------------------------------
class Exp(Function):
    """y = exp(x);  dL/dx = g * y"""

    def forward(self, x):
        self.y = get_array_module(x).exp(x)
        return self.y

    def backward(self, grad):
        return grad * self.y


class Log(Function):
    """y = log(x);  dL/dx = g / x"""

    def forward(self, x):
        self.x = x
        return get_array_module(x).log(x)

    def backward(self, grad):
        return grad / self.x


class Sqrt(Function):
    """y = sqrt(x);  dL/dx = g / (2 y)"""

    def forward(self, x):
        self.y = get_array_module(x).sqrt(x)
        return self.y

    def backward(self, grad):
        return grad / (2 * self.y)


class Tanh(Function):
    """y = tanh(x);  dL/dx = g * (1 - y**2)   (chapter 01, eq. 1.7)"""

    def forward(self, x):
        self.y = get_array_module(x).tanh(x)
        return self.y

    def backward(self, grad):
        return grad * (1 - self.y * self.y)


class ReLUFunction(Function):
    """y = max(x, 0);  dL/dx = g * [x > 0]  (the derivative at 0 is taken to be 0)"""

    def forward(self, x):
        self.positive = x > 0
        return get_array_module(x).where(self.positive, x, 0)

    def backward(self, grad):
        return grad * self.positive


class Sigmoid(Function):
    """y = 1 / (1 + exp(-x));  dL/dx = g * y * (1 - y)   (chapter 01, eq. 1.8; with e = exp(-|x|),
    y = 1/(1+e) for x >= 0 and e/(1+e) for x < 0, so nothing overflows)"""

    def forward(self, x):
        xp = get_array_module(x)
        e = xp.exp(-xp.abs(x))
        self.y = xp.where(x >= 0, 1, e) / (1 + e)
        return self.y

    def backward(self, grad):
        return grad * self.y * (1 - self.y)


class Erf(Function):
    """y = erf(x) = 2/sqrt(pi) * integral_0^x exp(-s**2) ds;  dL/dx = g * 2/sqrt(pi) * exp(-x**2)
    (the forward is :func:`erf_array`, as NumPy has no erf; the backward is the exact derivative)"""

    def forward(self, x):
        self.gauss = get_array_module(x).exp(-x * x)
        return erf_array(x, self.gauss)

    def backward(self, grad):
        return grad * (2 / math.sqrt(math.pi)) * self.gauss


class Maximum(Function):
    """z = max(a, b) elementwise;  dL/da = g * ([a > b] + [a == b] / 2), dL/db = g - dL/da: the
    gradient goes to the larger input and is split half-half on a tie (as torch.maximum)"""

    def forward(self, a, b):
        self.a, self.b = a, b
        return get_array_module(a).maximum(a, b)

    def backward(self, grad):
        share_a = ((self.a > self.b) + 0.5 * (self.a == self.b)).astype(grad.dtype)
        return grad * share_a, grad * (1 - share_a)


class Where(Function):
    """z = a where c else b;  dL/da = g * [c],  dL/db = g * [not c]   (c: a constant boolean array
    of the op, not an input, so it gets no gradient)"""

    def __init__(self, condition):
        self.condition = condition

    def forward(self, a, b):
        return get_array_module(a).where(self.condition, a, b)

    def backward(self, grad):
        xp = get_array_module(grad)
        return xp.where(self.condition, grad, 0), xp.where(self.condition, 0, grad)


# --- Matrix product (chapter 02, eqs. 2.6 and 2.7) ------------------------------------------------
class MatMul(Function):
    """Z = A @ B (batch axes broadcast);  dL/dA = G B^T,  dL/dB = A^T G   (eq. 2.6)

    A vector is a row (1, K) on the left and a column (K, 1) on the right, as in NumPy. A batch
    of A's against one matrix B (a Linear layer) is folded into rows: one GEMM (eq. 2.7).
    """

    def forward(self, a, b):
        self.a, self.b = a, b
        if a.ndim > 2 and b.ndim == 2:  # fold the batch into rows: (rows, K) @ (K, N)
            rows = a.reshape(-1, a.shape[-1]) @ b  # (rows, N)
            return rows.reshape(*a.shape[:-1], b.shape[-1])  # (..., M, N)
        return a @ b

    def backward(self, grad):
        a, b, g = _as_matrices(self.a, self.b, grad)  # (..., M, K), (..., K, N), (..., M, N)
        need_a, need_b = self.needs_input_grad  # skip a product nobody needs
        grad_a = g @ b.swapaxes(-1, -2) if need_a else None  # dL/dA = G B^T   (eq. 2.6)
        grad_b = a.swapaxes(-1, -2) @ g if need_b else None  # dL/dB = A^T G
        if need_a and self.a.ndim == 1:
            grad_a = grad_a[..., 0, :]  # (..., K): drop the row axis of a vector A
        elif need_a and a.ndim < self.a.ndim:
            grad_a = grad_a.reshape(self.a.shape)  # unfold the rows: (..., M, K)
        if need_b and self.b.ndim == 1:
            grad_b = grad_b[..., 0]  # (..., K): drop the column axis of a vector B
        return grad_a, grad_b


def _as_matrices(a, b, g):
    """A, B, G = dL/dZ as matrices: vectors as a row (1, K) and a column (K, 1); a batch of A's
    against one matrix B folded into rows, so that A^T G sums over the batch by itself (eq. 2.7)."""
    if b.ndim == 1:
        b, g = b[:, None], g[..., None]  # (K, 1), (..., M, 1)
    if a.ndim == 1:
        a, g = a[None, :], g[..., None, :]  # (1, K), (..., 1, N)
    if a.ndim > 2 and b.ndim == 2:
        a, g = a.reshape(-1, a.shape[-1]), g.reshape(-1, g.shape[-1])  # (rows, K), (rows, N)
    return a, b, g


# --- Reductions (chapter 02, eq. 2.4) -------------------------------------------------------------
class Reduction(Function):
    """A reduction over ``axis`` (None: all axes); its backward puts the reduced axes back."""

    def __init__(self, axis=None, keepdims: bool = False):
        self.axis, self.keepdims = axis, keepdims

    def expand(self, grad):
        """``grad`` with the reduced axes back as length 1, so it broadcasts against the input."""
        return grad if self.keepdims else get_array_module(grad).expand_dims(grad, self.axes)


class Sum(Reduction):
    """y = sum of x over ``axis``;  dL/dx = g copied along the summed axes (eq. 2.4)"""

    def forward(self, x):
        self.input_shape, self.axes = x.shape, normalize_axes(self.axis, x.ndim, "sum")
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, grad):
        return get_array_module(grad).broadcast_to(self.expand(grad), self.input_shape)


class Max(Reduction):
    """y = max of x over ``axis``;  dL/dx = g at the arg-max, else 0; k tied maxima get g/k each"""

    def forward(self, x):
        self.axes = normalize_axes(self.axis, x.ndim, "max")
        y = x.max(axis=self.axes, keepdims=True)
        is_max = (x == y).astype(x.dtype)
        self.share = is_max / is_max.sum(axis=self.axes, keepdims=True)
        return y if self.keepdims else y.squeeze(self.axes)

    def backward(self, grad):
        return self.expand(grad) * self.share


# --- Device and dtype (chapter 02) ----------------------------------------------------------------
class Cast(Function):
    """y = x (the same values) on ``device`` and/or in ``dtype``;  dL/dx = g cast back to x's"""

    def __init__(self, device: str | None = None, dtype=None):
        self.device, self.dtype = device, dtype

    def forward(self, x):
        self.source = device_of(x), x.dtype
        y = x if self.device is None else to_device(x, self.device)
        return y if self.dtype is None else y.astype(self.dtype)

    def backward(self, grad):
        device, dtype = self.source
        return to_device(grad, device).astype(dtype, copy=False)
