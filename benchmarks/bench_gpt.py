"""Training-step and generation speed of a whole GPT, against PyTorch when it is installed (chapter 11).

    python benchmarks/bench_gpt.py                     # both models, 20 timed steps each
    python benchmarks/bench_gpt.py --threads 1         # one BLAS thread (and one PyTorch thread)
    python benchmarks/bench_gpt.py --quick --profile   # the small model, and where its step spends time

The work is done by ``tinyllm.bench.run_benchmarks`` (also ``tinyllm bench``); see its module docstring for
what a step is and how the FLOPs are counted. This script adds the thread limit, which has to be set before
NumPy is imported: with ``threadpoolctl`` installed it is applied at run time; without it the script sets
OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS first and imports NumPy (and tinyllm) afterwards,
inside ``main``. OMP_NUM_THREADS also limits PyTorch's OpenMP pool.
"""

from __future__ import annotations

import argparse
import os
import sys

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int,
                        help="BLAS (and PyTorch) threads (default: the libraries' choice)")
    parser.add_argument("--steps", type=int, default=20,
                        help="timed steps per model and framework (default 20)")
    parser.add_argument("--quick", action="store_true", help="only the small model (shakespeare-char)")
    parser.add_argument("--profile", action="store_true",
                        help="also print where a tinyllm step spends its time (phases, op classes, cProfile)")
    parser.add_argument("--no-torch", action="store_true", help="do not time PyTorch even if it is installed")
    parser.add_argument("--no-generation", action="store_true", help="skip the KV-cache generation benchmark")
    parser.add_argument("--tiny", action="store_true", help="toy model sizes (a smoke test of the script)")
    return parser.parse_args(argv)


def limit_threads(threads: int | None):
    """Limit the BLAS/OpenMP threads; returns threadpoolctl's controller, or None. Call before importing
    NumPy."""
    if threads is None:
        return None
    if threads < 1:
        raise SystemExit(f"--threads must be a positive integer, got {threads}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        for name in THREAD_VARIABLES:
            os.environ[name] = str(threads)
        return None
    import numpy  # noqa: F401  (loads the BLAS library, so that threadpoolctl can find and limit it)

    return threadpool_limits(limits=threads)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    controller = limit_threads(args.threads)  # before NumPy is imported (see the module docstring)

    from tinyllm.bench import run_benchmarks

    run_benchmarks(steps=args.steps, quick=args.quick, tiny=args.tiny, profile=args.profile,
                   compare_torch=not args.no_torch, generation=not args.no_generation)
    if controller is not None:
        controller.restore_original_limits()
    return 0


if __name__ == "__main__":
    sys.exit(main())
