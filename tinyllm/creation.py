"""Making tensors: from data, filled, random, ranges (chapter 02, section "Dtypes").

``tl.tensor`` turns Python data or an array into a Tensor; ``zeros``, ``ones``, ``randn`` and ``arange``
make new ones. Random values come from one NumPy generator (``default_rng()``), which ``manual_seed``
replaces, so one seed fixes every initialisation that does not pass its own ``rng``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tinyllm.backend import to_device, xp_for
from tinyllm.tensor import DEFAULT_DTYPE, Tensor


def tensor(data, dtype=None, requires_grad: bool = False, device: str = "cpu") -> Tensor:
    """Make a tensor from a number, a (nested) list, or an array.

    Python floats become float32 (the default dtype); Python ints stay integers (token ids); a NumPy or CuPy
    array keeps its dtype unless ``dtype`` is given.
    """
    if isinstance(data, Tensor):
        data = data.data
    xp = xp_for(device)
    if dtype is None and not hasattr(data, "dtype"):
        probe = np.asarray(data)
        dtype = DEFAULT_DTYPE if np.issubdtype(probe.dtype, np.floating) else None
    array = to_device(data, device) if hasattr(data, "dtype") else data
    return Tensor(xp.asarray(array, dtype=dtype), requires_grad=requires_grad)


_default_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator that ``randn`` uses when no ``rng`` is passed."""
    global _default_rng
    _default_rng = np.random.default_rng(seed)


def default_rng() -> np.random.Generator:
    """The generator used for random initialisation when no ``rng`` is passed (seed it with manual_seed)."""
    return _default_rng


def zeros(*shape, dtype=DEFAULT_DTYPE, requires_grad: bool = False, device: str = "cpu") -> Tensor:
    shape = _shape_arg(shape)
    return Tensor(xp_for(device).zeros(shape, dtype=dtype), requires_grad=requires_grad)


def ones(*shape, dtype=DEFAULT_DTYPE, requires_grad: bool = False, device: str = "cpu") -> Tensor:
    shape = _shape_arg(shape)
    return Tensor(xp_for(device).ones(shape, dtype=dtype), requires_grad=requires_grad)


def randn(*shape, dtype=DEFAULT_DTYPE, requires_grad: bool = False, device: str = "cpu",
          rng: np.random.Generator | None = None) -> Tensor:
    """Standard-normal entries, drawn on the host from ``rng`` (or the seeded default) for reproducibility."""
    shape = _shape_arg(shape)
    values = (rng or _default_rng).standard_normal(shape).astype(dtype)
    return tensor(values, requires_grad=requires_grad, device=device)


def arange(start, stop=None, step=1, dtype=None, device: str = "cpu") -> Tensor:
    """Evenly spaced values like ``np.arange``; integers stay int64, floats are float32 by default."""
    if dtype is None and any(isinstance(v, float) for v in (start, stop, step)):
        dtype = DEFAULT_DTYPE
    return Tensor(xp_for(device).arange(start, stop, step, dtype=dtype))


def _shape_arg(shape: Sequence) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)
