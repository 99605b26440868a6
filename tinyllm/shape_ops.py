"""Ops that move entries around without changing them (chapter 02, section "Views and gathers").

Their backward passes put each gradient entry back where its value came from: reshape and transpose undo
themselves, slicing writes into zeros, a gather (integer-array indexing) *scatter-adds* so that an entry read
twice receives both gradients, and concatenate/stack cut the gradient back into pieces.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tinyllm.backend import get_array_module, scatter_add
from tinyllm.tensor import Function, Tensor


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
    """y = x with axes permuted by ``axes`` (reversed when None);  dL/dx = g permuted by the inverse"""

    def __init__(self, axes: tuple[int, ...] | None):
        self.axes = axes

    def forward(self, x):
        self.axes = tuple(range(x.ndim))[::-1] if self.axes is None else self.axes
        in_range = all(-x.ndim <= a < x.ndim for a in self.axes)
        if not in_range or sorted(a % x.ndim for a in self.axes) != list(range(x.ndim)):
            raise ValueError(f"transpose axes {self.axes} are not a permutation of the {x.ndim} axes of x")
        return x.transpose(self.axes)

    def backward(self, grad):
        return grad.transpose(np.argsort([a % grad.ndim for a in self.axes]))


def _is_gather(index) -> bool:
    """True when ``index`` holds an integer or boolean array (advanced indexing), not only ints/slices."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(hasattr(part, "ndim") or isinstance(part, list) for part in parts)


def _reads_each_entry_once(index, shape: tuple[int, ...]) -> bool:
    """True when an advanced index provably names no entry twice (then plain assignment may replace the
    much slower scatter-add): a boolean mask, or integer arrays whose combined positions are all distinct."""
    parts = index if isinstance(index, tuple) else (index,)
    if len(parts) == 1 and getattr(parts[0], "dtype", None) is not None and parts[0].dtype.kind == "b":
        return True
    if not all(hasattr(part, "ndim") and part.dtype.kind in "iu" for part in parts):
        return False  # slices mixed with arrays: do not try to reason about it
    xp = get_array_module(*parts)
    parts = xp.broadcast_arrays(*parts)
    sizes = shape[:len(parts)]
    flat = xp.ravel_multi_index(tuple(p.ravel() % n for p, n in zip(parts, sizes)), sizes)  # (N,)
    return xp.unique(flat).size == flat.size


class GetItem(Function):
    """y = x[index];  dL/dx = zeros with g added at the indexed places

    For slices each place is read once, so the gradient is written in. For an integer-array gather the same
    entry may be read several times (an embedding lookup of a repeated token), so contributions are
    *accumulated* with an unbuffered scatter-add (``np.add.at``); when the index names every entry at most
    once (checked by sorting its positions) plain assignment gives the same result several times faster.
    """

    def __init__(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        parts = tuple(part.data if isinstance(part, Tensor) else part for part in parts)
        self.index = parts if isinstance(index, tuple) else parts[0]

    def forward(self, x):
        self.input_shape = x.shape
        return x[self.index]

    def backward(self, grad):
        xp = get_array_module(grad)
        grad_x = xp.zeros(self.input_shape, dtype=grad.dtype)
        if _is_gather(self.index) and not _reads_each_entry_once(self.index, self.input_shape):
            scatter_add(grad_x, self.index, grad)
        else:
            grad_x[self.index] = grad
        return grad_x


class Concatenate(Function):
    """y = [x_1, x_2, ...] joined along ``axis``;  dL/dx_i = the slice of g that x_i filled"""

    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, *xs):
        self.sizes = [x.shape[self.axis] for x in xs]
        return get_array_module(*xs).concatenate(xs, axis=self.axis)

    def backward(self, grad):
        ends = np.cumsum(self.sizes)[:-1]
        return tuple(get_array_module(grad).split(grad, ends, axis=self.axis))


class Stack(Function):
    """y = x_1, x_2, ... stacked along a new axis ``axis``;  dL/dx_i = g taken at position i of that axis"""

    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, *xs):
        return get_array_module(*xs).stack(xs, axis=self.axis)

    def backward(self, grad):
        return tuple(get_array_module(grad).moveaxis(grad, self.axis, 0))


# --------------------------------------------------------------------------------------------------------
# Functional forms: tl.concatenate, tl.stack, tl.split
# --------------------------------------------------------------------------------------------------------


def concatenate(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis (like ``np.concatenate``)."""
    return Concatenate(axis).apply(*tensors)


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along a new axis (like ``np.stack``)."""
    return Stack(axis).apply(*tensors)


def split(x: Tensor, indices_or_sections, axis: int = 0) -> list[Tensor]:
    """Cut ``x`` into pieces along ``axis`` (like ``np.split``): a number of equal sections, or cut points.

    Each piece is a slice of x (a :class:`GetItem`), so its backward writes into its own part of dL/dx and
    the engine sums the pieces' contributions: together they fill the whole gradient.
    """
    length = x.shape[axis]
    if isinstance(indices_or_sections, int):
        if length % indices_or_sections:
            raise ValueError(
                f"split: axis {axis} of length {length} does not divide into {indices_or_sections} "
                "equal sections"
            )
        step = length // indices_or_sections
        cuts = list(range(step, length, step))
    else:
        cuts = list(indices_or_sections)
    bounds = [0, *cuts, length]
    axis = axis % x.ndim
    pieces = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        index = (slice(None),) * axis + (slice(start, stop),)
        pieces.append(x[index])
    return pieces
