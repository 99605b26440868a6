"""Distillation: a small student GPT from a trained teacher vs the same student from scratch.

    python benchmarks/compress_distill.py [--checkpoint RUN] [--iters 300] [--eval-iters 100]

The teacher is the run's GPT (default: runs/shakespeare-char). The student (L = 2, H = 2, C = 64
by default) trains ``--iters`` steps of the default recipe twice from the same initialisation and
batches: with the distillation loss (1 - a) CE + a T^2 KL (``tinyllm.compress.DistillationTask``,
T = 2, a = 0.5) and with plain cross-entropy. Printed: validation loss (plain cross-entropy) and
median ms per step of each, and the teacher's validation loss.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from compress_common import load_run, val_loss

from tinyllm.compress import DistillationTask
from tinyllm.models import GPT
from tinyllm.train import build_optimizer, build_scheduler, train_step


def train_student(student_shape, config, task, seed: int) -> tuple[GPT, float]:
    model = GPT(student_shape, rng=np.random.default_rng(seed))
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer)
    data_rng = np.random.default_rng(config.seed)
    times = []
    for _ in range(config.iters):
        start = time.perf_counter()
        train_step(model, task, data_rng, optimizer, scheduler, config.grad_clip, 1)
        times.append(time.perf_counter() - start)
    return model, 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--eval-iters", type=int, default=100)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--json", help="also write the table here")
    args = parser.parse_args()
    teacher, task, _, config, folder = load_run(args.checkpoint)
    config = dataclasses.replace(config, iters=args.iters,
                                 warmup_iters=min(config.warmup_iters, args.iters // 10))
    shape = dataclasses.replace(teacher.config, num_layers=args.layers, num_heads=args.heads,
                                d_model=args.width)
    seed = config.seed + 1
    teacher_loss = val_loss(teacher, task, args.eval_iters, seed)
    print(f"teacher {folder} ({teacher.num_parameters():,} parameters): val loss "
          f"{teacher_loss:.4f}")
    rows = [{"student": "teacher", "parameters": teacher.num_parameters(),
             "val_loss": teacher_loss, "ms_per_step": None}]
    distilled = DistillationTask(task, teacher, args.temperature, args.alpha)
    print(f"student L={args.layers} H={args.heads} C={args.width}, {args.iters} steps")
    print("| student | parameters | val loss | ms/step |")
    print("|---|---|---|---|")
    for label, student_task in (("from scratch", task), ("distilled", distilled)):
        model, ms = train_student(shape, config, student_task, config.seed)
        rows.append({"student": label, "parameters": model.num_parameters(),
                     "val_loss": val_loss(model, task, args.eval_iters, seed), "ms_per_step": ms})
        print(f"| {label} | {model.num_parameters():,} | {rows[-1]['val_loss']:.4f} | {ms:.1f} |",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"run": str(folder), "iters": args.iters,
                                               "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
