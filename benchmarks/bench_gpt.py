"""Training-step and generation speed of a whole GPT, against PyTorch when installed (chapter 11).

    python benchmarks/bench_gpt.py                    # both models, 20 timed steps each
    python benchmarks/bench_gpt.py --threads 1        # one BLAS thread (and one PyTorch thread)
    python benchmarks/bench_gpt.py --quick --profile  # the small model, and where its time goes

The work is done by ``tinyllm.bench.run_benchmarks`` (also ``tinyllm bench``);
``benchmarks/README.md`` says what a step is and how the FLOPs are counted. ``--threads N`` limits
NumPy's BLAS threads with ``tinyllm.runtime.limit_blas_threads``; PyTorch gets the same number.
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int,
                        help="BLAS (and PyTorch) threads (default: the libraries' choice)")
    parser.add_argument("--steps", type=int, default=20,
                        help="timed steps per model and framework (default 20)")
    parser.add_argument("--quick", action="store_true",
                        help="only the small model (shakespeare-char)")
    parser.add_argument("--profile", action="store_true",
                        help="also print where a tinyllm step spends its time "
                             "(phases, op classes, cProfile)")
    parser.add_argument("--no-torch", action="store_true",
                        help="do not time PyTorch even if it is installed")
    parser.add_argument("--no-generation", action="store_true",
                        help="skip the KV-cache generation benchmark")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tinyllm.bench import run_benchmarks
    from tinyllm.runtime import limit_blas_threads

    if args.threads is not None:
        limit_blas_threads(args.threads)

    run_benchmarks(steps=args.steps, quick=args.quick, profile=args.profile,
                   compare_torch=not args.no_torch, generation=not args.no_generation)
    return 0


if __name__ == "__main__":
    sys.exit(main())
