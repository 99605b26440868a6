"""A model with quantized Linear layers, for inference (chapter 16, "Quantization").

:func:`quantize_model` copies a model and swaps every :class:`~tinyllm.nn.Linear` for a
:class:`QuantizedLinear` holding int8 (or packed int4) levels and float32 scales (eqs. 16.5-16.9);
the copy still runs ``forward`` and ``generate``, so ``tinyllm sample`` can use it unchanged. A
GPT's output layer is its token embedding (tied, logits = x W_te^T): with ``embeddings=True`` each
:class:`~tinyllm.nn.Embedding` table W (V, C) is quantized as the Linear matrix W^T (C, V) it is
in the output product (one scale per token, or per group of g channels of a token), stored as
levels and scales, and dequantized once into the float table that both the lookup and the output
product read. Everything else (LayerNorms, learned positions) stays float32.

:meth:`QuantizedModel.quantized_state_dict` gives the checkpoint plain named arrays:
``<layer>.weight.q`` (int8, or uint8 for int4), ``<layer>.weight.scale`` (float32), biases and the
float parameters by their usual names; :meth:`QuantizedModel.from_state_dict` rebuilds the model
from them and a float model of the same configuration (its weights are not used).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import asdict, dataclass

import numpy as np

from tinyllm.backend import to_device, to_numpy
from tinyllm.compress.quantize import (
    QuantizedWeight,
    dequantize,
    int8_matmul,
    max_level,
    quantize_absmax,
)
from tinyllm.nn import Embedding, Linear, Module
from tinyllm.tensor import Tensor, is_grad_enabled

MATMULS = ("dequant", "int8")


@dataclass(frozen=True)
class QuantizationSpec:
    """How a model was quantized: what a checkpoint records next to the arrays."""

    bits: int = 8  # 8 (int8) or 4 (int4, weight-only)
    group_size: int | None = None  # rows of W per scale; None: per output channel
    matmul: str = "dequant"  # "dequant" (dequantize, float product) or "int8" (integer product)
    embeddings: bool = True  # quantize the token embedding (the tied output layer) too

    def __post_init__(self):
        max_level(self.bits)  # raises for anything but 4 and 8
        if self.matmul not in MATMULS:
            raise ValueError(f"matmul must be one of {MATMULS}, got {self.matmul!r}")


class QuantizedLinear(Module):
    """y = x @ dequant(q) + b, or the int8 x int8 -> int32 product (eq. 16.8); no Parameters.

    The "dequant" path is differentiable in x (the weight is a constant); the "int8" path leaves
    the graph, so it refuses inputs that require a gradient outside ``no_grad``.
    """

    def __init__(self, qweight: QuantizedWeight, bias: np.ndarray | None, matmul: str = "dequant"):
        if matmul not in MATMULS:
            raise ValueError(f"matmul must be one of {MATMULS}, got {matmul!r}")
        self.qweight, self.bias, self.matmul = qweight, bias, matmul
        self.in_features, self.out_features = qweight.shape

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"QuantizedLinear expected inputs (..., {self.in_features}), got "
                             f"{x.shape}: the last axis must be in_features")
        if self.matmul == "dequant":
            y = x @ Tensor(dequantize(self.qweight).astype(x.dtype))  # (..., N)
            return y + Tensor(self.bias.astype(x.dtype)) if self.bias is not None else y
        if x.requires_grad and is_grad_enabled():
            raise RuntimeError("the int8 product has no gradient: run the quantized model under "
                               "`with tl.no_grad():`, or quantize with matmul='dequant'")
        rows = x.data.reshape(-1, self.in_features)  # (M, K), M = every leading position
        y = int8_matmul(rows, self.qweight)  # (M, N)
        if self.bias is not None:
            y = y + self.bias
        return Tensor(y.reshape(*x.shape[:-1], self.out_features).astype(x.dtype))  # (..., N)

    def extra_repr(self) -> str:
        q = self.qweight
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bits={q.bits}, group_size={q.group_size}, matmul={self.matmul}")


def _set_child(root: Module, dotted: str, new: Module) -> None:
    """Replace the sub-module at ``dotted`` ("blocks.0.attn.q_proj") with ``new``."""
    *path, last = dotted.split(".")
    parent = root
    for part in path:
        parent = parent[int(part)] if part.isdigit() else getattr(parent, part)
    if last.isdigit():
        parent[int(last)] = new
    else:
        setattr(parent, last, new)


def _quantized_table(qweight: QuantizedWeight) -> np.ndarray:
    """An embedding table W (V, C) from its quantized output matrix W^T (C, V)."""
    return np.ascontiguousarray(dequantize(qweight).T)  # (V, C)


class QuantizedModel(Module):
    """A model whose Linear layers are :class:`QuantizedLinear`; ``forward`` and (for a GPT)
    ``generate`` / ``generate_stream`` are the wrapped model's."""

    def __init__(self, model: Module, spec: QuantizationSpec,
                 tables: dict[str, QuantizedWeight]):
        self.model, self.spec = model, spec
        self.tables = tables  # embedding name -> the quantized W^T (C, V) behind its float table
        self.config = getattr(model, "config", None)

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def to(self, device: str) -> QuantizedModel:
        """Move the float parameters and every level, scale and bias to ``device``; returns self."""
        self.model.to(device)
        for module in self.model.modules():
            if isinstance(module, QuantizedLinear):
                q = module.qweight
                module.qweight = dataclasses.replace(q, values=to_device(q.values, device),
                                                     scales=to_device(q.scales, device))
                if module.bias is not None:
                    module.bias = to_device(module.bias, device)
        return self

    def generate(self, *args, **kwargs) -> np.ndarray:
        return self.model.generate(*args, **kwargs)

    def generate_stream(self, *args, **kwargs):
        return self.model.generate_stream(*args, **kwargs)

    def quantized_state_dict(self) -> dict[str, np.ndarray]:
        """Named plain arrays: levels and scales of every quantized matrix, biases, the rest of
        the float parameters (the float tables that ``tables`` rebuild are left out)."""
        arrays: dict[str, np.ndarray] = {}
        for name, module in self.model.named_modules():
            if isinstance(module, QuantizedLinear):
                arrays[f"{name}.weight.q"] = to_numpy(module.qweight.values)
                arrays[f"{name}.weight.scale"] = to_numpy(module.qweight.scales)
                if module.bias is not None:
                    arrays[f"{name}.bias"] = to_numpy(module.bias)
        for name, qweight in self.tables.items():
            arrays[f"{name}.weight.q"] = qweight.values
            arrays[f"{name}.weight.scale"] = qweight.scales
        tabled = {f"{name}.weight" for name in self.tables}
        for name, p in self.model.named_parameters():
            if name not in tabled:
                arrays[name] = p.numpy().copy()
        return arrays

    def spec_dict(self) -> dict:
        """The :class:`QuantizationSpec` as plain values (for a checkpoint's metadata)."""
        return asdict(self.spec)

    def nbytes(self) -> int:
        """Bytes of the arrays a checkpoint stores (levels, scales, float parameters)."""
        return sum(int(a.nbytes) for a in self.quantized_state_dict().values())

    @classmethod
    def from_state_dict(cls, template: Module, arrays: dict[str, np.ndarray],
                        spec: QuantizationSpec | dict) -> QuantizedModel:
        """Rebuild from :meth:`quantized_state_dict`: ``template`` is a float model of the same
        configuration (copied; its weights are replaced)."""
        spec = spec if isinstance(spec, QuantizationSpec) else QuantizationSpec(**spec)
        model = copy.deepcopy(template)
        for name, module in list(model.named_modules()):
            if isinstance(module, Linear):
                qweight = _stored_weight(arrays, name, spec, module.weight.shape)
                bias = arrays.get(f"{name}.bias") if module.bias is not None else None
                _set_child(model, name, QuantizedLinear(qweight, bias, spec.matmul))
        tables = {}
        for name, module in model.named_modules():
            if isinstance(module, Embedding) and spec.embeddings:
                qweight = _stored_weight(arrays, name, spec, module.weight.shape[::-1])
                tables[name] = qweight
                module.weight.data = _quantized_table(qweight).astype(module.weight.dtype)
        tabled = {f"{name}.weight" for name in tables}
        for name, p in model.named_parameters():
            if name in tabled:
                continue
            if name not in arrays:
                raise KeyError(f"quantized state lacks the float parameter {name!r}; was it "
                               "written by QuantizedModel.quantized_state_dict()?")
            p.data = np.array(arrays[name], dtype=p.dtype)
        return cls(model, spec, tables)


