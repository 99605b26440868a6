"""The checkpoint of a training run: everything an exact resume needs, in one safetensors file
(chapter 09, "Checkpoints"; written by ``tinyllm.train``, read by resume, ``sample`` and ``fill``).

    arrays    model.<dotted name>          the weights (Module.state_dict)
              optimizer.<index>.<buffer>   the optimizer's moments (Optimizer.state_dict)
              task.<name>                  a task's own state, if it has one (truncated BPTT: the
                                           stream position and the carried hidden state)
              mask.<dotted name>           pruning masks, boolean, True = kept (chapter 16)
    metadata  format                       CHECKPOINT_FORMAT
              model_kind, model_config     "gpt", "bert", "lstm" and its shape, to rebuild it
              optimizer, scheduler         the optimizer's numbers (steps, settings); the schedule's
              generators                   the batch generator's state and every dropout generator's
              tokenizer                    the tokenizer (its to_dict)
              train_config, step, history  the run's settings, the steps taken, the losses so far
              data                         the training text's file, size and SHA-256 (or null)
              loss_scaler                  a float16 run's dynamic loss scale (chapter 16), if any
              ranks                        MPI ranks W and each rank's dropout generators (ch. 17)

A file of an earlier format is refused by name, with what to do about it. Reading checks the
header and every metadata field first (``validate.py``), and reads the arrays only then.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tinyllm.checkpoint.safetensors import (
    CheckpointError,
    SafetensorsHeader,
    read_arrays,
    read_header,
    save_safetensors,
)
from tinyllm.checkpoint.states import optimizer_state_from_arrays, optimizer_state_to_arrays
from tinyllm.checkpoint.validate import (
    MODEL_KINDS,
    check_config,
    check_metadata,
    check_tokenizer,
    check_weights,
)
from tinyllm.nn import Module
from tinyllm.optim import LRScheduler, Optimizer
from tinyllm.tokenizers import tokenizer_from_dict

CHECKPOINT_NAME = "checkpoint.safetensors"  # the file `tinyllm train` writes into its output folder
CHECKPOINT_FORMAT = "tinyllm-checkpoint-2"  # 2: configs use the README's names (d_model, ...)
OLD_FORMATS = {
    "tinyllm-checkpoint-1": "tinyllm 0.1 (config fields n_embd, n_head, n_layer, block_size)",
}


def generator_states(model: Module, data_rng: np.random.Generator) -> dict[str, dict]:
    """The state of the batch generator ("data") and of every generator the model's layers own
    (dropout masks), by module name ("blocks.0.drop.rng"): the random part of an exact resume."""
    states = {"data": data_rng.bit_generator.state}
    for name, module in model.named_modules():
        if isinstance(getattr(module, "rng", None), np.random.Generator):
            states[f"{name}.rng" if name else "rng"] = module.rng.bit_generator.state
    return states


def restore_generators(states: dict[str, dict], model: Module,
                       data_rng: np.random.Generator) -> None:
    """Put the states of :func:`generator_states` back into ``data_rng`` and the model's."""
    data_rng.bit_generator.state = states["data"]
    for name, module in model.named_modules():
        if isinstance(getattr(module, "rng", None), np.random.Generator):
            module.rng.bit_generator.state = states[f"{name}.rng" if name else "rng"]


def save_checkpoint(path: str | os.PathLike, model: Module, optimizer: Optimizer,
                    scheduler: LRScheduler, tokenizer, data_rng: np.random.Generator, *,
                    settings: dict[str, Any], step: int, history: dict,
                    data: dict[str, Any] | None = None,
                    task_state: dict[str, np.ndarray] | None = None,
                    masks: dict[str, np.ndarray] | None = None,
                    loss_scaler: dict[str, Any] | None = None,
                    ranks: dict[str, Any] | None = None) -> None:
    """Write a training checkpoint (atomically): the layout of the module docstring.

    ``settings`` is the run's recipe as a JSON-able dict (``dataclasses.asdict(TrainConfig)``);
    ``data`` describes the training text ({"path", "size", "sha256"}) so a resume can check it;
    ``task_state`` (name -> array, e.g. ``StreamTask.state_dict()``) is saved as ``task.<name>``;
    pruning ``masks`` (parameter name -> boolean array, chapter 16) as ``mask.<name>``, and the
    ``loss_scaler`` state of a float16 run (``LossScaler.state_dict()``) in the metadata.
    """
    kinds = [kind for kind, (cls, _) in MODEL_KINDS.items() if isinstance(model, cls)]
    if not kinds:
        raise TypeError(f"a training checkpoint holds one of {sorted(MODEL_KINDS)}, not "
                        f"{type(model).__name__}")
    arrays = {f"model.{name}": value for name, value in model.state_dict().items()}
    optimizer_arrays, optimizer_numbers = optimizer_state_to_arrays(optimizer.state_dict())
    arrays.update(optimizer_arrays)
    arrays.update({f"task.{name}": value for name, value in (task_state or {}).items()})
    arrays.update({f"mask.{name}": np.asarray(m, dtype=bool) for name, m in (masks or {}).items()})
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "train_config": json.dumps(settings),
        "model_kind": kinds[0],
        "model_config": json.dumps(dataclasses.asdict(model.config)),
        "tokenizer": json.dumps(tokenizer.to_dict()),
        "step": str(step),
        "generators": json.dumps(generator_states(model, data_rng)),
        "optimizer": json.dumps(optimizer_numbers),
        "scheduler": json.dumps(scheduler.state_dict()),
        "history": json.dumps(history),
        "data": json.dumps(data),
    }
    if loss_scaler is not None:
        metadata["loss_scaler"] = json.dumps(loss_scaler)
    if ranks is not None:  # {"size": W, "generators": [...]} (tinyllm.distributed)
        metadata["ranks"] = json.dumps(ranks)
    save_safetensors(path, arrays, metadata)


