"""What every op shares: gradient mode, the Function contract, unbroadcast (chapters 01 and 02).

Only raw arrays here: ``ops.py`` and ``shape_ops.py`` subclass :class:`Function`, and ``tensor.py``
builds Tensor, ``apply`` and the backward walk on top.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

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
    a backward can skip a gradient nobody needs).
    """

    inputs: tuple = ()  # the input Tensors, set when the node is recorded
    needs_input_grad: tuple[bool, ...] = ()
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