def _stored_weight(arrays, name: str, spec: QuantizationSpec, shape) -> QuantizedWeight:
    """The QuantizedWeight of layer ``name`` from the arrays, with its shapes checked."""
    K, N = (int(n) for n in shape)
    g = K if spec.group_size is None else spec.group_size
    values, scales = arrays.get(f"{name}.weight.q"), arrays.get(f"{name}.weight.scale")
    if values is None or scales is None:
        raise KeyError(f"quantized state lacks {name}.weight.q or {name}.weight.scale")
    rows = K // 2 if spec.bits == 4 else K
    if tuple(values.shape) != (rows, N) or tuple(scales.shape) != (K // g, N):
        raise ValueError(f"{name}: stored levels {values.shape} and scales {scales.shape}, "
                         f"expected {(rows, N)} and {(K // g, N)} for bits={spec.bits}, g={g}")
    return QuantizedWeight(np.asarray(values), np.asarray(scales, dtype=np.float32), spec.bits, g,
                           (K, N))


def quantize_model(model: Module, bits: int = 8, group_size: int | None = None,
                   matmul: str = "dequant", embeddings: bool = True) -> QuantizedModel:
    """A quantized copy of ``model`` for inference (``model`` itself is not changed).

    Every Linear weight (K, N) is quantized with :func:`quantize_absmax` (``bits``,
    ``group_size``; None: per output channel); with ``embeddings`` every Embedding table too, as
    its output matrix W^T (C, V). ``matmul`` picks the product of :class:`QuantizedLinear`.
    """
    spec = QuantizationSpec(bits, group_size, matmul, embeddings)
    copied = copy.deepcopy(model)
    for name, module in list(copied.named_modules()):
        if isinstance(module, Linear):
            qweight = quantize_absmax(module.weight.numpy(), bits, group_size)
            bias = module.bias.numpy().copy() if module.bias is not None else None
            _set_child(copied, name, QuantizedLinear(qweight, bias, matmul))
    tables = {}
    for name, module in copied.named_modules():
        if isinstance(module, Embedding) and embeddings:
            qweight = quantize_absmax(module.weight.numpy().T, bits, group_size)  # W^T (C, V)
            tables[name] = qweight
            module.weight.data = _quantized_table(qweight).astype(module.weight.dtype)
    return QuantizedModel(copied, spec, tables)
