"""The benchmark behind ``tinyllm bench`` and ``benchmarks/bench_gpt.py`` (chapter 11).

Threads: ``tinyllm bench --threads N`` limits the BLAS threads
(``tinyllm.runtime.limit_blas_threads``); :func:`run_benchmarks` reports the count in effect and
gives PyTorch the same (``torch.set_num_threads``). When PyTorch is installed, its twin of the model
is timed in the same run, in blocks of steps that alternate with tinyllm's, so a drifting load on
the machine hits both alike.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform

import numpy as np

from tinyllm import __version__
from tinyllm.bench.generation import print_generation
from tinyllm.bench.peak import numpy_matmul_gflops, torch_matmul_gflops
from tinyllm.bench.training import (
    SETTINGS,
    BenchSetting,
    print_training,
    time_training,
)
from tinyllm.runtime import blas_threads, keep_freed_memory


def run_benchmarks(steps: int = 20, quick: bool = False, settings: list[BenchSetting] | None = None,
                   profile: bool = False, compare_torch: bool = True, generation: bool = True,
                   peak_size: int = 2048, peak_repeats: int = 5) -> dict:
    """Time training steps (and generation) of the benchmark models; print tables and one JSON line.

    ``steps``: timed steps per model and framework; ``quick``: only the first (small) model;
    ``settings``: the model shapes (default ``SETTINGS``); ``profile``: also print where a tinyllm
    step spends its time; ``compare_torch``: time PyTorch too when it is installed; ``generation``:
    the KV-cache benchmark; ``peak_size``, ``peak_repeats``: the matmul that measures the peak.
    Returns the printed figures.
    """
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    keep_freed_memory()  # as the trainer does, so the benchmark measures the same process
    settings = (SETTINGS if settings is None else settings)[:1 if quick else None]
    has_torch = compare_torch and importlib.util.find_spec("torch") is not None
    threads = blas_threads()
    torch_threads = (threads or os.cpu_count() or 1) if has_torch else None

    versions = f"tinyllm {__version__}, NumPy {np.__version__}, Python {platform.python_version()}"
    if has_torch:
        import torch

        torch.set_num_threads(torch_threads)
        versions += f", PyTorch {torch.__version__}"
    else:
        versions += (" (PyTorch not installed: tinyllm only)" if compare_torch
                     else " (PyTorch not timed)")
    print(versions)
    print(f"BLAS threads: {threads if threads is not None else 'unknown'}"
          + (f"; PyTorch threads: {torch_threads}" if has_torch else ""))

    def measure_peaks() -> dict[str, float]:
        peaks = {"NumPy": numpy_matmul_gflops(peak_size, peak_repeats)}
        if has_torch:
            peaks["PyTorch"] = torch_matmul_gflops(peak_size, peak_repeats)
        return peaks

    before = measure_peaks()
    results = []
    for setting in settings:
        print(f"timing {setting.name}: {setting.warmup} + {steps} steps per framework ...",
              flush=True)
        results.append(time_training(setting, steps, torch_threads))
    # measured again after the timings, the best of both kept: the peak is what the machine can give
    peaks = {name: max(value, before[name]) for name, value in measure_peaks().items()}
    peak = max(peaks.values())
    print(f"float32 matmul peak ({peak_size}^3 product, "
          f"best of {peak_repeats} before and {peak_repeats} after the steps): "
          + ", ".join(f"{name} {value:.1f} GFLOP/s" for name, value in peaks.items())
          + f"; fractions of peak are of {peak:.1f} GFLOP/s")
    figures = {"threads": threads, "torch_threads": torch_threads,
               "peak_gflops": {name: round(value, 1) for name, value in peaks.items()},
               "training": print_training(results, peak, steps)}
    if generation:
        figures["generation"] = print_generation(settings)
    if profile:
        from tinyllm.bench.profiling import profile_training_step

        figures["profile"] = {setting.name: profile_training_step(setting, min(steps, 10), peak)
                              for setting in settings}
    print("\n" + json.dumps({key: value for key, value in figures.items() if key != "profile"}))
    return figures
