"""The machine's float32 matmul peak, the yardstick of the benchmark's "of peak" column.

One (size, size) @ (size, size) product costs 2 size^3 FLOPs; the peak is the best rate of
``repeats`` timed products after one warm-up, with the device's array module (NumPy's BLAS on the
cpu, CuPy's cuBLAS on "cuda") and, when installed, PyTorch's.

A GPU runs a product asynchronously: the call returns when the kernel is queued, not done. So on a
GPU each timed product ends with a synchronisation (one element copied to the host for CuPy,
``torch.cuda.synchronize()`` for PyTorch), and the clock measures the work.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np


def best_gflops(product: Callable[[], object], size: int, repeats: int) -> float:
    """GFLOP/s of the fastest of ``repeats`` calls of ``product`` (one size^3 matmul), warmed up."""
    product()  # warm-up: thread pool, caches (on a GPU: CUDA context, cuBLAS handles, kernels)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def matmul_gflops(xp=np, size: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of a float32 (size, size) @ (size, size) product with the array module ``xp``
    (numpy, or cupy: then one element of the product is copied to the host, which waits for it)."""
    rng = np.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((size, size), dtype=np.float32))  # (size, size)
    b = xp.asarray(rng.standard_normal((size, size), dtype=np.float32))  # (size, size)
    out = xp.empty((size, size), dtype=np.float32)

    def product() -> None:
        xp.matmul(a, b, out=out)
        if xp is not np:
            float(out[0, 0])  # the synchronising transfer: the product is done when it arrives

    return best_gflops(product, size, repeats)


def torch_matmul_gflops(size: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    """The same product with PyTorch's BLAS, or cuBLAS on ``device="cuda"`` (synchronised); imports
    torch: call it only when it is installed."""
    import torch

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device)  # (size, size)
    b = torch.randn(size, size, generator=generator).to(device)  # (size, size)
    out = torch.empty(size, size, device=device)

    def product() -> None:
        torch.mm(a, b, out=out)
        if device == "cuda":
            torch.cuda.synchronize()  # the kernel is done, not only queued

    return best_gflops(product, size, repeats)
