"""The checkpoint of a training run: everything an exact resume needs, in one safetensors file
(chapter 09, "Checkpoints"; written by ``tinyllm.train``, read by resume, ``sample`` and ``fill``).

    arrays    model.<dotted name>          the weights (Module.state_dict)
              optimizer.<index>.<buffer>   the optimizer's moments (Optimizer.state_dict)
    metadata  format                       CHECKPOINT_FORMAT
              model_kind, model_config     "gpt" or "bert" and its shape, to rebuild the model
              optimizer, scheduler         the optimizer's numbers (steps, settings); the schedule's
              generators                   the batch generator's state and every dropout generator's
              tokenizer                    the tokenizer (its to_dict)
              train_config, step, history  the run's settings, the steps taken, the losses so far

A file of an earlier format is refused by name, with what to do about it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tinyllm.checkpoint.safetensors import CheckpointError, load_safetensors, save_safetensors
from tinyllm.checkpoint.states import optimizer_state_from_arrays, optimizer_state_to_arrays
from tinyllm.models import BERT, GPT, BERTConfig, GPTConfig
from tinyllm.nn import Module
from tinyllm.optim import LRScheduler, Optimizer
from tinyllm.tokenizers import tokenizer_from_dict

CHECKPOINT_NAME = "checkpoint.safetensors"  # the file `tinyllm train` writes into its output folder
CHECKPOINT_FORMAT = "tinyllm-checkpoint-2"  # 2: configs use the README's names (d_model, ...)
OLD_FORMATS = {
    "tinyllm-checkpoint-1": "tinyllm 0.1 (config fields n_embd, n_head, n_layer, block_size)",
}
MODEL_KINDS = {"gpt": (GPT, GPTConfig), "bert": (BERT, BERTConfig)}  # kind -> (model, its config)


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
                    settings: dict[str, Any], step: int, history: dict) -> None:
    """Write a training checkpoint (atomically): the layout of the module docstring.

    ``settings`` is the run's recipe as a JSON-able dict (``dataclasses.asdict(TrainConfig)``).
    """
    kinds = [kind for kind, (cls, _) in MODEL_KINDS.items() if isinstance(model, cls)]
    if not kinds:
        raise TypeError(f"a training checkpoint holds a GPT or a BERT, not {type(model).__name__}")
    arrays = {f"model.{name}": value for name, value in model.state_dict().items()}
    optimizer_arrays, optimizer_numbers = optimizer_state_to_arrays(optimizer.state_dict())
    arrays.update(optimizer_arrays)
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
    }
    save_safetensors(path, arrays, metadata)


def _read(path: str | os.PathLike) -> tuple[Path, dict[str, np.ndarray], dict[str, str]]:
    """(file, arrays, metadata) of a training checkpoint, or the run folder that holds one."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    arrays, metadata = load_safetensors(path)
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
    return path, arrays, metadata


def saved_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The settings a run was started with (the ``settings`` given to :func:`save_checkpoint`)."""
    _, _, metadata = _read(path)
    return json.loads(metadata["train_config"])


def load_checkpoint(path: str | os.PathLike) -> tuple[Module, Any, dict[str, Any]]:
    """Read a training checkpoint (the file, or the run folder that holds it).

    Returns (model, tokenizer, info): the model rebuilt from its kind and shape with the saved
    weights, the tokenizer, and ``info`` with "settings", "shape", "step", "history", "generators"
    (for :func:`restore_generators`), "optimizer_state" and "scheduler_state" (for their
    ``load_state_dict``).
    """
    _, arrays, metadata = _read(path)
    model_class, config_class = MODEL_KINDS[metadata["model_kind"]]
    shape = config_class(**json.loads(metadata["model_config"]))
    model = model_class(shape, rng=np.random.default_rng(0))  # every weight is overwritten next
    weights = {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}
    model.load_state_dict(weights)
    step = int(metadata["step"])
    info = {
        "settings": json.loads(metadata["train_config"]),
        "shape": shape,
        "step": step,
        "history": json.loads(metadata["history"]),
        "generators": json.loads(metadata["generators"]),
        "optimizer_state": optimizer_state_from_arrays(arrays, json.loads(metadata["optimizer"])),
        # a file written before the scheduler was saved: its position was always the step
        "scheduler_state": json.loads(metadata.get("scheduler", json.dumps({"step_count": step}))),
    }
    return model, tokenizer_from_dict(json.loads(metadata["tokenizer"])), info
