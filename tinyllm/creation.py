"""Making tensors (chapter 02): from data, filled, random, ranges, and from other tensors.

``tl.tensor`` copies Python data or an array into a Tensor (``tl.from_numpy`` shares the array's
memory instead); ``zeros``, ``ones``, ``randn`` and ``arange`` make new ones. Random values come
from one NumPy generator (``default_rng()``), which ``manual_seed`` replaces, so one seed fixes
every initialisation that does not pass its own ``rng``; ``spawn_rng`` hands a layer a generator
of its own, seeded from that one. ``where``, ``maximum``, ``erf``, ``concatenate``, ``stack`` and
``split`` are the functional forms of ops (like NumPy's).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from tinyllm import ops, shape_ops
from tinyllm.autograd import normalize_axes
from tinyllm.backend import DeviceError, device_of, to_device, xp_for
from tinyllm.tensor import DEFAULT_DTYPE, Tensor, apply, as_tensor


def tensor(data, dtype=None, requires_grad: bool = False, device: str = "cpu") -> Tensor:
    """Make a tensor from a number, a (nested) list, or an array, always a copy (as ``np.array`` and
    ``torch.tensor``): changing the input later does not change the tensor (``from_numpy`` shares).

    Python floats become float32 (the default dtype); Python ints stay integers (token ids); a NumPy
    or CuPy array keeps its dtype unless ``dtype`` is given.
    """
    if isinstance(data, Tensor):
        data = data.data
    xp = xp_for(device)
    if dtype is None and not hasattr(data, "dtype"):
        probe = np.asarray(data)
        dtype = DEFAULT_DTYPE if np.issubdtype(probe.dtype, np.floating) else None
    array = to_device(data, device) if hasattr(data, "dtype") else data
    return Tensor(xp.array(array, dtype=dtype), requires_grad=requires_grad)  # a copy


def from_numpy(array: np.ndarray, requires_grad: bool = False) -> Tensor:
    """A tensor that shares ``array``'s memory (as ``torch.from_numpy``): writing to one changes
    the other. No copy, no dtype change; ``tl.tensor(array)`` copies instead."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a NumPy array, got {type(array).__name__}; "
                        "use tl.tensor(data) for lists, numbers and CuPy arrays (it copies)")
    return Tensor(array, requires_grad=requires_grad)


