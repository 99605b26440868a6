"""The quantized checkpoint: a trained model's weights as int8 (or int4) levels and float32 scales
(chapter 16, "Quantization"; written by ``tinyllm quantize``, read by ``tinyllm sample``).

    arrays    model.<layer>.weight.q       levels: int8 (K, N), or for 4 bits uint8 (K/2, N)
              model.<layer>.weight.scale   float32 (K/g, N): one scale per group and column
              model.<other>                the float parameters (LayerNorms, learned positions)
    metadata  format                       QUANTIZED_FORMAT
              model_kind, model_config     as in a training checkpoint: what to rebuild
              quantization                 the QuantizationSpec (bits, group_size, matmul, ...)
              tokenizer                    the tokenizer (its to_dict)
              source                       the training checkpoint it came from: path and step

It holds no optimizer, schedule or generators: it is for inference, not for resuming. As for a
training checkpoint, everything is checked from the header before an array is allocated: the
config and tokenizer (``validate.py``), the spec, each array's dtype, and the parameter count the
config implies against the levels and float arrays the file holds (a 4-bit byte holds 2 levels).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from tinyllm.checkpoint.safetensors import (
    CheckpointError,
    read_arrays,
    read_header,
    save_safetensors,
)
from tinyllm.checkpoint.training import CHECKPOINT_NAME, load_checkpoint
from tinyllm.checkpoint.validate import (
    MODEL_KINDS,
    PARAMETER_COUNTS,
    check_config,
    check_tokenizer,
)
from tinyllm.compress.quantized_model import QuantizationSpec, QuantizedModel
from tinyllm.tokenizers import tokenizer_from_dict

QUANTIZED_FORMAT = "tinyllm-quantized-1"
QUANTIZED_NAME = "quantized.safetensors"  # the file name inside a folder given as --out
LEVEL_DTYPES = {8: "I8", 4: "U8"}  # the dtype of a layer's levels, by bits


def save_quantized_checkpoint(path: str | os.PathLike, quantized: QuantizedModel, tokenizer,
                              kind: str, source: dict[str, Any]) -> None:
    """Write ``quantized`` (a :class:`QuantizedModel` of a ``kind`` model), atomically."""
    arrays = {f"model.{name}": np.ascontiguousarray(value)
              for name, value in quantized.quantized_state_dict().items()}
    metadata = {"format": QUANTIZED_FORMAT, "model_kind": kind,
                "model_config": json.dumps(dataclasses.asdict(quantized.config)),
                "quantization": json.dumps(quantized.spec_dict()),
                "tokenizer": json.dumps(tokenizer.to_dict()), "source": json.dumps(source)}
    save_safetensors(path, arrays, metadata)


def _field(path: Path, metadata: dict[str, str], name: str) -> Any:
    if name not in metadata:
        raise CheckpointError(f"{path}: field {name!r} is missing: not a complete quantized "
                              "checkpoint; write one with `tinyllm quantize`")
    if name == "model_kind":
        return metadata[name]
    try:
        return json.loads(metadata[name])
    except (ValueError, RecursionError):
        raise CheckpointError(f"{path}: field {name!r} is not valid JSON") from None


def _check_spec(path: Path, values: Any) -> QuantizationSpec:
    fields = {f.name for f in dataclasses.fields(QuantizationSpec)}
    if not isinstance(values, dict) or set(values) != fields:
        raise CheckpointError(f"{path}: field 'quantization' must hold exactly {sorted(fields)}")
    group = values["group_size"]
    if type(values["bits"]) is not int or not (group is None or type(group) is int and group > 0):
        raise CheckpointError(f"{path}: field 'quantization' needs integer bits and group_size "
                              f"(or null), got {values['bits']!r} and {group!r}")
    try:
        return QuantizationSpec(**values)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: field 'quantization': {error}") from None


def _check_arrays(path: Path, kind: str, config, spec: QuantizationSpec, tensors) -> None:
    """dtypes by role, and: levels (2 per int4 byte) + float entries = the parameter count."""
    held = 0
    for name, info in tensors.items():
        if not name.startswith("model."):
            raise CheckpointError(f"{path}: array {name!r} is not named model.<name>")
        if name.endswith(".weight.q"):
            expected, per_entry = LEVEL_DTYPES[spec.bits], 2 if spec.bits == 4 else 1
        elif name.endswith(".weight.scale"):
            expected, per_entry = "F32", 0  # scales are not parameters
        else:
            expected, per_entry = "F32", 1
        if info.dtype != expected:
            raise CheckpointError(f"{path}: array {name!r} is {info.dtype}, expected {expected} "
                                  f"for bits={spec.bits}")
        held += per_entry * math.prod(info.shape)
    implied = PARAMETER_COUNTS[kind](config)
    if held != implied:
        raise CheckpointError(f"{path}: field 'model_config' describes a {kind.upper()} of "
                              f"{implied:,} parameters but the file holds {held:,}: the file is "
                              "corrupt or was edited")


def is_quantized_checkpoint(path: str | os.PathLike) -> bool:
    """True if ``path`` (a file, or a folder holding QUANTIZED_NAME) is a quantized checkpoint."""
    path = Path(path)
    if path.is_dir():
        path = path / QUANTIZED_NAME
    return path.is_file() and read_header(path).metadata.get("format") == QUANTIZED_FORMAT


def load_quantized_checkpoint(path: str | os.PathLike):
    """(QuantizedModel, tokenizer, info) of a file written by :func:`save_quantized_checkpoint`;
    ``info``: "kind", "spec", "source", "nbytes" (the arrays' bytes)."""
    path = Path(path)
    if path.is_dir():
        path = path / QUANTIZED_NAME
    header = read_header(path)
    metadata = header.metadata
    if metadata.get("format") != QUANTIZED_FORMAT:
        raise CheckpointError(f"{path} is not a quantized tinyllm checkpoint (no "
                              f"'{QUANTIZED_FORMAT}' format tag); write one with "
                              "`tinyllm quantize`")
    kind = _field(path, metadata, "model_kind")
    if kind not in MODEL_KINDS:
        raise CheckpointError(f"{path}: field 'model_kind' is {kind!r}; expected one of "
                              f"{sorted(MODEL_KINDS)}")
    values = _field(path, metadata, "model_config")
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: field 'model_config' must be a JSON object")
    config = check_config(path, kind, values)
    spec = _check_spec(path, _field(path, metadata, "quantization"))
    _check_arrays(path, kind, config, spec, header.tensors)  # from the header: nothing allocated
    tokenizer_data = _field(path, metadata, "tokenizer")
    if not isinstance(tokenizer_data, dict):
        raise CheckpointError(f"{path}: field 'tokenizer' must be a JSON object")
    check_tokenizer(path, tokenizer_data, config.vocab_size)
    try:
        tokenizer = tokenizer_from_dict(tokenizer_data)
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: field 'tokenizer' is not a tokenizer ({error})") from None
    arrays = {name[len("model."):]: array for name, array in read_arrays(header).items()}
    template = MODEL_KINDS[kind][0](config, rng=np.random.default_rng(0))  # weights replaced
    try:
        model = QuantizedModel.from_state_dict(template, arrays, spec)
    except (KeyError, ValueError) as error:
        message = error.args[0] if error.args else error
        raise CheckpointError(f"{path}: the arrays do not fit its model_config: {message}") \
            from None
    source = _field(path, metadata, "source") if "source" in metadata else None
    info = {"kind": kind, "spec": spec, "source": source,
            "nbytes": sum(int(a.nbytes) for a in arrays.values())}
    return model, tokenizer, info


def load_for_inference(path: str | os.PathLike):
    """(model, tokenizer, info) of a training checkpoint or a quantized one (by its format tag):
    what ``tinyllm sample`` reads. A folder may hold either file (the training one first)."""
    path = Path(path)
    if path.is_dir() and not (path / CHECKPOINT_NAME).exists() and (path / QUANTIZED_NAME).exists():
        path = path / QUANTIZED_NAME
    if path.is_file() and is_quantized_checkpoint(path):
        return load_quantized_checkpoint(path)
    return load_checkpoint(path)
