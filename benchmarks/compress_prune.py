"""Pruning a trained GPT: validation loss against sparsity and against heads removed (ch. 16).

    python benchmarks/compress_prune.py [--checkpoint RUN] [--finetune 50] [--eval-iters 100]

Global magnitude pruning of every Linear weight (embeddings kept) at each sparsity, the
validation loss right after pruning and after ``--finetune`` steps of AdamW (the run's settings,
a constant learning rate of ``min_lr``) with the masks re-applied after every step. Then heads:
importance by Michel et al. 2019 (|dL/d xi_h| over 16 training batches, raw and l2-normalised
per layer), the k least important heads switched off, k = 0, 2, 4, ..., every head but one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from compress_common import load_run, val_loss

from tinyllm import optim
from tinyllm.compress import (
    apply_masks,
    head_gates,
    head_importance,
    heads_to_remove,
    magnitude_masks,
)
from tinyllm.train import build_optimizer, train_step

SPARSITIES = (0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95)


def finetune(model, masks, task, config, steps: int) -> None:
    optimizer = build_optimizer(config, model)
    scheduler = optim.LRScheduler(optimizer, lambda step: config.min_lr)
    data_rng = np.random.default_rng(config.seed + 7)
    for _ in range(steps):
        train_step(model, task, data_rng, optimizer, scheduler, config.grad_clip, 1)
        apply_masks(model, masks)  # the hook: pruned weights stay zero


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--finetune", type=int, default=50)
    parser.add_argument("--eval-iters", type=int, default=100)
    parser.add_argument("--json", help="also write the tables here (compress_plots.py reads it)")
    args = parser.parse_args()
    model, task, _, config, folder = load_run(args.checkpoint)
    trained = model.state_dict()
    seed = config.seed + 1
    print(f"run {folder}; validation loss over {args.eval_iters} batches")
    print(f"| sparsity | val loss | after {args.finetune} fine-tune steps |")
    print("|---|---|---|")
    sweep, heads = [], []
    for s in SPARSITIES:
        model.load_state_dict(trained)
        masks = magnitude_masks(model, s)
        apply_masks(model, masks)
        pruned = val_loss(model, task, args.eval_iters, seed)
        finetune(model, masks, task, config, args.finetune)
        tuned = val_loss(model, task, args.eval_iters, seed)
        sweep.append({"sparsity": s, "val_loss": pruned, "finetuned_val_loss": tuned})
        print(f"| {s:.2f} | {pruned:.4f} | {tuned:.4f} |", flush=True)
    model.load_state_dict(trained)
    total = sum(attn.size for attn in head_importance(model, task, 1).values())
    scores = {kind: head_importance(model, task, batches=16, normalize=kind == "normalised")
              for kind in ("raw", "normalised")}
    print("\n| heads removed | val loss (raw scores) | val loss (l2-normalised per layer) |")
    print("|---|---|---|")
    for k in range(0, total, 2):
        losses = []
        for kind in ("raw", "normalised"):
            with head_gates(model, heads_to_remove(scores[kind], k)):
                losses.append(val_loss(model, task, args.eval_iters, seed))
        heads.append({"removed": k, "of": total, "raw": losses[0], "normalised": losses[1]})
        print(f"| {k} of {total} | {losses[0]:.4f} | {losses[1]:.4f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"run": str(folder), "finetune": args.finetune,
                                               "sparsity": sweep, "heads": heads}, indent=1))


if __name__ == "__main__":
    main()
