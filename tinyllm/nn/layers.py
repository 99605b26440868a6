"""Linear and Dropout, the two simplest layers (chapter 08, "The Transformer block").

``Linear`` computes x @ W + b with W stored as (in_features, out_features), so the code reads like the math
(a row vector times a matrix). Its gradient needs no new op: MatMul and Add already know theirs.
"""

from __future__ import annotations

import math

import numpy as np

from tinyllm.backend import get_array_module
from tinyllm.creation import default_rng
from tinyllm.nn.module import Module, Parameter
from tinyllm.tensor import DEFAULT_DTYPE, Function, Tensor


class Linear(Module):
    """y = x @ weight + bias, with ``weight`` of shape (in_features, out_features).

    Initialised like PyTorch's default: every entry uniform in [-1/sqrt(in_features), 1/sqrt(in_features)],
    which keeps the output variance close to the input's (models such as GPT re-initialise their weights).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 rng: np.random.Generator | None = None, dtype=DEFAULT_DTYPE):
        rng = rng or default_rng()
        bound = 1 / math.sqrt(in_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(rng.uniform(-bound, bound, (in_features, out_features)).astype(dtype))
        self.bias = Parameter(rng.uniform(-bound, bound, out_features).astype(dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear expected inputs (..., {self.in_features}), got {x.shape}: the last axis must be "
                "in_features"
            )
        y = x @ self.weight  # (..., out_features)
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class DropoutFunction(Function):
    """y = x * m / (1 - p) with m_i ~ Bernoulli(1 - p);  dL/dx = g * m / (1 - p)

    Scaling by 1/(1 - p) keeps E[y] = x, so nothing changes at evaluation time, when dropout is off.
    """

    def __init__(self, p: float, rng: np.random.Generator):
        self.p, self.rng = p, rng

    def forward(self, x):
        xp = get_array_module(x)
        keep = self.rng.random(x.shape) >= self.p  # drawn on the host, so a seed fixes it on any device
        self.scale = xp.asarray(keep, dtype=x.dtype) / (1 - self.p)
        return x * self.scale

    def backward(self, grad):
        return grad * self.scale


def dropout(x: Tensor, p: float, training: bool = True, rng: np.random.Generator | None = None) -> Tensor:
    """Zero each entry with probability ``p`` and scale the rest by 1/(1-p) in training; identity
    otherwise."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    return DropoutFunction(p, rng or default_rng()).apply(x)


class Dropout(Module):
    """Dropout layer with its own seeded generator: ``Dropout(0.1, rng=np.random.default_rng(0))``."""

    def __init__(self, p: float = 0.1, rng: np.random.Generator | None = None):
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.rng = rng or np.random.default_rng()

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training, self.rng)

    def extra_repr(self) -> str:
        return f"p={self.p}"
