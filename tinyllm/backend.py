"""The array module and devices (chapter 02, section "One code path for CPU and GPU").

Every line of array code in tinyllm asks its inputs which array module to use, the CuPy idiom:

    xp = get_array_module(x)      # numpy for a host array, cupy for a GPU array
    y = xp.exp(x)

so the same op runs on the CPU (NumPy) and on an NVIDIA GPU (CuPy). Two devices exist: ``"cpu"`` and
``"cuda"``. CuPy is optional: without it, or without a working GPU, everything runs on NumPy and asking for
``"cuda"`` raises :class:`DeviceError` saying why and how to enable the GPU. Nothing here prints, and the GPU
is only probed when somebody asks for it.
"""

from __future__ import annotations

import functools

import numpy as np

DEVICES = ("cpu", "cuda")


class DeviceError(RuntimeError):
    """A device was asked for that this machine cannot provide, or two devices were mixed."""


@functools.lru_cache(maxsize=1)
def _probe_cupy() -> tuple[object | None, str]:
    """Return (cupy module or None, reason it is unusable). Probed once, on first request.

    CuPy imports fine on a machine with no driver and fails only at the first real array operation, so the
    probe imports it, asks ``cupy.cuda.is_available()``, and runs a tiny computation inside ``try``.
    """
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
    cupy, _ = _probe_cupy()
    return cupy is not None


def check_device(device: str) -> str:
    """Validate a device name and make sure it is usable; return it."""
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}; expected one of {DEVICES}")
    if device == "cuda" and not cuda_available():
        _, reason = _probe_cupy()
        raise DeviceError(f"device 'cuda' requested but unavailable: {reason}. Use device='cpu'.")
    return device


def xp_for(device: str):
    """The array module (numpy or cupy) that holds arrays on ``device``."""
    if check_device(device) == "cuda":
        cupy, _ = _probe_cupy()
        return cupy
    return np


def get_array_module(*arrays):
    """numpy, or cupy if any argument is a CuPy array (without importing CuPy when it is not loaded)."""
    for array in arrays:
        if type(array).__module__.startswith("cupy"):
            import cupy

            return cupy
    return np


def device_of(array) -> str:
    """``"cuda"`` for a CuPy array, ``"cpu"`` for everything else."""
    return "cuda" if type(array).__module__.startswith("cupy") else "cpu"


def to_device(array, device: str):
    """Copy ``array`` to ``device`` (no copy when it is already there)."""
    if device_of(array) == check_device(device):
        return array
    if device == "cuda":
        return xp_for("cuda").asarray(array)
    return array.get()  # cupy -> numpy


def to_numpy(array) -> np.ndarray:
    """A host (NumPy) array, whichever device ``array`` lives on."""
    return array.get() if device_of(array) == "cuda" else np.asarray(array)


def scatter_add(target, index, values) -> None:
    """``target[index] += values`` where repeated indices *add up* (unbuffered, like ``np.add.at``)."""
    xp = get_array_module(target)
    if xp is np:
        np.add.at(target, index, values)
    else:
        import cupyx

        cupyx.scatter_add(target, index, values)
