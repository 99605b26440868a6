"""Checking a training checkpoint before anything is built from it (chapter 09, "Checkpoints").

A checkpoint's metadata says what to build: ``model_kind`` and ``model_config`` name the model's
class and shape, the other fields the tokenizer, the optimizer's and the schedule's state and the
random generators. A file can claim anything, so before a single array is allocated, from the
header alone (:func:`tinyllm.checkpoint.safetensors.read_header`):

- every metadata field the loader uses is present and of its JSON type;
- ``model_config`` has exactly the fields of the kind's config dataclass, each of its type (an int
  is not a bool) and in its range (widths positive, dropout in [0, 1), heads dividing d_model);
- the parameter count the config implies (eq. 11.7 GPT, 12.5 BERT, 18.12 LSTM) equals the number
  of weights the file holds, so the model the loader builds is no larger than the file: a 6 KB
  file that claims a billion parameters is refused before anything is built;
- a BPE tokenizer's merges do not spell a vocabulary too large to hold (merge k joining k - 1
  with itself doubles a token's length: 40 merges would make a terabyte).

Each error is one line that names the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from typing import Any

from tinyllm.checkpoint.safetensors import CheckpointError, TensorInfo
from tinyllm.models import (
    BERT,
    GPT,
    RECURRENT_CELLS,
    BERTConfig,
    GPTConfig,
    LSTMConfig,
    LSTMLanguageModel,
    Seq2Seq,
    Seq2SeqConfig,
    bert_parameter_count,
    gpt_parameter_count,
    lstm_parameter_count,
    seq2seq_parameter_count,
)
from tinyllm.models.seq2seq import POSITION_KINDS
from tinyllm.nn.multihead import ATTENTION_KINDS
from tinyllm.nn.transformer import ACTIVATIONS

MODEL_KINDS = {"gpt": (GPT, GPTConfig), "bert": (BERT, BERTConfig),  # kind -> (model, its config)
               "lstm": (LSTMLanguageModel, LSTMConfig), "seq2seq": (Seq2Seq, Seq2SeqConfig)}
PARAMETER_COUNTS = {"gpt": gpt_parameter_count, "bert": bert_parameter_count,  # eq. 11.7, 12.5
                    "lstm": lstm_parameter_count,  # eq. 18.12
                    "seq2seq": seq2seq_parameter_count}  # eq. 15.3
# metadata field -> the JSON type the loader needs ("scheduler" and "data" may be absent)
JSON_FIELDS = {"model_config": dict, "train_config": dict, "tokenizer": dict, "generators": dict,
               "optimizer": dict, "history": dict, "scheduler": dict, "data": (dict, type(None)),
               "loss_scaler": dict, "ranks": dict}
OPTIONAL_FIELDS = ("scheduler", "data", "loss_scaler", "ranks")
WEIGHT_DTYPES = ("F64", "F32", "F16", "BF16")  # a model's weights are floating point
MAX_VOCAB_BYTES = 2**28  # the bytes a BPE vocabulary may spell out (a real one: well under 1 MB)
NEWER_FIELDS = {"attention": "fused",  # config fields added after files were written: their value
                "activation": "gelu"}  # BERTConfig.activation (issue 9): BERT's exact GELU


def _error(path: os.PathLike, field: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: field {field!r} {problem}")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_metadata(path: os.PathLike, metadata: dict[str, str]) -> dict[str, Any]:
    """The fields the loader uses, parsed: "model_kind", "step" (an int) and JSON_FIELDS."""
    fields: dict[str, Any] = {}
    for name in ("model_kind", "step", *JSON_FIELDS):
        if name not in metadata and name not in OPTIONAL_FIELDS:
            raise _error(path, name, "is missing: the file is not a complete tinyllm checkpoint")
    kind = metadata["model_kind"]
    if kind not in MODEL_KINDS:
        raise _error(path, "model_kind", f"is {kind!r}; expected one of {sorted(MODEL_KINDS)}")
    fields["model_kind"] = kind
    if not (metadata["step"].isascii() and metadata["step"].isdigit()):
        raise _error(path, "step", f"must be a non-negative integer, got {metadata['step']!r}")
    fields["step"] = int(metadata["step"])
    for name, json_type in JSON_FIELDS.items():
        if name not in metadata:
            continue
        try:
            value = json.loads(metadata[name])
        except (ValueError, RecursionError) as error:  # JSONDecodeError, or nested too deeply
            raise _error(path, name, f"is not valid JSON ({type(error).__name__})") from None
        if not isinstance(value, json_type):
            expected = "a JSON object or null" if name in OPTIONAL_FIELDS else "a JSON object"
            raise _error(path, name, f"must be {expected}, got {_short(value)}")
        fields[name] = value
    _check_states(path, fields)
    return fields


def _check_states(path: os.PathLike, fields: dict[str, Any]) -> None:
    """The parts of the optimizer's, the schedule's and the generators' state the loader reads."""
    state = fields["optimizer"].get("state")
    if not isinstance(state, dict) or not all(key.isdigit() and isinstance(entry, dict)
                                              for key, entry in state.items()):
        raise _error(path, "optimizer", "must hold a 'state' object of parameter index -> "
                     "object")
    if not isinstance(fields["generators"].get("data"), dict):
        raise _error(path, "generators", "must hold the batch generator's state under 'data'")
    if "scheduler" in fields and type(fields["scheduler"].get("step_count")) is not int:
        raise _error(path, "scheduler", "must hold an integer 'step_count'")


