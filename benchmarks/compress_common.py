"""Shared by the chapter 16 benchmarks (compress_*.py): a trained run, its task, a timer.

A run is a folder written by ``tinyllm train`` (default: runs/shakespeare-char; without one,
train a short run first: ``tinyllm train --iters 300 --out /tmp/q-run --no-progress``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from tinyllm.checkpoint import CHECKPOINT_NAME, load_checkpoint
from tinyllm.train import TrainConfig, build_task, load_texts

DEFAULT_RUNS = ("runs/shakespeare-char", "/tmp/q-run")


def find_run(checkpoint: str | None) -> Path:
    """The run folder asked for, or the first of DEFAULT_RUNS that holds a checkpoint."""
    candidates = [checkpoint] if checkpoint else DEFAULT_RUNS
    for folder in candidates:
        if (Path(folder) / CHECKPOINT_NAME).exists():
            return Path(folder)
    raise SystemExit(f"no checkpoint in {', '.join(candidates)}: train one first with "
                     "`tinyllm train --iters 300 --out /tmp/q-run --no-progress`")


def load_run(checkpoint: str | None):
    """(model, task, tokenizer, config, folder) of a GPT run; the task on its corpus and split."""
    folder = find_run(checkpoint)
    model, tokenizer, info = load_checkpoint(folder / CHECKPOINT_NAME)
    config = TrainConfig(**info["settings"])
    config = dataclasses.replace(config, out_dir=str(folder))
    train_text, val_text = load_texts(config)
    task = build_task(config, tokenizer, info["shape"], train_text, val_text)
    return model, task, tokenizer, config, folder


def ms_per_token(model, tokens: int = 200, repeats: int = 3) -> float:
    """Median wall time per generated token (batch 1, greedy, KV cache), in milliseconds."""
    prompt = np.zeros((1, 1), dtype=np.int64)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.generate(prompt, tokens, temperature=0.0)
        times.append((time.perf_counter() - start) * 1000 / tokens)
    return float(np.median(times))


def val_loss(model, task, iters: int, seed: int) -> float:
    return task.evaluate(model, "val", iters, seed=seed)["loss"]