def _read(path: str | os.PathLike) -> tuple[Path, SafetensorsHeader, dict[str, Any]]:
    """(file, header, checked metadata fields) of a training checkpoint, or of the run folder
    that holds one; the arrays are not read."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    header = read_header(path)
    metadata = header.metadata
    old = OLD_FORMATS.get(metadata.get("format", ""))
    if old is not None:  # an error that says so, not a confusing missing-field one
        raise CheckpointError(
            f"{path} was written by {old}; this tinyllm reads {CHECKPOINT_FORMAT} only: train the "
            "model again with this version, or read the file with the tinyllm that wrote it"
        )
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not a tinyllm training checkpoint (no "
            f"'{CHECKPOINT_FORMAT}' format tag); pass the {CHECKPOINT_NAME} written by "
            "`tinyllm train`"
        )
    return path, header, check_metadata(path, metadata)


def saved_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The settings a run was started with (the ``settings`` given to :func:`save_checkpoint`)."""
    return _read(path)[2]["train_config"]


def load_checkpoint(path: str | os.PathLike) -> tuple[Module, Any, dict[str, Any]]:
    """Read a training checkpoint (the file, or the run folder that holds it).

    Returns (model, tokenizer, info): the model rebuilt from its kind and shape with the saved
    weights, the tokenizer, and ``info`` with "settings", "shape", "step", "history", "generators"
    (for :func:`restore_generators`), "optimizer_state" and "scheduler_state" (for their
    ``load_state_dict``), "data" (what :func:`save_checkpoint` was given, or None) and
    "task_state" (the ``task.*`` arrays by name; empty if none were saved).
    """
    path, header, fields = _read(path)
    kind = fields["model_kind"]
    shape = check_config(path, kind, fields["model_config"])
    check_weights(path, kind, shape, header.tensors)  # from the header: nothing allocated yet
    check_tokenizer(path, fields["tokenizer"], shape.vocab_size)
    try:
        tokenizer = tokenizer_from_dict(fields["tokenizer"])
    except (ValueError, KeyError, TypeError) as error:  # TokenizerError is a ValueError
        raise CheckpointError(f"{path}: field 'tokenizer' is not a tokenizer ({error})") from None
    arrays = read_arrays(header)
    model = MODEL_KINDS[kind][0](shape, rng=np.random.default_rng(0))  # weights overwritten next
    weights = {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except KeyError as error:  # names or shapes that are not this config's model
        raise CheckpointError(f"{path}: the weights do not fit its model_config: "
                              f"{error.args[0]}") from None
    step = fields["step"]
    info = {
        "settings": fields["train_config"],
        "shape": shape,
        "step": step,
        "history": fields["history"],
        "generators": fields["generators"],
        "optimizer_state": optimizer_state_from_arrays(arrays, fields["optimizer"]),
        # a file written before the scheduler was saved: its position was always the step
        "scheduler_state": fields.get("scheduler", {"step_count": step}),
        "data": fields.get("data"),
        "task_state": {k[len("task."):]: v for k, v in arrays.items() if k.startswith("task.")},
        "masks": {k[len("mask."):]: v != 0 for k, v in arrays.items() if k.startswith("mask.")},
        "loss_scaler": fields.get("loss_scaler"),  # None: not a float16 run
        "ranks": fields.get("ranks"),  # None: a file from before chapter 17 (one process)
    }
    return model, tokenizer, info
