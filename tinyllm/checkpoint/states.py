"""A model's or an optimizer's state in a safetensors file (chapter 09, section "Checkpoints").

``Module.state_dict()`` and ``Optimizer.state_dict()`` are plain dicts in memory; this module writes
them to files and reads them back, so that neither the layers nor the optimizers know about files:

    save_model("model.safetensors", model)           # dotted names -> arrays
    load_model("model.safetensors", model)           # into a model of the same configuration
    save_optimizer("opt.safetensors", optimizer)     # moments as arrays, step and settings as JSON
    load_optimizer("opt.safetensors", optimizer)     # into an optimizer built on the same groups

An optimizer state mixes arrays (the moments m, v, one per parameter) and numbers (step counts,
learning rates); :func:`optimizer_state_to_arrays` splits it into the arrays of a safetensors file
and a JSON-able rest for its metadata, and :func:`optimizer_state_from_arrays` joins them again. The
prefix of the array names ("optimizer.") lets a training checkpoint keep weights and moments in one
file.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from tinyllm.checkpoint.safetensors import CheckpointError, load_safetensors, save_safetensors
from tinyllm.nn.module import Module
from tinyllm.optim import Optimizer


def save_model(path: str | os.PathLike, model: Module,
               metadata: dict[str, str] | None = None) -> None:
    """Write ``model.state_dict()`` to a safetensors file (atomically, no pickle)."""
    save_safetensors(path, model.state_dict(), metadata)


def load_model(path: str | os.PathLike, model: Module, strict: bool = True) -> Module:
    """Copy the arrays of a file written by :func:`save_model` into ``model``; returns the model.

    ``strict`` as in ``Module.load_state_dict``: a missing, unexpected or wrong-shaped name is an
    error.
    """
    arrays, _ = load_safetensors(path)
    model.load_state_dict(arrays, strict=strict)
    return model


def optimizer_state_to_arrays(state: dict[str, Any], prefix: str = "optimizer.") -> tuple[
        dict[str, np.ndarray], dict[str, Any]]:
    """Split ``Optimizer.state_dict()`` into arrays (named ``prefix + "3.m"``) and a JSON-able rest.

    The arrays go into a safetensors file, the rest into its metadata as ``json.dumps(numbers)``.
    Inverse: :func:`optimizer_state_from_arrays`.
    """
    arrays: dict[str, np.ndarray] = {}
    numbers_state: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        numbers_state[str(index)] = {}
        for name, value in entry.items():
            if isinstance(value, np.ndarray):
                arrays[f"{prefix}{index}.{name}"] = value
            else:
                numbers_state[str(index)][name] = value
    numbers = {key: value for key, value in state.items() if key != "state"}
    numbers["state"] = numbers_state
    return arrays, numbers


def optimizer_state_from_arrays(arrays: dict[str, np.ndarray], numbers: dict[str, Any],
                                prefix: str = "optimizer.") -> dict[str, Any]:
    """The state dict that :func:`optimizer_state_to_arrays` split (other arrays are ignored)."""
    state: dict[int, dict[str, Any]] = {int(i): dict(entry)
                                        for i, entry in numbers["state"].items()}
    for key, array in arrays.items():
        if key.startswith(prefix):
            index, name = key[len(prefix):].split(".", 1)
            state.setdefault(int(index), {})[name] = array
    return {**numbers, "state": state}


def save_optimizer(path: str | os.PathLike, optimizer: Optimizer,
                   metadata: dict[str, str] | None = None) -> None:
    """Write ``optimizer.state_dict()`` to a safetensors file: moments as arrays, rest as JSON."""
    arrays, numbers = optimizer_state_to_arrays(optimizer.state_dict())
    save_safetensors(path, arrays, {**(metadata or {}), "optimizer": json.dumps(numbers)})


def load_optimizer(path: str | os.PathLike, optimizer: Optimizer) -> Optimizer:
    """Restore a state written by :func:`save_optimizer` into ``optimizer``; returns it."""
    arrays, metadata = load_safetensors(path)
    if "optimizer" not in metadata:
        raise CheckpointError(f"{path} holds no optimizer state (no 'optimizer' metadata entry): "
                              "pass a file written by save_optimizer")
    try:
        numbers = json.loads(metadata["optimizer"])
    except (ValueError, RecursionError):  # not JSON, or nested too deeply to parse
        raise CheckpointError(f"{path}: field 'optimizer' is not valid JSON") from None
    if not isinstance(numbers, dict) or not isinstance(numbers.get("state"), dict):
        raise CheckpointError(f"{path}: field 'optimizer' must hold a 'state' object")
    optimizer.load_state_dict(optimizer_state_from_arrays(arrays, numbers))
    return optimizer
