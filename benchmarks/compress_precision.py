"""Mixed-precision training against float32 at equal steps: validation loss and speed (ch. 16).

    python benchmarks/compress_precision.py [--iters 200] [--eval-iters 50] [--device cpu]

Three runs of the default GPT recipe (preset shakespeare-char, same seed, same batches, the
schedule shortened to ``--iters``): float32 (``tinyllm.train.train_step``), float16 compute with
float32 master weights and dynamic loss scaling, and emulated bfloat16
(``tinyllm.compress.mixed_precision_step``). Printed: the final validation loss, the median ms per
step, skipped steps and the last loss scale. NumPy has no float16 BLAS (its float16 matrix
product is a plain loop) and no bfloat16 at all (emulated: rounding plus float32 arithmetic), so
on a CPU both are slower than float32; the figures say by how much.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from tinyllm.compress import MixedPrecision, mixed_precision_step
from tinyllm.train import (
    TrainConfig,
    build_model,
    build_optimizer,
    build_scheduler,
    build_task,
    build_tokenizer,
    load_texts,
    model_config,
    train_step,
)


def run(precision: str, config: TrainConfig, tokenizer, task, shape, eval_iters: int) -> dict:
    model = build_model("gpt", shape, config.seed).to(config.device)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer)
    data_rng = np.random.default_rng(config.seed)
    mixed = MixedPrecision(model, precision) if precision != "fp32" else None
    times, skipped = [], 0
    for _ in range(config.iters):
        start = time.perf_counter()
        if mixed is None:
            train_step(model, task, data_rng, optimizer, scheduler, config.grad_clip, 1)
        else:
            step = mixed_precision_step(mixed, task, data_rng, optimizer, scheduler,
                                        config.grad_clip, 1)
            skipped += not step.stepped
        times.append(time.perf_counter() - start)
    if mixed is not None:  # the validation loss of the low-precision compute copy
        loss = mixed.evaluate(task, "val", eval_iters, config.seed + 1)
    else:
        loss = task.evaluate(model, "val", eval_iters, seed=config.seed + 1)
    return {"val_loss": loss["loss"], "ms_per_step": 1000 * float(np.median(times)),
            "skipped": skipped, "scale": mixed.scaler.loss_scale if mixed else 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--eval-iters", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="fp32,fp16,bf16")
    parser.add_argument("--json", help="also write the table here")
    args = parser.parse_args()
    config = dataclasses.replace(TrainConfig(), iters=args.iters, device=args.device,
                                 warmup_iters=min(100, args.iters // 10))
    train_text, val_text = load_texts(config)
    tokenizer = build_tokenizer(config, train_text, val_text)
    shape = model_config(config, tokenizer.vocab_size)
    task = build_task(config, tokenizer, shape, train_text, val_text)
    print(f"GPT shakespeare-char, {args.iters} steps, device {args.device}, validation over "
          f"{args.eval_iters} batches")
    print("| precision | val loss | ms/step | skipped steps | final loss scale |")
    print("|---|---|---|---|---|")
    rows = []
    for precision in args.precisions.split(","):
        r = run(precision, config, tokenizer, task, shape, args.eval_iters)
        rows.append({"precision": precision, **r})
        print(f"| {precision} | {r['val_loss']:.4f} | {r['ms_per_step']:.1f} | {r['skipped']} | "
              f"{r['scale']:g} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"iters": args.iters, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
