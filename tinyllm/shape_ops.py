"""Ops that move entries without changing them (chapter 02, section "Views and gathers").

Each backward puts every gradient entry back where its value came from: a gather *scatter-adds*, so
that an entry read twice gets both gradients (eq. 2.8); concatenate cuts it back into pieces.
"""

from __future__ import annotations

import numpy as np

from tinyllm.autograd import Function, normalize_axes
from tinyllm.backend import get_array_module, scatter_add


class Reshape(Function):
    """y = x with shape ``shape`` (same entries, row-major order);  dL/dx = g reshaped back"""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape

    def forward(self, x):
        self.input_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, grad):
        return grad.reshape(self.input_shape)


class Transpose(Function):
    """y = x with axes permuted by ``axes`` (reversed when None);  dL/dx = g permuted back"""

    def __init__(self, axes: tuple[int, ...] | None):
        self.axes = axes

    def forward(self, x):
        axes = tuple(range(x.ndim))[::-1] if self.axes is None else self.axes
        what = f"transpose axes {axes} are not a permutation of the {x.ndim} axes of x"
        if len(axes) != x.ndim:  # checked first, as NumPy does
            raise ValueError(f"{what}: axes don't match array; give all {x.ndim} axes, or none")
        self.axes = normalize_axes(axes, x.ndim, what, in_order=True)  # AxisError or ValueError
        return x.transpose(self.axes)

    def backward(self, grad):
        return grad.transpose(np.argsort(self.axes))


class GetItem(Function):
    """y = x[index];  dL/dx = zeros with g added at the indexed places, twice where an entry was
    read twice (a gather of a repeated token): a scatter-add (eq. 2.8)"""

    def __init__(self, index):
        self.index = index  # ints, slices, None, ..., arrays (Tensor.__getitem__ unwraps tensors)

    def forward(self, x):
        self.input_shape = x.shape
        return x[self.index]

    def backward(self, grad):
        grad_x = get_array_module(grad).zeros(self.input_shape, dtype=grad.dtype)
        scatter_add(grad_x, self.index, grad)  # grad_x[index] += grad, repeated entries included
        return grad_x


class Concatenate(Function):
    """y = [x_1, x_2, ...] joined along ``axis``;  dL/dx_i = the slice of g that x_i filled"""

    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, *xs):
        self.axis = normalize_axes((self.axis,), xs[0].ndim, "concatenate")[0]  # one int
        self.sizes = [x.shape[self.axis] for x in xs]
        return get_array_module(*xs).concatenate(xs, axis=self.axis)

    def backward(self, grad):
        ends = np.cumsum(self.sizes)[:-1]  # where each x_i's slice of g ends
        return tuple(get_array_module(grad).split(grad, ends, axis=self.axis))
