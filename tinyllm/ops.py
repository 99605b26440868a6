"""Primitive differentiable ops, one class each, forward and backward side by side (chapters 01 and 02).

Each ``backward(grad)`` receives dL/d(output) and returns dL/d(input) for every input: the local derivative
times the incoming gradient (chapter 01, eq. 1.4). Gradients may come back in the broadcast shape; the engine
(``Tensor.backward``) reduces them to each input's shape in one place, so no op here thinks about
broadcasting. Shape-changing ops (reshape, transpose, indexing, concatenate, stack) are in ``shape_ops.py``.
"""

from __future__ import annotations

import math

from tinyllm.backend import get_array_module, to_device
from tinyllm.tensor import Function, Tensor, as_tensor

# --------------------------------------------------------------------------------------------------------
# Arithmetic (chapter 01, table 1.1)
# --------------------------------------------------------------------------------------------------------


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
        self.b = b
        self.z = a / b
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
    """z = a ** p for a constant number p;  dL/da = g * p * a**(p - 1)"""

    def __init__(self, exponent: float):
        self.exponent = exponent

    def forward(self, a):
        self.a = a
        return a ** self.exponent

    def backward(self, grad):
        return grad * self.exponent * self.a ** (self.exponent - 1)


# --------------------------------------------------------------------------------------------------------
# Elementwise functions (chapter 01, table 1.2)
# --------------------------------------------------------------------------------------------------------


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


class ReLU(Function):
    """y = max(x, 0);  dL/dx = g * [x > 0]  (we take the derivative at 0 to be 0)"""

    def forward(self, x):
        self.positive = x > 0
        return get_array_module(x).where(self.positive, x, 0)

    def backward(self, grad):
        return grad * self.positive


class Sigmoid(Function):
    """y = 1 / (1 + exp(-x));  dL/dx = g * y * (1 - y)   (chapter 01, eq. 1.8)

    Computed without overflow: with e = exp(-|x|) <= 1, y = 1/(1+e) for x >= 0 and e/(1+e) for x < 0.
    """

    def forward(self, x):
        xp = get_array_module(x)
        e = xp.exp(-xp.abs(x))
        self.y = xp.where(x >= 0, 1, e) / (1 + e)
        return self.y

    def backward(self, grad):
        return grad * self.y * (1 - self.y)


# Abramowitz & Stegun (1964), formula 7.1.26: |error| <= 1.5e-7 for every real x. The published
# coefficients sum to 1 - 1e-9, which would make erf jump by 2e-9 at x = 0; we rescale them to sum to
# exactly 1 so that erf(0+) = 0 and the approximation is continuous (the error bound is unchanged).
_ERF_P = 0.3275911
_ERF_PUBLISHED = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
_ERF_A = tuple(a / sum(_ERF_PUBLISHED) for a in _ERF_PUBLISHED)


def erf_array(x, gauss=None):
    """erf of an array by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7 for every real x):

    erf(x) = sign(x) * (1 - (a1 t + a2 t^2 + a3 t^3 + a4 t^4 + a5 t^5) exp(-x^2)),  t = 1 / (1 + p |x|).
    ``gauss`` may pass exp(-x^2) when the caller has it already.
    """
    xp = get_array_module(x)
    gauss = xp.exp(-x * x) if gauss is None else gauss
    t = xp.abs(x, out=xp.empty_like(x))  # with out=, even a 0-d input stays an array we can update
    t *= _ERF_P
    t += 1
    xp.reciprocal(t, out=t)  # t = 1 / (1 + p |x|)
    a1, a2, a3, a4, a5 = _ERF_A
    # Horner's rule, in place: poly = t (a1 + t (a2 + t (a3 + t (a4 + t a5))))
    poly = xp.multiply(t, a5, out=xp.empty_like(t))
    for a in (a4, a3, a2, a1):
        poly += a
        poly *= t
    poly *= gauss
    xp.subtract(1, poly, out=poly)
    poly *= xp.sign(x)
    return poly


