"""Long contexts: fused vs blockwise attention vs PyTorch, time and peak memory (chapter 17).

    PYTHONPATH=. python benchmarks/bench_long_context.py [--lengths 256 1024 2048] [--repeats 5]

One step is causal attention forward + backward with a random output gradient, float32, at
(B, H, T, D) = (--batch, --heads, T, --head-dim), through ``F.scaled_dot_product_attention`` (the
fused op of chapter 06, which keeps the (B, H, T, T) weights), ``F.blockwise_attention`` (the
online softmax of chapter 17, memory O(T)) and, when torch can be imported,
``torch.nn.functional.scaled_dot_product_attention``. All use one thread (BLAS and torch).

- Time: wall-clock and process CPU time, medians of --repeats interleaved repeats (the order
  rotates every repeat, so a change of load hits all alike; CPU time is less disturbed by other
  jobs), after one warm-up each, in this process, with glibc told to keep freed memory
  (``tinyllm.runtime.keep_freed_memory``, as ``tinyllm train`` does).
- Peak memory: each (op, T) runs once in a fresh subprocess, after a warm-up at T = 64: the growth
  of the resident set's high-water mark (VmHWM, reset through /proc/self/clear_refs) over the
  resident set before the step, which counts every allocator (NumPy's and torch's); and, for the
  NumPy ops, tracemalloc's peak (the arrays NumPy allocates, exactly). The inputs, their gradients
  and the cotangent are made before and not counted in the RSS figure; the gradients are counted
  by tracemalloc.
- Check: the three outputs and q's gradients agree (max absolute difference printed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy is imported: one BLAS thread
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import tinyllm as tl  # noqa: E402
import tinyllm.nn.functional as F  # noqa: E402
from tinyllm.bench.memory import measure_peak  # noqa: E402
from tinyllm.runtime import keep_freed_memory  # noqa: E402

OPS = ("fused", "blockwise", "torch")


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    return torch


def make_step(op: str, arrays, grad):
    """A function running one forward + backward of ``op`` on fresh leaves; returns (out, dq)."""
    if op == "torch":
        torch = torch_or_none()

        def step():
            q, k, v = (torch.from_numpy(a).requires_grad_() for a in arrays)
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            out.backward(torch.from_numpy(grad))
            return out.detach().numpy(), q.grad.numpy()

        return step
    attention = F.scaled_dot_product_attention if op == "fused" else F.blockwise_attention
    grad_tensor = tl.tensor(grad)

    def step():
        q, k, v = (tl.tensor(a, requires_grad=True) for a in arrays)
        out = attention(q, k, v, is_causal=True)  # (B, H, T, D)
        out.backward(grad_tensor)
        return out.numpy(), q.grad.numpy()

    return step


def problem(shape: tuple[int, int, int, int], seed: int = 0):
    """q, k, v and the output gradient, float32 arrays of ``shape`` (B, H, T, D)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(3)], \
        rng.standard_normal(shape).astype(np.float32)


def time_ops(ops, shape, repeats: int):
    """Median (wall, CPU) seconds per step of each op, interleaved; each op's max difference from
    the fused op's output and q gradient."""
    arrays, grad = problem(shape)
    steps = {op: make_step(op, arrays, grad) for op in ops}
    results = {op: steps[op]() for op in ops}  # warm-up, and the values to compare
    differences = {op: max(float(np.abs(a - b).max()) for a, b in zip(results[op],
                                                                      results["fused"]))
                   for op in ops}
    times: dict[str, list[tuple[float, float]]] = {op: [] for op in ops}
    for repeat in range(repeats):
        order = ops[repeat % len(ops):] + ops[:repeat % len(ops)]  # rotate who goes first
        for op in order:
            wall, cpu = time.perf_counter(), time.process_time()
            steps[op]()
            times[op].append((time.perf_counter() - wall, time.process_time() - cpu))
    medians = {op: tuple(statistics.median(run[i] for run in t) for i in (0, 1))
               for op, t in times.items()}
    return medians, differences


# --- peak memory, one fresh process per (op, T) ------------------------------------------------
def measure_memory(op: str, shape: tuple[int, int, int, int]) -> dict[str, float | None]:
    """In this (fresh) process: RSS high-water growth and tracemalloc peak of one step, in MiB
    (``tinyllm.bench.memory.measure_peak``)."""
    small = (*shape[:2], 64, shape[3])
    make_step(op, *problem(small))()  # warm-up: lazy initialisation, thread pools
    memory = measure_peak(make_step(op, *problem(shape)))
    return {"rss_mib": memory["rss_mib"],
            "tracemalloc_mib": None if op == "torch" else memory["tracemalloc_mib"]}


def memory_in_subprocess(op: str, shape) -> dict[str, float | None]:
    command = [sys.executable, __file__, "--measure-memory", op, *map(str, shape)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per op and length")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--measure-memory", nargs=5, metavar=("OP", "B", "H", "T", "D"),
                        help=argparse.SUPPRESS)  # the subprocess's own mode
    args = parser.parse_args()
    if args.measure_memory:
        op, *dims = args.measure_memory
        if op == "torch":
            torch_or_none()
        print(json.dumps(measure_memory(op, tuple(int(d) for d in dims))))
        return
    ops = OPS if torch_or_none() is not None else OPS[:2]
    kept = keep_freed_memory()
    print(f"causal attention forward + backward, float32, (B, H, D) = ({args.batch}, "
          f"{args.heads}, {args.head_dim}), 1 thread, median of {args.repeats} interleaved "
          f"repeats; keep_freed_memory: {kept}; ops: {', '.join(ops)}")
    header = (f"{'T':>5}  {'op':>9}  {'wall ms':>9}  {'CPU ms':>9}  {'/ fused':>7}  "
              f"{'peak RSS MiB':>12}  "
              f"{'tracemalloc MiB':>15}  {'max |diff|':>10}")
    print(header)
    rows = []
    for T in args.lengths:
        shape = (args.batch, args.heads, T, args.head_dim)
        medians, differences = time_ops(list(ops), shape, args.repeats)
        for op in ops:
            memory = ({"rss_mib": None, "tracemalloc_mib": None} if args.no_memory
                      else memory_in_subprocess(op, shape))
            (wall, cpu), fused = medians[op], medians["fused"][0]
            rows.append({"T": T, "op": op, "ms": wall * 1e3, "cpu_ms": cpu * 1e3,
                         "ratio_to_fused": wall / fused,
                         "max_difference": differences[op], **memory})
            rss, traced = memory["rss_mib"], memory["tracemalloc_mib"]
            print(f"{T:>5}  {op:>9}  {wall * 1e3:9.1f}  {cpu * 1e3:9.1f}  {wall / fused:7.2f}  "
                  f"{'-' if rss is None else f'{rss:.1f}':>12}  "
                  f"{'-' if traced is None else f'{traced:.1f}':>15}  "
                  f"{differences[op]:10.1e}")
        one_matrix = args.batch * args.heads * T * T * 4 / 2**20
        print(f"{'':>5}  one (B, H, T, T) float32 matrix: {one_matrix:.1f} MiB")
    print(json.dumps({"shape": [args.batch, args.heads, None, args.head_dim], "rows": rows}))


if __name__ == "__main__":
    main()
