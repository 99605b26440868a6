"""The array module and devices (chapter 02, section "One code path for CPU and GPU").

Array code asks its inputs for their module, the CuPy idiom: ``xp = get_array_module(x)``, then
``xp.exp(x)``. Devices are ``"cpu"`` and ``"cuda"``; CuPy is optional and probed only when asked
for, and without a usable GPU ``"cuda"`` raises :class:`DeviceError`, saying why and what to do.
"""

from __future__ import annotations

import functools
import math

import numpy as np

DEVICES = ("cpu", "cuda")


class DeviceError(RuntimeError):
    """A device was asked for that this machine cannot provide, or two devices were mixed."""


@functools.lru_cache(maxsize=1)
def _probe_cupy() -> tuple[object | None, str]:
    """(cupy or None, why it is unusable), probed once, with a tiny computation inside ``try``."""
    try:
        import cupy
    except ImportError:
        return None, 'CuPy is not installed; install the GPU extra: pip install "tinyllm[gpu]"'
    try:
        if not cupy.cuda.is_available():
            return None, "CuPy is installed but sees no CUDA GPU (no device or no driver)"
        smoke = cupy.arange(4, dtype=cupy.float32)
        if float((smoke * smoke).sum()) != 14.0:
            return None, "CuPy is installed but a test computation on the GPU gave a wrong result"
    except Exception as error:  # any CUDA runtime/driver failure means "no usable GPU"
        return None, f"CuPy is installed but the GPU is unusable: {error}"
    return cupy, ""


def cuda_available() -> bool:
    """True when CuPy is installed and a GPU answered a small computation correctly."""
    return _probe_cupy()[0] is not None


def check_device(device: str) -> str:
    """Validate a device name and make sure it is usable; return it."""
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}; expected one of {DEVICES}")
    if device == "cuda" and not cuda_available():
        reason = _probe_cupy()[1]
        raise DeviceError(f"device 'cuda' requested but unavailable: {reason}. Use device='cpu'.")
    return device


def xp_for(device: str):
    """The array module (numpy or cupy) that holds arrays on ``device``."""
    return _probe_cupy()[0] if check_device(device) == "cuda" else np


def device_of(array) -> str:
    """``"cuda"`` for a CuPy array, ``"cpu"`` for everything else (without importing CuPy)."""
    return "cuda" if type(array).__module__.startswith("cupy") else "cpu"


def get_array_module(*arrays):
    """numpy, or cupy if any argument is a CuPy array."""
    return xp_for("cuda") if any(device_of(array) == "cuda" for array in arrays) else np


def to_device(array, device: str):
    """Copy ``array`` to ``device`` (no copy when it is already there)."""
    if device_of(array) == check_device(device):
        return array
    return xp_for("cuda").asarray(array) if device == "cuda" else array.get()


def to_numpy(array) -> np.ndarray:
    """A host (NumPy) array, whichever device ``array`` lives on."""
    return array.get() if device_of(array) == "cuda" else np.asarray(array)


def scatter_add(target, index, values) -> None:
    """``target[index] += values``, where an entry named twice adds twice (unbuffered; eq. 2.8).

    Fast paths: an index that names each entry at most once adds in place; one integer array on
    axis 0 (embedding rows, gathered rows) becomes flat cell numbers ``index * width + column``, as
    ``np.add.at`` on 1-D integer indices is 3-4x faster than on rows (benchmarks/README.md,
    "Scatter-add"). On a GPU every scatter is CuPy's atomic ``cupyx.scatter_add``.
    """
    if get_array_module(target) is not np:  # atomic adds: no uniqueness test, no sync
        import cupyx

        cupyx.scatter_add(target, index, values)
    elif not _may_repeat(index, target.shape):
        target[index] += values
    elif (isinstance(index, tuple) or np.asarray(index).dtype.kind not in "iu"
          or not target.flags.c_contiguous):
        np.add.at(target, index, values)
    else:  # whole rows: flat cell numbers, so that np.add.at sees 1-D integer indices
        index = np.asarray(index).astype(np.intp, copy=False)
        width = math.prod(target.shape[1:])  # cells per row
        cells = index.reshape(-1, 1) * width + np.arange(width)  # (N, width)
        values = np.broadcast_to(values, index.shape + target.shape[1:])
        np.add.at(target.reshape(-1), cells.reshape(-1), values.reshape(-1))


def _may_repeat(index, shape: tuple[int, ...]) -> bool:
    """False when ``index`` provably names each entry at most once: ints and slices, a boolean
    mask, integer arrays whose positions are all distinct. True otherwise (lists, mixed indices)."""
    parts = index if isinstance(index, tuple) else (index,)
    if not any(hasattr(part, "ndim") or isinstance(part, list) for part in parts):
        return False
    if len(parts) == 1 and getattr(parts[0], "dtype", None) == np.bool_:
        return False
    if not all(hasattr(part, "dtype") and part.dtype.kind in "iu" for part in parts):
        return True
    parts = np.broadcast_arrays(*parts)  # host arrays: device ones took the atomic path
    sizes = shape[:len(parts)]
    if parts[0].size > math.prod(sizes):  # more positions than entries: some entry repeats
        return True
    flat = np.ravel_multi_index(tuple(p.ravel() % n for p, n in zip(parts, sizes)), sizes)  # (N,)
    return np.unique(flat).size < flat.size
