"""Linear and Dropout, the two simplest layers (chapter 08, "The Transformer block").

``Linear`` computes x @ W + b with W stored as (in_features, out_features), so the code reads like
the math (a row vector times a matrix). Its gradient needs no new op: MatMul and Add already know
theirs.
"""

from __future__ import annotations

import math

import numpy as np

from tinyllm.backend import get_array_module
from tinyllm.creation import default_rng, spawn_rng, uniform
from tinyllm.nn.module import Module, Parameter
from tinyllm.tensor import DEFAULT_DTYPE, Function, Tensor, apply


class Linear(Module):
    """y = x @ weight + bias, with ``weight`` of shape (in_features, out_features).

    Initialised like PyTorch's default: every entry uniform in [-1/sqrt(in_features),
    1/sqrt(in_features)], which keeps the output variance close to the input's (models such as GPT
    re-initialise their weights).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 rng: np.random.Generator | None = None, dtype=DEFAULT_DTYPE):
        rng = rng or default_rng()
        bound = 1 / math.sqrt(in_features)
        self.in_features, self.out_features = in_features, out_features
        weight = rng.uniform(-bound, bound, (in_features, out_features))
        self.weight = Parameter(weight.astype(dtype))
        self.bias = None
        if bias:
            self.bias = Parameter(rng.uniform(-bound, bound, out_features).astype(dtype))

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        y = x @ self.weight  # (..., in_features) @ (in_features, out_features)
        return y + self.bias if self.bias is not None else y

    def _check_input(self, x: Tensor) -> None:
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear expected inputs (..., {self.in_features}), got {x.shape}: the last axis "
                "must be in_features"
            )

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
        keep = uniform(x.shape, self.rng, xp) >= self.p  # drawn on x's device, seeded by rng
        self.scale = keep.astype(x.dtype) / (1 - self.p)
        return x * self.scale

    def backward(self, grad):
        return grad * self.scale


def check_dropout(p: float, name: str = "dropout") -> None:
    """Refuse a probability outside [0, 1): p = 1 would drop everything and scale by 1/0."""
    if not 0 <= p < 1:
        raise ValueError(f"{name} probability must be in [0, 1), got {p}")


def dropout(x: Tensor, p: float, training: bool = True,
            rng: np.random.Generator | None = None) -> Tensor:
    """Zero each entry with probability ``p`` and scale the rest by 1/(1-p) in training; identity
    otherwise. The mask comes from ``rng``, or from the generator seeded by ``tl.manual_seed``."""
    check_dropout(p)
    if not training or p == 0:
        return x
    return apply(DropoutFunction(p, rng or default_rng()), x)


class Dropout(Module):
    """Dropout as a layer, with a generator of its own for the masks.

    ``rng`` is that generator; without one the layer spawns it from the generator seeded by
    ``tl.manual_seed``, so ``tl.manual_seed(0); nn.Dropout(0.5)(x)`` gives the same mask every run.
    """

    def __init__(self, p: float = 0.1, rng: np.random.Generator | None = None):
        check_dropout(p)
        self.p = p
        self.rng = rng if rng is not None else spawn_rng()

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training, self.rng)

    def extra_repr(self) -> str:
        return f"p={self.p}"
