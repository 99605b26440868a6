"""What every op shares: grad mode, the Function contract, unbroadcast, axes (chapters 01-02).

Only raw arrays here: ``ops.py`` and ``shape_ops.py`` subclass :class:`Function`, and ``tensor.py``
builds Tensor, ``apply`` and the backward walk on top.
"""

from __future__ import annotations

import contextlib
import operator
from typing import Iterator

from numpy.exceptions import AxisError

_grad_enabled = True


def is_grad_enabled() -> bool:
    """False inside ``with no_grad():``."""
    return _grad_enabled


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Record no graph (for evaluation and parameter updates); a context manager and a decorator."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


class Function:
    """One differentiable op; once recorded by ``tensor.apply``, one node of the graph.

    A subclass writes ``forward(*arrays) -> array`` and ``backward(grad)``, which returns one
    gradient per input (a tuple for several; ``None`` for an input that gets none), possibly in the
    broadcast shape. Recording sets ``inputs`` and ``needs_input_grad`` (one bool per input, so that
    a backward can skip a gradient nobody needs). An instance is one node: ``apply`` runs it once.
    """

    inputs: tuple = ()  # the input Tensors, set when the node is recorded
    needs_input_grad: tuple[bool, ...] = ()
    applied = False  # set by apply: a second call would overwrite what the first saved
    released = False

    def release(self) -> None:
        """Free what the op holds (saved arrays, inputs) once its backward has run; mark it."""
        vars(self).clear()
        self.released = True


def unbroadcast(grad, shape: tuple[int, ...]):
    """Reduce ``grad`` to ``shape``: sum the axes that broadcasting added or stretched (eq. 2.3)."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)  # leading axes that broadcasting prepended
    stretched = [extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1]
    axes = (*range(extra), *stretched)  # ... and axes of length 1 that it stretched
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


def normalize_axes(axis, ndim: int, what: str, in_order: bool = False) -> tuple[int, ...]:
    """``axis`` (None, an int, a tuple) as axes in 0..ndim-1 for the op ``what``, checked as NumPy:
    TypeError, AxisError, ValueError if repeated (``in_order``: the first error wins: transpose)."""
    axes = range(ndim) if axis is None else axis if isinstance(axis, tuple) else (axis,)
    if any(isinstance(a, bool) for a in axes):  # operator.index(True) would be 1
        raise TypeError(f"{what}: an axis must be an integer, got {axis!r}")
    axes = [operator.index(a) for a in axes]  # a TypeError for 1.5 or [0], as in NumPy
    for i, a in enumerate(axes):
        if not -ndim <= a < ndim:
            raise AxisError(f"{what}: axis {a} is out of bounds for array of dimension {ndim}; "
                            f"an axis must be in range({-ndim}, {ndim})")
        if in_order and a % ndim in [b % ndim for b in axes[:i]]:
            break  # a repeat before any bad axis: the ValueError below
    axes = tuple(a % ndim for a in axes)
    if len(set(axes)) < len(axes):
        raise ValueError(f"{what}: repeated axis in {axis}; name each axis once")
    return axes
