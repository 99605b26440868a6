"""Fused vs composed scaled dot-product attention: forward + backward time (chapter 06).

    python benchmarks/bench_attention.py [--repeats 9] [--device cpu]

For each (B, H, T, D), in float32 and causal, one step is a forward pass and a backward pass with a
random output gradient, through ``F.scaled_dot_product_attention`` (one fused op, eqs. 6.10-6.14)
and through ``F.scaled_dot_product_attention_composed`` (a dozen primitive ops). Each repeat runs
both, alternating which goes first, so slow drifts of a shared machine hit both alike. The script
prints the medians of wall-clock time and of process CPU time (less disturbed by other jobs on a
busy machine; with several BLAS threads it adds up their time) and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import tinyllm as tl
import tinyllm.nn.functional as F

SHAPES = [(12, 4, 64, 32), (32, 6, 256, 64)]  # (B, H, T, D): a small GPT batch, and a larger one


def _synchronize(device: str) -> None:
    if device == "cuda":
        import cupy

        cupy.cuda.Device().synchronize()


def step_seconds(attention, arrays, grad, device: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one forward + backward of ``attention`` on fresh leaves holding
    ``arrays``."""
    q, k, v = (tl.tensor(a, requires_grad=True, device=device) for a in arrays)
    _synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    out = attention(q, k, v, is_causal=True)  # (B, H, T, D)
    out.backward(grad)
    _synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def benchmark(
    shape: tuple[int, int, int, int], repeats: int, device: str
) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of forward + backward at ``shape`` = (B, H, T, D), per
    implementation."""
    rng = np.random.default_rng(0)
    arrays = [
        rng.standard_normal(shape).astype(np.float32) for _ in range(3)
    ]  # q, k, v (B, H, T, D)
    grad = tl.tensor(rng.standard_normal(shape).astype(np.float32), device=device)
    candidates = {
        "fused": F.scaled_dot_product_attention,
        "composed": F.scaled_dot_product_attention_composed,
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in candidates}
    for name, attention in candidates.items():  # warm-up: allocator, BLAS threads, GPU kernels
        step_seconds(attention, arrays, grad, device)
    for repeat in range(repeats):
        order = list(candidates) if repeat % 2 == 0 else list(candidates)[::-1]
        for name in order:
            times[name].append(step_seconds(candidates[name], arrays, grad, device))
    return {
        name: (statistics.median(t[0] for t in runs), statistics.median(t[1] for t in runs))
        for name, runs in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=9, help="timed repeats per implementation and shape"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    print(
        f"forward + backward, float32, causal, median of {args.repeats} interleaved repeats, "
        f"{args.device}"
    )
    print(
        f"{'(B, H, T, D)':>18}  {'clock':>5}  {'fused ms':>9}  {'composed ms':>11}  "
        f"{'composed / fused':>16}"
    )
    for shape in SHAPES:
        medians = benchmark(shape, args.repeats, args.device)
        for index, clock in enumerate(("wall", "CPU")):
            fused, composed = medians["fused"][index], medians["composed"][index]
            label = str(shape) if index == 0 else ""
            print(
                f"{label:>18}  {clock:>5}  {fused * 1e3:9.2f}  {composed * 1e3:11.2f}  "
                f"{composed / fused:16.2f}"
            )


if __name__ == "__main__":
    main()
