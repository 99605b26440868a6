"""Checkpoints: everything tinyllm writes to disk and reads back, without pickle (chapter 09).

Read in this order:

- ``safetensors.py``: the file format (arrays + string metadata), written atomically, read with a
  clear ``CheckpointError`` for every file the reference reader refuses (``strict_json.py``: its
  header's JSON, parsed as strictly as the reference does);
- ``states.py``: a model's and an optimizer's state in a file (``save_model`` / ``load_model``,
  ``save_optimizer`` / ``load_optimizer``); the layers and optimizers themselves only give and take
  dicts;
- ``training.py``: the checkpoint of a training run (model, optimizer, schedule, random generators,
  tokenizer, settings), from which ``tinyllm train --resume`` continues bit for bit;
  ``validate.py`` checks its metadata against the header before anything is allocated;
- ``quantized.py`` (chapter 16): a quantized model's int8 / int4 levels and scales for inference,
  written by ``tinyllm quantize``; ``load_for_inference`` reads either kind of checkpoint.
"""

from tinyllm.checkpoint.quantized import (
    QUANTIZED_FORMAT,
    QUANTIZED_NAME,
    is_quantized_checkpoint,
    load_for_inference,
    load_quantized_checkpoint,
    save_quantized_checkpoint,
)
from tinyllm.checkpoint.safetensors import CheckpointError, load_safetensors, save_safetensors
from tinyllm.checkpoint.states import (
    load_model,
    load_optimizer,
    optimizer_state_from_arrays,
    optimizer_state_to_arrays,
    save_model,
    save_optimizer,
)
from tinyllm.checkpoint.training import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    generator_states,
    load_checkpoint,
    restore_generators,
    save_checkpoint,
    saved_settings,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "CheckpointError",
    "QUANTIZED_FORMAT",
    "QUANTIZED_NAME",
    "generator_states",
    "is_quantized_checkpoint",
    "load_checkpoint",
    "load_for_inference",
    "load_model",
    "load_optimizer",
    "load_quantized_checkpoint",
    "load_safetensors",
    "optimizer_state_from_arrays",
    "optimizer_state_to_arrays",
    "restore_generators",
    "save_checkpoint",
    "save_model",
    "save_optimizer",
    "save_quantized_checkpoint",
    "save_safetensors",
    "saved_settings",
]
