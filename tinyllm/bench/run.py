"""The benchmark behind ``tinyllm bench`` and ``benchmarks/bench_gpt.py`` (chapter 11).

Threads: ``tinyllm bench --threads N`` limits the BLAS threads
(``tinyllm.runtime.limit_blas_threads``); :func:`run_benchmarks` reports the count in effect and
gives PyTorch the same (``torch.set_num_threads``). When PyTorch is installed, its twin of the model
is timed in the same run, in blocks of steps that alternate with tinyllm's, so a drifting load on
the machine hits both alike.

Device: ``device="cuda"`` (``tinyllm bench --device cuda``) puts the models and batches on the GPU
(CuPy), measures the peak with CuPy's matmul, and times PyTorch's twin on ``torch.device("cuda")``
when ``torch.cuda.is_available()`` (else tinyllm alone, said in the header). A GPU works
asynchronously; every timed call here ends with a device->host transfer that waits for it (a
step's loss, a generated token, one element of the peak's product), so wall-clock times are
honest.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform

import numpy as np

from tinyllm import __version__
from tinyllm.backend import check_device, xp_for
from tinyllm.bench.generation import print_generation
from tinyllm.bench.peak import matmul_gflops, torch_matmul_gflops
from tinyllm.bench.training import (
    SETTINGS,
    BenchSetting,
    print_training,
    time_training,
)
from tinyllm.runtime import blas_threads, keep_freed_memory


def run_benchmarks(steps: int = 20, quick: bool = False, settings: list[BenchSetting] | None = None,
                   profile: bool = False, compare_torch: bool = True, generation: bool = True,
                   peak_size: int = 2048, peak_repeats: int = 5, device: str = "cpu") -> dict:
    """Time training steps (and generation) of the benchmark models; print tables and one JSON line.

    ``steps``: timed steps per model and framework; ``quick``: only the first (small) model;
    ``settings``: the model shapes (default ``SETTINGS``); ``profile``: also print where a tinyllm
    step spends its time; ``compare_torch``: time PyTorch too when it is installed; ``generation``:
    the KV-cache benchmark; ``peak_size``, ``peak_repeats``: the matmul that measures the peak;
    ``device``: "cpu" or "cuda". Returns the printed figures.
    """
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    xp = xp_for(check_device(device))  # no GPU: DeviceError, with the reason and the fix
    if profile and device == "cuda":
        raise ValueError("profile=True times op classes without waiting for the GPU, so on "
                         "'cuda' it would time kernel launches: profile with device='cpu'")
    keep_freed_memory()  # as the trainer does, so the benchmark measures the same process
    settings = (SETTINGS if settings is None else settings)[:1 if quick else None]
    torch_device, torch_note = torch_device_for(device, compare_torch)
    threads = blas_threads()
    torch_threads = (threads or os.cpu_count() or 1) if torch_device is not None else None
    if torch_device is not None:
        import torch

        torch.set_num_threads(torch_threads)
    print(f"tinyllm {__version__}, NumPy {np.__version__}, Python {platform.python_version()}"
          + torch_note)
    print("device: cpu" if xp is np else
          f"device: cuda ({xp.__name__} {getattr(xp, '__version__', '(no version)')}; every "
          "timed step, token and product ends with a device->host copy that waits for the GPU)")
    print(f"BLAS threads: {threads if threads is not None else 'unknown'}"
          + (f"; PyTorch threads: {torch_threads}" if torch_device is not None else ""))

    def measure_peaks() -> dict[str, float]:
        peaks = {"NumPy" if xp is np else "CuPy": matmul_gflops(xp, peak_size, peak_repeats)}
        if torch_device is not None:
            peaks["PyTorch" if torch_device == "cpu" else "PyTorch CUDA"] = torch_matmul_gflops(
                peak_size, peak_repeats, torch_device)
        return peaks

    before = measure_peaks()
    results = []
    for setting in settings:
        print(f"timing {setting.name}: {setting.warmup} + {steps} steps per framework ...",
              flush=True)
        results.append(time_training(setting, steps, torch_threads, device, torch_device))
    # measured again after the timings, the best of both kept: the peak is what the machine can give
    peaks = {name: max(value, before[name]) for name, value in measure_peaks().items()}
    peak = max(peaks.values())
    print(f"float32 matmul peak ({peak_size}^3 product, "
          f"best of {peak_repeats} before and {peak_repeats} after the steps): "
          + ", ".join(f"{name} {value:.1f} GFLOP/s" for name, value in peaks.items())
          + f"; fractions of peak are of {peak:.1f} GFLOP/s")
    figures = {"device": device, "threads": threads, "torch_threads": torch_threads,
               "peak_gflops": {name: round(value, 1) for name, value in peaks.items()},
               "training": print_training(results, peak, steps)}
    if generation:
        figures["generation"] = print_generation(settings, device)
    if profile:
        from tinyllm.bench.profiling import profile_training_step

        figures["profile"] = {setting.name: profile_training_step(setting, min(steps, 10), peak)
                              for setting in settings}
    print("\n" + json.dumps({key: value for key, value in figures.items() if key != "profile"}))
    return figures


def torch_device_for(device: str, compare_torch: bool) -> tuple[str | None, str]:
    """(the device PyTorch's twin runs on, None when it is not timed; the header's words on it)."""
    if not compare_torch:
        return None, " (PyTorch not timed)"
    if importlib.util.find_spec("torch") is None:
        return None, " (PyTorch not installed: tinyllm only)"
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        return None, f", PyTorch {torch.__version__} (PyTorch CUDA not available: tinyllm only)"
    return device, f", PyTorch {torch.__version__}"
