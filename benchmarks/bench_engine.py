"""How much does the autograd engine cost on top of raw NumPy? (chapters 01 and 02)

    python benchmarks/bench_engine.py               # BLAS threads as the library chooses python
    benchmarks/bench_engine.py --threads 1   # one BLAS thread: the figures quoted in the issues

Two measurements:

(a) Python overhead per op on tiny (4, 4) float32 arrays, where the arithmetic costs nothing and
only the
    bookkeeping is left: microseconds per forward, and per forward + backward, for tinyllm and for
    the same computation written by hand in NumPy (the forward, and the backward products of chapter
    01, table 1.1).

(b) One training step of a chain of three (C, C) float32 matrix products, C = 512:

        y = ((x @ W1) @ W2) @ W3,    loss = sum(y * G)

    with W1, W2, W3 the parameters and x, G constants (data and an output weighting). The raw-NumPy
    version writes out the backward pass of eq. 2.6 by hand (dW = A^T G_out, dA = G_out W^T),
    computing only what the parameters need. The figure is the ratio tinyllm / raw NumPy of the
    medians of interleaved repeats (tinyllm, raw, tinyllm, raw, ...), so that drifting machine load
    hits both alike. Target: <= 1.10. A second line makes x a variable too, so both sides compute
    dL/dx: it isolates the engine's own overhead from any extra products it computes.

Threads: ``--threads N`` limits the BLAS threads with ``tinyllm.runtime.limit_blas_threads``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--threads", type=int, default=None, help="BLAS/OpenMP threads (default: unchanged)"
    )
    parser.add_argument("--size", type=int, default=512, help="C, the side of the matrices in (b)")
    parser.add_argument("--repeats", type=int, default=21, help="interleaved repeats in (b)")
    parser.add_argument("--tiny-calls", type=int, default=2000, help="calls per timing in (a)")
    parser.add_argument(
        "--release-memory",
        action="store_true",
        help="let glibc return freed memory to the OS (default: keep it, as training does)",
    )
    return parser.parse_args(argv)


def per_call_us(fn: Callable[[], object], calls: int, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean time of one call, in microseconds."""
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(times)


# --------------------------------------------------------------------------------------------------
# (a) Python overhead per op
# --------------------------------------------------------------------------------------------------


def tiny_op_table(calls: int) -> list[tuple[str, float, float, float, float]]:
    """Rows (op, raw forward, tinyllm forward, raw forward+backward, tinyllm forward+backward) in
    µs."""
    import numpy as np

    import tinyllm as tl

    rng = np.random.default_rng(0)
    a_np = rng.standard_normal((4, 4)).astype(np.float32)
    b_np = rng.standard_normal((4, 4)).astype(np.float32)
    g_np = np.ones((4, 4), dtype=np.float32)
    a = tl.tensor(a_np, requires_grad=True)
    b = tl.tensor(b_np, requires_grad=True)

    def raw_getitem_backward():
        y = a_np[1:3]
        grad_a = np.zeros_like(a_np)
        grad_a[1:3] = g_np[1:3]
        return y, grad_a

    ops = {  # name: (tinyllm forward, raw forward, raw forward + hand-written backward)
        "add": (lambda: a + b, lambda: a_np + b_np, lambda: (a_np + b_np, g_np, g_np)),
        "mul": (
            lambda: a * b,
            lambda: a_np * b_np,
            lambda: (a_np * b_np, g_np * b_np, g_np * a_np),
        ),
        "matmul": (
            lambda: a @ b,
            lambda: a_np @ b_np,
            lambda: (a_np @ b_np, g_np @ b_np.T, a_np.T @ g_np),
        ),
        "exp": (lambda: a.exp(), lambda: np.exp(a_np), lambda: np.exp(a_np) * g_np),
        "sum": (
            lambda: a.sum(),
            lambda: a_np.sum(),
            lambda: (a_np.sum(), np.broadcast_to(np.float32(1), a_np.shape)),
        ),
        "getitem": (lambda: a[1:3], lambda: a_np[1:3], raw_getitem_backward),
    }
    rows = []
    for name, (forward, raw_forward, raw_both) in ops.items():
        out_grad = np.ones(forward().shape, dtype=np.float32)

        def both(forward=forward, out_grad=out_grad):
            a.grad = b.grad = None
            forward().backward(out_grad)

        rows.append(
            (
                name,
                per_call_us(raw_forward, calls),
                per_call_us(forward, calls),
                per_call_us(raw_both, calls),
                per_call_us(both, calls),
            )
        )
    return rows


# --------------------------------------------------------------------------------------------------
# (b) Three chained matrix products, forward and backward
# --------------------------------------------------------------------------------------------------