class Erf(Function):
    """y = erf(x) = 2/sqrt(pi) * integral_0^x exp(-s**2) ds;  dL/dx = g * 2/sqrt(pi) * exp(-x**2)

    NumPy has no erf, so the forward uses :func:`erf_array` (Abramowitz & Stegun 7.1.26); the backward uses
    the exact derivative. Needed by the exact GELU (chapter 08).
    """

    def forward(self, x):
        self.gauss = get_array_module(x).exp(-x * x)
        return erf_array(x, self.gauss)

    def backward(self, grad):
        return grad * (2 / math.sqrt(math.pi)) * self.gauss


class Maximum(Function):
    """z = max(a, b) elementwise;  the gradient goes to the larger input, split half-half on ties."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return get_array_module(a).maximum(a, b)

    def backward(self, grad):
        share_a = ((self.a > self.b) + 0.5 * (self.a == self.b)).astype(grad.dtype)
        return grad * share_a, grad * (1 - share_a)


class Where(Function):
    """z = a where condition else b;  dL/da = g * condition,  dL/db = g * (not condition)

    ``condition`` is a constant boolean array, not an input: it gets no gradient.
    """

    def __init__(self, condition):
        self.condition = condition

    def forward(self, a, b):
        return get_array_module(a).where(self.condition, a, b)

    def backward(self, grad):
        xp = get_array_module(grad)
        return xp.where(self.condition, grad, 0), xp.where(self.condition, 0, grad)


# --------------------------------------------------------------------------------------------------------
# Matrix product (chapter 02, eq. 2.6)
# --------------------------------------------------------------------------------------------------------


class MatMul(Function):
    """Z = A @ B (batched, batch axes broadcast);  dL/dA = G @ B^T,  dL/dB = A^T @ G   (eq. 2.6)

    1-D operands follow NumPy: a vector on the left is a row (1, K), on the right a column (K, 1).
    When B is one matrix shared by a batch of A's (a Linear layer on (B, T, C) inputs), its gradient
    sum_b A_b^T G_b is computed as one big product with the batch folded into the rows.
    """

    def forward(self, a, b):
        self.a, self.b = a, b
        if a.ndim > 2 and b.ndim == 2:  # one GEMM instead of a loop over the batch
            return (a.reshape(-1, a.shape[-1]) @ b).reshape(*a.shape[:-1], b.shape[-1])  # (..., M, N)
        return a @ b

    def backward(self, grad):
        a, b = self.a, self.b
        need_a, need_b = self.needs_input_grad  # skip the product for an input without a gradient
        xp = get_array_module(grad)
        if a.ndim == 1 and b.ndim == 1:  # dot product: z = sum_k a_k b_k
            return grad * b, grad * a
        a2 = a[None, :] if a.ndim == 1 else a  # (..., M, K)
        b2 = b[:, None] if b.ndim == 1 else b  # (..., K, N)
        g2 = xp.expand_dims(grad, -2) if a.ndim == 1 else grad
        g2 = xp.expand_dims(g2, -1) if b.ndim == 1 else g2  # (..., M, N)
        grad_a = grad_b = None
        if need_a and b2.ndim == 2 and g2.ndim > 2:  # one GEMM over all rows, as in the forward
            grad_a = g2.reshape(-1, g2.shape[-1]) @ b2.T  # (rows, K)
            grad_a = grad_a.reshape(*g2.shape[:-1], b2.shape[0])  # (..., M, K)
        elif need_a:
            grad_a = g2 @ xp.swapaxes(b2, -1, -2)  # (..., M, K)
            grad_a = grad_a[..., 0, :] if a.ndim == 1 else grad_a  # (..., K) for a vector a
        if need_b and b2.ndim == 2 and a2.ndim > 2:  # fold the batch into rows: (K, rows) @ (rows, N)
            grad_b = a2.reshape(-1, a2.shape[-1]).T @ g2.reshape(-1, g2.shape[-1])  # (K, N)
        elif need_b:
            grad_b = xp.swapaxes(a2, -1, -2) @ g2  # (..., K, N)
        if need_b and b.ndim == 1:
            grad_b = grad_b[..., 0]  # (..., K)
        return grad_a, grad_b


# --------------------------------------------------------------------------------------------------------
# Reductions (chapter 02, eq. 2.4)
# --------------------------------------------------------------------------------------------------------


def _normalize_axes(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim if ndim else a for a in axes)


def _expand_reduced(grad, input_shape, axes, keepdims: bool):
    """Put the reduced axes back as length-1 axes, so ``grad`` broadcasts against the input."""
    if keepdims:
        return grad
    xp = get_array_module(grad)
    return xp.expand_dims(grad, axes) if axes else grad


class Sum(Function):
    """y = sum of x over ``axis``;  dL/dx = g copied along the summed axes (eq. 2.4)"""

    def __init__(self, axis=None, keepdims: bool = False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.input_shape = x.shape
        self.axes = _normalize_axes(self.axis, x.ndim)
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, grad):
        grad = _expand_reduced(grad, self.input_shape, self.axes, self.keepdims)
        return get_array_module(grad).broadcast_to(grad, self.input_shape)


class Mean(Function):
    """y = mean of x over ``axis`` (n entries);  dL/dx = g / n copied along the reduced axes"""

    def __init__(self, axis=None, keepdims: bool = False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.input_shape = x.shape
        self.axes = _normalize_axes(self.axis, x.ndim)
        self.count = math.prod(x.shape[a] for a in self.axes)
        return x.mean(axis=self.axes, keepdims=self.keepdims)

    def backward(self, grad):
        grad = _expand_reduced(grad, self.input_shape, self.axes, self.keepdims) / self.count
        return get_array_module(grad).broadcast_to(grad, self.input_shape)


class Max(Function):
    """y = max of x over ``axis``;  dL/dx = g at the arg-max, 0 elsewhere (shared equally between ties)"""

    def __init__(self, axis=None, keepdims: bool = False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = _normalize_axes(self.axis, x.ndim)
        y = x.max(axis=self.axes, keepdims=True)
        is_max = (x == y).astype(x.dtype)
        self.share = is_max / is_max.sum(axis=self.axes, keepdims=True)
        return y if self.keepdims else y.squeeze(self.axes)

    def backward(self, grad):
        grad = _expand_reduced(grad, self.share.shape, self.axes, self.keepdims)
        return grad * self.share


# --------------------------------------------------------------------------------------------------------
# Device and dtype moves
# --------------------------------------------------------------------------------------------------------


class ToDevice(Function):
    """y = x on another device;  dL/dx = g moved back"""

    def __init__(self, device: str):
        self.device = device

    def forward(self, x):
        self.source = "cuda" if get_array_module(x).__name__ == "cupy" else "cpu"
        return to_device(x, self.device)

    def backward(self, grad):
        return to_device(grad, self.source)


class AsType(Function):
    """y = x cast to ``dtype``;  dL/dx = g cast back to x's dtype"""

    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.source_dtype = x.dtype
        return x.astype(self.dtype)

    def backward(self, grad):
        return grad.astype(self.source_dtype)


# --------------------------------------------------------------------------------------------------------
# Functional forms: tl.where, tl.maximum, tl.erf
# --------------------------------------------------------------------------------------------------------


def where(condition, x, y) -> Tensor:
    """``x`` where ``condition`` is true, else ``y`` (like ``np.where``); differentiable in x and y."""
    like = x if isinstance(x, Tensor) else y
    if not isinstance(like, Tensor):
        raise TypeError("where() needs x or y to be a Tensor")
    condition = condition.data if isinstance(condition, Tensor) else condition
    return Where(condition).apply(as_tensor(x, like), as_tensor(y, like))


def maximum(a, b) -> Tensor:
    """Elementwise maximum of a and b (like ``np.maximum``)."""
    like = a if isinstance(a, Tensor) else b
    return Maximum().apply(as_tensor(a, like), as_tensor(b, like))


def erf(x: Tensor) -> Tensor:
    """The error function, elementwise (see :class:`Erf`)."""
    return Erf().apply(x)
