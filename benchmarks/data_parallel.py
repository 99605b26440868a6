"""Data parallelism at two cores: tinyllm on 2 MPI ranks against PyTorch on 2 threads (chapter 17).

    .venv/bin/python benchmarks/data_parallel.py --torch-python /tmp/venv_torch/bin/python

times the training step of the GPT preset (shakespeare-char: 4 layers, width C = 128, context
T = 64, a global batch of B = 12 sequences, the trainer's AdamW, clipping and schedule) for

    tinyllm 1x1   one process, one BLAS thread
    tinyllm 1x2   one process, two BLAS threads
    tinyllm 2x1   ``mpiexec -n 2``, one thread per rank, each rank B / 2 = 6 sequences
                  (``tinyllm.train.train_step`` with ``tinyllm.distributed``: one Allreduce a step)
    torch 1, 2    the PyTorch twin (``tinyllm.bench.torch_twin``) with 1 and 2 threads

Each configuration runs in a fresh process (``--worker``) that times ``--steps`` steps after
``--warmup``; the configurations are run in turn, ``--rounds`` times (interleaved, so a busy spell
of the machine hits all of them), and the table gives the median over all timed steps with the
spread of the per-round medians, then the ratio tinyllm 2x1 / torch 2 paired round by round.
tinyllm processes opt into glibc's keep-freed-memory setting, as ``tinyllm train`` does
(``tinyllm.runtime.keep_freed_memory``). The last line is the result as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CONFIGS = {  # name -> (framework, processes, threads per process)
    "tinyllm 1x1": ("tinyllm", 1, 1),
    "tinyllm 1x2": ("tinyllm", 1, 2),
    "tinyllm 2x1": ("tinyllm", 2, 1),
    "torch 1": ("torch", 1, 1),
    "torch 2": ("torch", 1, 2),
}
BATCH_SIZE = 12  # the global batch B of the preset's recipe


def worker(framework: str, threads: int, steps: int, warmup: int) -> None:
    """Time ``steps`` steps in this process (one rank of an MPI run, if launched so); rank 0
    prints {"seconds": [...], "losses": [...]} as JSON."""
    from tinyllm import distributed
    from tinyllm.bench.training import random_task
    from tinyllm.models import GPT_PRESETS
    from tinyllm.runtime import keep_freed_memory, limit_blas_threads
    from tinyllm.train import TrainConfig, build_model, build_optimizer, build_scheduler, train_step

    limit_blas_threads(threads)
    ranks = distributed.world()
    config = GPT_PRESETS["shakespeare-char"]
    recipe = dataclasses.replace(TrainConfig(), batch_size=BATCH_SIZE // ranks.size)
    model = build_model("gpt", config, 0)
    optimizer = build_optimizer(recipe, model)
    scheduler = build_scheduler(recipe, optimizer)
    task = random_task(config, recipe.batch_size, 0)
    data_rng = np.random.default_rng(0)
    if framework == "torch":
        from tinyllm.bench.torch_twin import TorchStep

        step = TorchStep(config, model.state_dict(), random_task(config, BATCH_SIZE, 0), recipe,
                         scheduler.schedule, 0, threads).step
    else:
        keep_freed_memory()

        def step() -> float:
            return train_step(model, task, data_rng, optimizer, scheduler, recipe.grad_clip,
                              recipe.grad_accum, ranks)

    seconds, losses = [], []
    for index in range(warmup + steps):
        ranks.barrier()  # the ranks start each step together
        start = time.perf_counter()
        losses.append(step())  # returns after the Allreduce: every rank's share is done
        if index >= warmup:
            seconds.append(time.perf_counter() - start)
    if ranks.is_root:
        print(json.dumps({"seconds": seconds, "losses": losses}))


def run_config(name: str, args) -> list[float]:
    framework, processes, threads = CONFIGS[name]
    python = args.torch_python if framework == "torch" else sys.executable
    command = [python, __file__, "--worker", framework, "--threads", str(threads),
               "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if processes > 1:
        mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or "mpiexec"
        command = [mpiexec, "-n", str(processes), *command]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per run (default 3)")
    parser.add_argument("--torch-python", help="a Python with torch (default: skip PyTorch)")
    parser.add_argument("--worker", choices=("tinyllm", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.threads, args.steps, args.warmup)
    names = [n for n in CONFIGS if args.torch_python or CONFIGS[n][0] == "tinyllm"]
    samples: dict[str, list[float]] = {name: [] for name in names}
    round_medians: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        for name in names:
            seconds = run_config(name, args)
            samples[name] += seconds
            round_medians[name].append(statistics.median(seconds))
        print(f"round {round_index + 1}/{args.rounds}: " + ", ".join(
            f"{n} {1e3 * round_medians[n][-1]:.1f} ms" for n in names), flush=True)
    tokens = BATCH_SIZE * 64
    print(f"\nGPT shakespeare-char training step, B = {BATCH_SIZE}, T = 64 ({tokens} tokens), "
          f"{args.rounds} rounds x {args.steps} steps; spread = min..max of the round medians")
    print(f"{'configuration':<14}{'ms/step':>9}{'spread (ms)':>16}{'tokens/s':>10}")
    result = {}
    for name in names:
        median = statistics.median(samples[name])
        low, high = min(round_medians[name]), max(round_medians[name])
        print(f"{name:<14}{1e3 * median:>9.1f}{f'{1e3 * low:.1f}..{1e3 * high:.1f}':>16}"
              f"{tokens / median:>10,.0f}")
        result[name] = {"ms": round(1e3 * median, 2), "spread_ms": [round(1e3 * low, 2),
                                                                  round(1e3 * high, 2)]}
    if "torch 2" in names:
        ratios = [a / b for a, b in zip(round_medians["tinyllm 2x1"], round_medians["torch 2"])]
        one = [a / b for a, b in zip(round_medians["tinyllm 1x1"], round_medians["torch 1"])]
        print(f"\ntinyllm 2 ranks x 1 thread / PyTorch 2 threads, paired by round: median "
              f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}..{max(ratios):.3f}); "
              f"< 1 means tinyllm is faster")
        print(f"tinyllm 1x1 / PyTorch 1 thread: median {statistics.median(one):.3f} "
              f"(range {min(one):.3f}..{max(one):.3f})")
        result["ratio_2x1_over_torch2"] = [round(r, 3) for r in ratios]
        result["ratio_1x1_over_torch1"] = [round(r, 3) for r in one]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