_default_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator that ``randn`` uses when no ``rng`` is passed."""
    global _default_rng
    _default_rng = np.random.default_rng(seed)


def default_rng() -> np.random.Generator:
    """The generator for random initialisation when no ``rng`` is passed (seed it: manual_seed)."""
    return _default_rng


def spawn_rng(parent: np.random.Generator | None = None) -> np.random.Generator:
    """A fresh generator seeded from ``parent``, or from the global one when None: after
    ``manual_seed(s)`` the sequence of spawned generators is the same on every run."""
    seed = (_default_rng if parent is None else parent).integers(2**63)  # one draw from the parent
    return np.random.default_rng(seed)


def zeros(*shape, dtype=DEFAULT_DTYPE, requires_grad: bool = False, device: str = "cpu") -> Tensor:
    shape = _shape_arg(shape)
    return Tensor(xp_for(device).zeros(shape, dtype=dtype), requires_grad=requires_grad)


def ones(*shape, dtype=DEFAULT_DTYPE, requires_grad: bool = False, device: str = "cpu") -> Tensor:
    shape = _shape_arg(shape)
    return Tensor(xp_for(device).ones(shape, dtype=dtype), requires_grad=requires_grad)


def randn(*shape, dtype=DEFAULT_DTYPE, requires_grad: bool = False, device: str = "cpu",
          rng: np.random.Generator | None = None) -> Tensor:
    """Standard-normal entries, drawn on the host from ``rng`` (or the seeded default generator)."""
    shape = _shape_arg(shape)
    values = (rng or _default_rng).standard_normal(shape).astype(dtype)
    return tensor(values, requires_grad=requires_grad, device=device)


def uniform(shape: tuple[int, ...], rng: np.random.Generator, xp=np):
    """Uniform numbers in [0, 1) of ``shape``, made by the array module ``xp`` (dropout masks).

    On the host: ``rng.random(shape)``. On a GPU they are drawn on the device, with no transfer:
    one 64-bit key k from ``rng`` (so a seed, or a saved generator state, fixes them), then for
    entry i the SplitMix64 output of the counter k + (i + 1) * 0x9E3779B97F4A7C15 (Steele, Lea and
    Flood 2014), whose top 53 bits over 2^53 are the number. A counter-based generator holds no
    state on the device: what is checkpointed is ``rng``'s state, as on the CPU.
    """
    if xp is np:
        return rng.random(shape)
    key = int(rng.integers(2**63))  # one draw from the host generator
    z = xp.arange(1, math.prod(shape) + 1, dtype=xp.uint64) * 0x9E3779B97F4A7C15 + key  # wraps
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    z ^= z >> 31
    return ((z >> 11).astype(xp.float64) * 2.0**-53).reshape(shape)  # 53 bits -> [0, 1)


def arange(start, stop=None, step=1, dtype=None, device: str = "cpu") -> Tensor:
    """Evenly spaced values like ``np.arange``; integers stay int64, floats become float32."""
    if dtype is None and any(isinstance(v, float) for v in (start, stop, step)):
        dtype = DEFAULT_DTYPE
    return Tensor(xp_for(device).arange(start, stop, step, dtype=dtype))


def _shape_arg(shape: Sequence) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


# --- functional forms of ops: tl.where, tl.maximum, tl.erf, tl.concatenate, tl.stack, tl.split ---
def where(condition, x, y) -> Tensor:
    """``x`` where ``condition`` holds, else ``y`` (like ``np.where``); differentiable in both."""
    like = x if isinstance(x, Tensor) else y
    if not isinstance(like, Tensor):
        raise TypeError("where() needs x or y to be a Tensor")
    condition = condition.data if isinstance(condition, Tensor) else condition
    condition = condition if hasattr(condition, "dtype") else np.asarray(condition)
    if device_of(condition) != like.device and like.device == "cpu":
        raise DeviceError("where() got a condition on 'cuda' and x, y on 'cpu'; move the "
                          "condition with .get() or the tensors with .to('cuda')")
    condition = to_device(condition, like.device)  # a host mask goes up once, for forward and back
    return apply(ops.Where(condition), as_tensor(x, like), as_tensor(y, like))


def maximum(a, b) -> Tensor:
    """Elementwise maximum of a and b (like ``np.maximum``). Where a == b the gradient is split
    half-half between them (:class:`ops.Maximum`, as ``torch.maximum``)."""
    like = a if isinstance(a, Tensor) else b
    return apply(ops.Maximum(), as_tensor(a, like), as_tensor(b, like))


def erf(x: Tensor) -> Tensor:
    """The error function, elementwise (:class:`ops.Erf`)."""
    return apply(ops.Erf(), x)


def concatenate(tensors: Sequence[Tensor], axis: int | None = 0) -> Tensor:
    """Join tensors along an existing axis (like ``np.concatenate``; ``axis=None`` flattens them
    first)."""
    if len(tensors) == 0:
        raise ValueError("concatenate needs at least one tensor to join, got an empty sequence")
    if axis is None:
        tensors, axis = [t.reshape(-1) for t in tensors], 0
    return apply(shape_ops.Concatenate(axis), *tensors)


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along a new axis (like ``np.stack``, and computed as it does: each tensor gets a
    new axis of length 1 there, then they are concatenated along it)."""
    if len(tensors) == 0:
        raise ValueError("stack needs at least one tensor to join, got an empty sequence")
    axis = normalize_axes((axis,), tensors[0].ndim + 1, "stack")[0]  # an axis of the result
    return concatenate([t.reshape(*t.shape[:axis], 1, *t.shape[axis:]) for t in tensors], axis)


def split(x: Tensor, indices_or_sections, axis: int = 0) -> list[Tensor]:
    """Cut ``x`` along ``axis`` into equal sections or at cut points (like ``np.split``). Each piece
    is a slice of x, so the engine sums the pieces' gradients: together they fill dL/dx."""
    axis = normalize_axes((axis,), x.ndim, "split")[0]
    length = x.shape[axis]
    if isinstance(indices_or_sections, int):
        if indices_or_sections <= 0:
            raise ValueError(f"split: the number of sections must be positive, got "
                             f"{indices_or_sections}")
        if length % indices_or_sections:
            raise ValueError(f"split: axis {axis} of length {length} does not divide into "
                             f"{indices_or_sections} equal sections")
        step = length // indices_or_sections
        cuts = list(range(step, length, step))
    else:
        cuts = list(indices_or_sections)
    bounds = [0, *cuts, length]
    before = (slice(None),) * axis
    return [x[before + (slice(start, stop),)] for start, stop in zip(bounds[:-1], bounds[1:])]
