"""The machine's float32 matmul peak, the yardstick of the benchmark's "of peak" column.

One (size, size) @ (size, size) product costs 2 size^3 FLOPs; the peak is the best rate of
``repeats`` timed products after one warm-up, with NumPy's BLAS and, when installed, PyTorch's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np


def best_gflops(product: Callable[[], object], size: int, repeats: int) -> float:
    """GFLOP/s of the fastest of ``repeats`` calls of ``product`` (one size^3 matmul), warmed up."""
    product()  # warm-up: thread pool, caches
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def numpy_matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of a float32 (size, size) @ (size, size) product with NumPy's BLAS."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty((size, size), dtype=np.float32)
    return best_gflops(lambda: np.matmul(a, b, out=out), size, repeats)


def torch_matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """The same product with PyTorch's BLAS (imports torch: call it only when it is installed)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    out = torch.empty(size, size)
    return best_gflops(lambda: torch.mm(a, b, out=out), size, repeats)