def minor_page_faults() -> int:
    """Page faults so far in this process (memory the OS had to hand over, zeroed); 0 where
    unknown."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(step: Callable[[], object]) -> tuple[float, int]:
    """(seconds, minor page faults) for one call of ``step``."""
    faults, start = minor_page_faults(), time.perf_counter()
    step()
    return time.perf_counter() - start, minor_page_faults() - faults


def matmul_chain(size: int, repeats: int, x_requires_grad: bool) -> dict[str, float]:
    """Medians per step over interleaved repeats: seconds and page faults, for tinyllm and raw
    NumPy."""
    import numpy as np

    import tinyllm as tl

    rng = np.random.default_rng(0)
    scale = np.float32(1 / np.sqrt(size))
    x_np = rng.standard_normal((size, size)).astype(np.float32)
    w_np = [(rng.standard_normal((size, size)) * scale).astype(np.float32) for _ in range(3)]
    g_np = rng.standard_normal((size, size)).astype(np.float32)

    x = tl.tensor(x_np, requires_grad=x_requires_grad)
    w1, w2, w3 = (tl.tensor(w, requires_grad=True) for w in w_np)
    g = tl.tensor(g_np)

    def step_tinyllm():
        for t in (x, w1, w2, w3):
            t.grad = None
        y = ((x @ w1) @ w2) @ w3  # (C, C)
        loss = (y * g).sum()
        loss.backward()
        return loss

    def step_numpy():
        w1_np, w2_np, w3_np = w_np
        h1 = x_np @ w1_np  # (C, C)
        h2 = h1 @ w2_np
        y = h2 @ w3_np
        loss = (y * g_np).sum()
        grad_y = g_np  # d loss / d y = G
        grad_w3 = h2.T @ grad_y  # dW = A^T G_out      (eq. 2.6)
        grad_h2 = grad_y @ w3_np.T  # dA = G_out W^T
        grad_w2 = h1.T @ grad_h2
        grad_h1 = grad_h2 @ w2_np.T
        grad_w1 = x_np.T @ grad_h1
        grad_x = grad_h1 @ w1_np.T if x_requires_grad else None
        return loss, grad_w1, grad_w2, grad_w3, grad_x

    # the two agree (float32 sums of 512 terms: a loose relative tolerance)
    step_tinyllm()
    reference = step_numpy()
    for ours, theirs in zip((w1.grad, w2.grad, w3.grad), reference[1:4]):
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-3, atol=1e-3)

    for _ in range(2):  # warm up caches and the BLAS thread pool
        step_tinyllm()
        step_numpy()
    samples_tinyllm, samples_numpy = [], []
    for _ in range(repeats):
        samples_tinyllm.append(timed(step_tinyllm))
        samples_numpy.append(timed(step_numpy))
    return {
        "tinyllm": statistics.median(s for s, _ in samples_tinyllm),
        "numpy": statistics.median(s for s, _ in samples_numpy),
        "tinyllm_faults": statistics.median(f for _, f in samples_tinyllm),
        "numpy_faults": statistics.median(f for _, f in samples_numpy),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import numpy as np

    import tinyllm as tl
    from tinyllm.runtime import blas_threads, keep_freed_memory, limit_blas_threads

    if args.threads is not None:
        limit_blas_threads(args.threads)

    # the allocator setting `tinyllm train` uses; it applies to both sides of every comparison below
    kept = keep_freed_memory() if not args.release_memory else False
    print(f"tinyllm {tl.__version__}, NumPy {np.__version__}, Python {sys.version.split()[0]}")
    print(f"freed memory kept for reuse (glibc mallopt, as in training): {'yes' if kept else 'no'}")
    print(f"BLAS threads: {blas_threads()}")

    print("\n(a) per-op cost on (4, 4) float32, microseconds per call (median of 5 timings)")
    print(
        f"{'op':<9}{'numpy fwd':>11}{'tinyllm fwd':>13}{'overhead':>10}   "
        f"{'numpy f+b':>11}{'tinyllm f+b':>13}{'overhead':>10}"
    )
    for name, raw_fwd, tl_fwd, raw_both, tl_both in tiny_op_table(args.tiny_calls):
        print(
            f"{name:<9}{raw_fwd:>11.2f}{tl_fwd:>13.2f}{tl_fwd - raw_fwd:>10.2f}   "
            f"{raw_both:>11.2f}{tl_both:>13.2f}{tl_both - raw_both:>10.2f}"
        )

    size = args.size
    print(
        f"\n(b) y = ((x @ W1) @ W2) @ W3, loss = sum(y * G), C = {size}, float32: "
        f"forward + backward, median of {args.repeats} interleaved repeats"
    )
    for x_requires_grad, label in [
        (False, "x constant (dW only)"),
        (True, "x variable (dW and dx)"),
    ]:
        result = matmul_chain(size, args.repeats, x_requires_grad)
        ratio = result["tinyllm"] / result["numpy"]
        verdict = "ok" if ratio <= 1.10 else "above the 1.10 target"
        print(
            f"  {label:<24} tinyllm {result['tinyllm'] * 1e3:7.2f} ms   "
            f"raw NumPy {result['numpy'] * 1e3:7.2f} ms   ratio {ratio:5.3f}  ({verdict})"
        )
        print(
            f"  {'':<24} page faults per step: tinyllm {result['tinyllm_faults']:.0f}, "
            f"raw NumPy {result['numpy_faults']:.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
