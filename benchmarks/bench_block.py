"""Benchmark for chapter 08: one pre-LN Transformer block, and the fused ops inside it, on the CPU.

Times forward + backward (float32, causal self-attention) of one pre-LN block at a small and a
GPT-sized setting, and the fused LayerNorm and GELU against their composed references at the block's
shapes. Every variant of a setting is timed in turn inside each repeat (interleaved), so slow phases
of a shared machine hit all variants alike; the table reports the median and the best wall-clock
time of the repeats, and the median CPU time of this process (all its threads), which other programs
competing for the cores disturb far less than the wall clock.

    python benchmarks/bench_block.py              # both settings, 15 repeats
    python benchmarks/bench_block.py --quick      # the small setting only, 5 repeats
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np

import tinyllm as tl
import tinyllm.nn.functional as F
from tinyllm import nn

SETTINGS = [  # (B, T, C, H)
    (12, 64, 128, 4),
    (32, 256, 384, 6),
]


def forward_backward(make_output: Callable[[], tl.Tensor], grad: np.ndarray) -> Callable[[], None]:
    """A step that builds the graph and runs backward with the cotangent ``grad``."""

    def step() -> None:
        make_output().backward(grad)

    return step


def time_interleaved(
    steps: dict[str, Callable[[], None]], repeats: int
) -> dict[str, dict[str, list[float]]]:
    """Wall-clock and CPU seconds per call of every step: one call each per repeat, after a
    warm-up."""
    for step in steps.values():
        step()
    times = {name: {"wall": [], "cpu": []} for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            times[name]["cpu"].append(time.process_time() - cpu)
            times[name]["wall"].append(time.perf_counter() - wall)
    return times


def bench_setting(
    B: int, T: int, C: int, H: int, repeats: int
) -> dict[str, dict[str, list[float]]]:
    rng = np.random.default_rng(0)
    block = nn.TransformerBlock(C, H, norm_first=True, rng=rng)  # float32, d_ff = 4C
    x = tl.tensor(rng.standard_normal((B, T, C)).astype(np.float32), requires_grad=True)
    grad_c = rng.standard_normal((B, T, C)).astype(np.float32)
    h = tl.tensor(rng.standard_normal((B, T, 4 * C)).astype(np.float32), requires_grad=True)
    grad_h = rng.standard_normal((B, T, 4 * C)).astype(np.float32)
    weight, bias = block.ln1.weight, block.ln1.bias
    steps = {
        "block fwd+bwd": forward_backward(lambda: block(x, is_causal=True), grad_c),
        "layer_norm fused": forward_backward(lambda: F.layer_norm(x, weight, bias), grad_c),
        "layer_norm composed": forward_backward(
            lambda: F.layer_norm_composed(x, weight, bias), grad_c
        ),
        "gelu fused": forward_backward(lambda: F.gelu(h), grad_h),
        "gelu composed": forward_backward(lambda: F.gelu_composed(h), grad_h),
    }
    return time_interleaved(steps, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repeats", type=int, default=15, help="timed calls per variant (default 15)"
    )
    parser.add_argument("--quick", action="store_true", help="the small setting only, 5 repeats")
    args = parser.parse_args()
    settings = SETTINGS[:1] if args.quick else SETTINGS
    repeats = 5 if args.quick else args.repeats
    print(f"numpy {np.__version__}, float32, forward + backward, {repeats} interleaved repeats")
    for B, T, C, H in settings:
        times = bench_setting(B, T, C, H, repeats)
        print(f"\nB={B}, T={T}, C={C}, H={H}  (LayerNorm on (B, T, C), GELU on (B, T, 4C))")
        print(f"  {'':<22} {'wall median':>12} {'wall best':>10} {'CPU median':>11}")
        for name, t in times.items():
            wall, cpu = 1e3 * statistics.median(t["wall"]), 1e3 * statistics.median(t["cpu"])
            print(f"  {name:<22} {wall:9.2f} ms {1e3 * min(t['wall']):7.2f} ms {cpu:8.2f} ms")
        for op in ("layer_norm", "gelu"):
            fused, composed = times[f"{op} fused"], times[f"{op} composed"]
            ratios = [
                statistics.median(composed[k]) / statistics.median(fused[k])
                for k in ("wall", "cpu")
            ]
            print(f"  {op}: composed / fused = {ratios[0]:.2f} (wall), {ratios[1]:.2f} (CPU)")


if __name__ == "__main__":
    main()
