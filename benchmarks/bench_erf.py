"""erf on the CPU: float32 training path (A&S 7.1.26) against Cody's float64 method (chapter 08).

tinyllm computes erf with W. J. Cody's rational approximations (1969) in float64 and with
Abramowitz & Stegun 7.1.26 in float32 (``tinyllm/special.py``). This script shows why float32
keeps the cheaper method, and what the accurate one costs:

1. the exact GELU, forward + backward, in float32 on a (B, T, F) = (32, 256, 1536) block (BERT-
   base's feed-forward width at T = 256): as shipped, and with Phi from Cody's erfc instead;
2. ``erf`` alone on the same block in float32 and in float64, each method;
3. the largest error of each against ``math.erf`` on 20,001 points of [-6, 6].

Variants run in alternation (interleaved repeats) and the medians are compared, so a change of
load on the machine hits every variant alike.

    python benchmarks/bench_erf.py                  # 11 repeats
    python benchmarks/bench_erf.py --repeats 21 --shape 8 256 1536
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Callable

import numpy as np

import tinyllm as tl
import tinyllm.nn.functional as F
from tinyllm.nn.activations import GELUFunction
from tinyllm.runtime import keep_freed_memory
from tinyllm.special import erf_abramowitz_stegun, erf_cody, erfc_cody
from tinyllm.tensor import apply


class GELUCody(GELUFunction):
    """The fused GELU with Phi(x) = erfc(-x / sqrt 2) / 2 from Cody's method, in the input's
    dtype (only for this comparison: tinyllm uses it in float64)."""

    def forward(self, x):
        cdf = erfc_cody(x * -math.sqrt(0.5))
        cdf *= 0.5
        self.x, self.cdf = x, cdf
        return x * cdf


def gelu_step(gelu: Callable, h: np.ndarray, grad: np.ndarray) -> Callable[[], None]:
    """One forward + backward of ``gelu`` on a fresh leaf holding ``h``."""

    def step() -> None:
        gelu(tl.tensor(h, requires_grad=True)).backward(grad)

    return step


def time_interleaved(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median wall-clock milliseconds per call of every step, one call each per repeat."""
    for step in steps.values():  # warm-up: first-touch page faults, caches
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def max_error(erf: Callable, dtype) -> float:
    """Largest |erf(x) - math.erf(x)| over 20,001 points of [-6, 6] in ``dtype``."""
    grid = np.linspace(-6, 6, 20_001).astype(dtype)
    reference = np.array([math.erf(float(v)) for v in grid])
    return float(np.abs(erf(grid).astype(np.float64) - reference).max())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=11, help="timed calls per variant")
    parser.add_argument("--shape", type=int, nargs=3, default=[32, 256, 1536],
                        metavar=("B", "T", "F"), help="the block GELU and erf run on")
    args = parser.parse_args()
    kept = keep_freed_memory()  # no fresh page faults for every temporary
    rng = np.random.default_rng(0)
    h = rng.standard_normal(tuple(args.shape)).astype(np.float32)
    grad = rng.standard_normal(tuple(args.shape)).astype(np.float32)
    print(f"numpy {np.__version__}, (B, T, F) = {tuple(args.shape)}, "
          f"{args.repeats} interleaved repeats, median wall ms, freed memory kept: {kept}")

    gelu = time_interleaved({
        "shipped (A&S 7.1.26)": gelu_step(F.gelu, h, grad),
        "with Cody's erfc": gelu_step(lambda x: apply(GELUCody(), x), h, grad),
    }, args.repeats)
    print("\nexact GELU, forward + backward, float32")
    for name, ms in gelu.items():
        print(f"  {name:<28} {ms:9.2f} ms")
    ratio = gelu["with Cody's erfc"] / gelu["shipped (A&S 7.1.26)"]
    print(f"  Cody / A&S = {ratio:.2f}")

    h64 = h.astype(np.float64)
    erf = time_interleaved({
        "float32 A&S 7.1.26": lambda: erf_abramowitz_stegun(h),
        "float32 Cody": lambda: erf_cody(h),
        "float64 A&S 7.1.26": lambda: erf_abramowitz_stegun(h64),
        "float64 Cody": lambda: erf_cody(h64),
    }, args.repeats)
    print("\nerf alone                      time   max |error| on [-6, 6]")
    for name, ms in erf.items():
        method = erf_cody if "Cody" in name else erf_abramowitz_stegun
        dtype = np.float32 if name.startswith("float32") else np.float64
        print(f"  {name:<20} {ms:9.2f} ms   {max_error(method, dtype):.1e}")


if __name__ == "__main__":
    main()
