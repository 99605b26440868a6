"""``tinyllm quantize`` and ``tinyllm prune``: chapter 16 on a trained run (``tinyllm.cli``).

    tinyllm quantize --checkpoint RUN --bits 8|4 [--group-size G] [--matmul dequant|int8] --out FILE
    tinyllm sample --checkpoint FILE                 # reads the quantized checkpoint
    tinyllm prune --checkpoint RUN --sparsity S --out DIR
    tinyllm train --resume --out DIR --iters N       # fine-tune; the pruned weights stay zero

``quantize`` writes a quantized checkpoint (``tinyllm.checkpoint.quantized``). ``prune`` writes a
new run folder: the run's training checkpoint with the fraction S of its Linear weights of
smallest magnitude set to zero (global magnitude pruning, eq. 16.12) and their masks saved as
``mask.<name>`` arrays, which the trainer applies after every step of a resumed run. Every
argument is checked before a checkpoint is read; each error is one line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from tinyllm.checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    restore_generators,
    save_checkpoint,
)
from tinyllm.checkpoint.quantized import save_quantized_checkpoint
from tinyllm.checkpoint.validate import MODEL_KINDS
from tinyllm.compress.prune import apply_masks, combine_masks, magnitude_masks, sparsity
from tinyllm.compress.quantized_model import MATMULS, quantize_model
from tinyllm.recipe import TrainConfig, build_optimizer, build_scheduler


def add_parsers(commands) -> None:
    """The ``quantize`` and ``prune`` sub-commands of ``tinyllm``."""
    p = commands.add_parser("quantize", help="int8 / int4 weights of a trained run (chapter 16)",
                            description="Quantize a trained run's Linear weights and token table "
                                        "(symmetric absmax) into a checkpoint `sample` reads.")
    p.add_argument("--checkpoint", required=True, help="training checkpoint, or its run folder")
    p.add_argument("--bits", type=int, choices=(8, 4), default=8, help="8 (default) or 4")
    p.add_argument("--group-size", type=int,
                   help="input rows per scale (default: one scale per output channel)")
    p.add_argument("--matmul", choices=MATMULS, default="dequant",
                   help="dequant: dequantize, then a float product (default); int8: int8 x int8 "
                        "-> int32 (8 bits only)")
    p.add_argument("--out", required=True, help="the quantized checkpoint file to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(handler=cmd_quantize)
    p = commands.add_parser("prune", help="global magnitude pruning of a trained run (chapter 16)",
                            description="Zero the fraction --sparsity of a run's Linear weights "
                                        "of smallest magnitude; write a run folder whose masks "
                                        "`train --resume` keeps.")
    p.add_argument("--checkpoint", required=True, help="training checkpoint, or its run folder")
    p.add_argument("--sparsity", type=float, required=True, help="fraction pruned, in [0, 1)")
    p.add_argument("--out", required=True, help="a new run folder for the pruned run")
    p.set_defaults(handler=cmd_prune)


def _source(checkpoint: str) -> Path:
    path = Path(checkpoint)
    path = path / CHECKPOINT_NAME if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: give a run folder of `tinyllm train` "
                                "or its checkpoint.safetensors")
    return path


def _kind(model) -> str:
    return next(kind for kind, (cls, _) in MODEL_KINDS.items() if isinstance(model, cls))


def cmd_quantize(args) -> dict:
    """Quantize ``args.checkpoint`` into ``args.out``; prints and returns what was written."""
    if args.group_size is not None and args.group_size < 1:
        raise ValueError(f"--group-size must be a positive integer, got {args.group_size}")
    if args.matmul == "int8" and args.bits != 8:
        raise ValueError("--matmul int8 multiplies int8 levels: use it with --bits 8")
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder: give the file to write, e.g. "
                         f"{out / 'quantized.safetensors'}")
    if out.exists() and not args.overwrite:
        raise ValueError(f"--out {out} exists: choose another file, or pass --overwrite")
    if not out.parent.is_dir():
        raise ValueError(f"--out {out}: the folder {out.parent} does not exist")
    source = _source(args.checkpoint)
    model, tokenizer, info = load_checkpoint(source)
    quantized = quantize_model(model, args.bits, args.group_size, args.matmul)
    save_quantized_checkpoint(out, quantized, tokenizer, _kind(model),
                              {"path": str(source), "step": info["step"]})
    report = {"out": str(out), "bits": args.bits, "group_size": args.group_size,
              "matmul": args.matmul, "bytes": out.stat().st_size,
              "float32_bytes": source.stat().st_size}
    print(json.dumps(report, indent=2))
    return report


def cmd_prune(args) -> dict:
    """Prune ``args.checkpoint`` into the new run folder ``args.out``; prints and returns it."""
    from tinyllm import runs  # the run folder's rules: checked, locked, never replaced

    if not (math.isfinite(args.sparsity) and 0 <= args.sparsity < 1):
        raise ValueError(f"--sparsity is the fraction of weights to prune, in [0, 1), got "
                         f"{args.sparsity}")
    out = Path(args.out)
    source = _source(args.checkpoint)
    if out.resolve() == source.parent.resolve():
        raise ValueError(f"--out {out} is the run being pruned: give a new folder")
    with runs.claim_run_folder(out, resume=False, overwrite=False):
        model, tokenizer, info = load_checkpoint(source)
        config = TrainConfig(**info["settings"])
        masks = magnitude_masks(model, args.sparsity)
        if info["masks"]:  # pruning a pruned run: what was pruned stays pruned
            masks = combine_masks(masks, info["masks"])
        apply_masks(model, masks)
        optimizer = build_optimizer(config, model)
        scheduler = build_scheduler(config, optimizer)
        optimizer.load_state_dict(info["optimizer_state"])  # the run goes on where it stopped
        scheduler.load_state_dict(info["scheduler_state"])
        data_rng = np.random.default_rng(config.seed)
        restore_generators(info["generators"], model, data_rng)
        settings = {**info["settings"], "out_dir": str(out)}
        save_checkpoint(out / CHECKPOINT_NAME, model, optimizer, scheduler, tokenizer, data_rng,
                        settings=settings, step=info["step"], history=info["history"],
                        data=info["data"], task_state=info["task_state"] or None, masks=masks,
                        loss_scaler=info["loss_scaler"])
    report = {"out": str(out), "sparsity": round(sparsity(masks), 4),
              "pruned_weights": int(sum(m.size - m.sum() for m in masks.values())),
              "fine_tune": f"tinyllm train --resume --out {out} --iters {info['step'] + 100}"}
    print(json.dumps(report, indent=2))
    return report
