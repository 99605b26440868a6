"""Efficient models (chapter 16): mixed precision, quantization, distillation and pruning.

Read in this order:

- ``precision.py``: float16, bfloat16 (emulated by rounding float32 bit patterns) and the dynamic
  :class:`LossScaler` (Micikevicius et al. 2018); ``mixed.py``: float32 master weights with a
  low-precision compute copy, and :func:`mixed_precision_step`, the mixed-precision train step;
- ``quantize.py``: symmetric absmax int8 / int4 per output channel or per group, the dequantized
  and the int8 x int8 -> int32 products; ``quantized_model.py``: :func:`quantize_model`;
- ``distill.py``: the temperature-softened distillation loss (Hinton et al. 2015);
- ``prune.py``: global magnitude pruning with named masks (Han et al. 2015); ``heads.py``:
  attention-head importance and head pruning (Michel et al. 2019).
"""

from tinyllm.compress.distill import (
    DistillationTask,
    distillation_kl,
    distillation_kl_composed,
    distillation_loss,
)
from tinyllm.compress.heads import (
    head_gates,
    head_importance,
    head_weight_masks,
    heads_to_remove,
)
from tinyllm.compress.mixed import MixedPrecision, MixedStep, mixed_precision_step
from tinyllm.compress.precision import (
    PRECISIONS,
    LossScaler,
    bfloat16_bits,
    bfloat16_to_float32,
    round_to_bfloat16,
)
from tinyllm.compress.prune import (
    apply_masks,
    combine_masks,
    magnitude_masks,
    mask_gradients,
    masks_from_arrays,
    masks_to_arrays,
    sparsity,
)
from tinyllm.compress.quantize import (
    QuantizedWeight,
    dequantize,
    dequantized_matmul,
    int8_matmul,
    pack_int4,
    quantize_absmax,
    unpack_int4,
)
from tinyllm.compress.quantized_model import (
    QuantizationSpec,
    QuantizedLinear,
    QuantizedModel,
    quantize_model,
)

__all__ = [
    "PRECISIONS",
    "DistillationTask",
    "LossScaler",
    "MixedPrecision",
    "MixedStep",
    "QuantizationSpec",
    "QuantizedLinear",
    "QuantizedModel",
    "QuantizedWeight",
    "apply_masks",
    "bfloat16_bits",
    "bfloat16_to_float32",
    "combine_masks",
    "dequantize",
    "dequantized_matmul",
    "distillation_kl",
    "distillation_kl_composed",
    "distillation_loss",
    "head_gates",
    "head_importance",
    "head_weight_masks",
    "heads_to_remove",
    "int8_matmul",
    "magnitude_masks",
    "mask_gradients",
    "masks_from_arrays",
    "masks_to_arrays",
    "mixed_precision_step",
    "pack_int4",
    "quantize_absmax",
    "quantize_model",
    "round_to_bfloat16",
    "sparsity",
    "unpack_int4",
]