def check_config(path: os.PathLike, kind: str, values: dict[str, Any]):
    """``model_config`` as the kind's config dataclass, every field checked (module docstring)."""
    config_class = MODEL_KINDS[kind][1]
    types = typing.get_type_hints(config_class)
    names = [field.name for field in dataclasses.fields(config_class)]
    values = {**{n: value for n, value in NEWER_FIELDS.items() if n in names}, **values}
    unknown, missing = sorted(set(values) - set(names)), [n for n in names if n not in values]
    if unknown or missing:
        raise _error(path, "model_config", f"does not describe a {config_class.__name__}: "
                     f"unknown {unknown}, missing {missing}")
    for name in names:
        problem = _field_problem(name, types[name], values[name])
        if problem:
            raise _error(path, f"model_config.{name}", f"{problem}, got {_short(values[name])}")
    if "num_heads" in values and values["d_model"] % values["num_heads"]:
        raise _error(path, "model_config.num_heads", f"must divide d_model = {values['d_model']}"
                     f", got {values['num_heads']}")
    if values.get("tie_weights") and values["d_model"] != values["hidden_size"]:
        raise _error(path, "model_config.tie_weights", "needs d_model = hidden_size, got "
                     f"{values['d_model']} and {values['hidden_size']}")
    return config_class(**values)


def _field_problem(name: str, kind: type, value: object) -> str | None:
    """What is wrong with one config field's value, or None."""
    if kind is bool:
        return None if type(value) is bool else "must be true or false"
    if kind is int and name.endswith("_id"):  # seq2seq's special token ids: PAD is 0
        return None if type(value) is int and value >= 0 else "must be a non-negative integer"
    if kind is int:
        return None if type(value) is int and value >= 1 else "must be a positive integer"
    if kind is float:
        if type(value) not in (int, float) or not math.isfinite(value):
            return "must be a finite number"
        if name in ("dropout", "label_smoothing") and not 0 <= value < 1:
            return "must be in [0, 1)"
        return "must be positive" if name == "eps" and value <= 0 else None
    if kind is str:
        if not isinstance(value, str):
            return "must be a string"
        if name == "activation" and value not in ACTIVATIONS:
            return f"must be one of {list(ACTIVATIONS)}"
        if name == "cell" and value not in RECURRENT_CELLS:
            return f"must be one of {list(RECURRENT_CELLS)}"
        if name == "attention" and value not in ATTENTION_KINDS:
            return f"must be one of {list(ATTENTION_KINDS)}"
        if name == "positions" and value not in POSITION_KINDS:
            return f"must be one of {list(POSITION_KINDS)}"
        return None
    return f"has a type ({kind}) that a checkpoint cannot check"


def check_weights(path: os.PathLike, kind: str, config, tensors: dict[str, TensorInfo]) -> None:
    """The header's arrays are the weights the config implies (by count), and well named."""
    weights = {name: info for name, info in tensors.items() if name.startswith("model.")}
    for name, info in weights.items():
        if info.dtype not in WEIGHT_DTYPES:
            raise CheckpointError(f"{path}: array {name!r} is {info.dtype}; a model's weights are "
                                  f"one of {list(WEIGHT_DTYPES)}")
    held = sum(math.prod(info.shape) for info in weights.values())
    implied = PARAMETER_COUNTS[kind](config)
    if held != implied:
        raise _error(path, "model_config", f"describes a {kind.upper()} of {implied:,} parameters "
                     f"but the file holds {held:,} weights: the file is corrupt or was edited")
    for name in tensors:
        parts = name.split(".")
        weight = weights.get("model." + name[len("mask."):]) if parts[0] == "mask" else None
        if parts[0] == "mask" and (weight is None or weight.shape != tensors[name].shape):
            raise CheckpointError(f"{path}: pruning mask {name!r} names no weight of its shape "
                                  f"({tensors[name].shape}): the file is corrupt or was edited")
        if parts[0] == "optimizer" and (len(parts) < 3 or not parts[1].isdigit()):
            raise CheckpointError(f"{path}: array {name!r} is not named optimizer.<index>.<name>")


def check_tokenizer(path: os.PathLike, data: dict[str, Any], vocab_size: int) -> None:
    """A BPE tokenizer's vocabulary fits in memory; the model has one row per token.

    Token r of a BPE spells len(vocab[a]) + len(vocab[b]) bytes for its merge (a, b); summing those
    lengths, without building the bytes, bounds the memory the tokenizer will take.
    """
    merges, specials = data.get("merges"), data.get("special_tokens")
    if data.get("type") == "bpe" and isinstance(merges, list):
        lengths, total = [1] * 256, 256
        for pair in merges:
            if not (isinstance(pair, list) and len(pair) == 2 and all(
                    type(i) is int and 0 <= i < len(lengths) for i in pair)):
                break  # the tokenizer itself says what is wrong with this merge
            lengths.append(lengths[pair[0]] + lengths[pair[1]])
            total += lengths[-1]
            if total > MAX_VOCAB_BYTES:
                raise _error(path, "tokenizer", f"has merges whose tokens would take more than "
                             f"{MAX_VOCAB_BYTES:,} bytes: the file is corrupt or was edited")
    if data.get("type") == "bpe" and isinstance(merges, list) and isinstance(specials, list):
        size = 256 + len(merges) + len(specials)
    elif data.get("type") == "char" and isinstance(data.get("chars"), str):
        size = len(data["chars"])
    else:
        return  # not a tokenizer: tokenizer_from_dict names the problem
    if size != vocab_size:
        raise _error(path, "tokenizer", f"has {size} tokens but model_config.vocab_size is "
                     f"{vocab_size}: they must match")
