"""Activation functions of the feed-forward network: GELU and ReLU (chapter 08, section 8.4).

GELU (Hendrycks & Gimpel, 2016) weights its input by the probability that a standard normal variable
lies below it:

    GELU(x) = x Phi(x) = x/2 (1 + erf(x / sqrt(2)))                                       (eq. 8.10)
    GELU'(x) = Phi(x) + x phi(x),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)                   (eq. 8.11)

and its tanh approximation (from the same paper), used by GPT-2 ("gelu_new" in Hugging Face
configurations):

    GELU_tanh(x) = x/2 (1 + tanh(u)),   u = sqrt(2/pi) (x + 0.044715 x^3)                 (eq. 8.12)
    GELU_tanh'(x) = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) sqrt(2/pi) (1 + 0.134145 x^2)     (eq. 8.13)

BERT's original code used the exact erf form ("gelu" in Hugging Face configurations), as do
PyTorch's ``nn.GELU()`` by default and our reference GPT; to reproduce GPT-2's outputs choose
``approximate="tanh"``. The two differ by at most 4.7e-4 (at |x| ~ 2.70).

``gelu`` is one fused op per form; ``gelu_composed`` builds the same functions from primitive ops
(the chapter's starting point, used to test and benchmark the fused ops). ``relu`` is the engine's
ReLU.
"""

from __future__ import annotations

import math

from tinyllm.backend import get_array_module
from tinyllm.creation import erf
from tinyllm.nn.module import Module
from tinyllm.special import normal_cdf_array
from tinyllm.tensor import Function, Tensor, apply

_SQRT_HALF = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_TANH_COEF = 0.044715
APPROXIMATIONS = ("none", "tanh")


class GELUFunction(Function):
    """y = x Phi(x) (eq. 8.10);  dL/dx = g * (Phi(x) + x phi(x))  (eq. 8.11)

    Phi is ``normal_cdf_array``: Cody's erfc in float64 (relative error ~1e-15, also in the left
    tail), Abramowitz & Stegun 7.1.26 in float32 (error about 2.4e-7). Saves x (the input, held
    by the graph anyway) and Phi(x).
    """

    def forward(self, x):
        cdf = normal_cdf_array(x)  # Phi(x) = erfc(-x / sqrt 2) / 2
        self.x, self.cdf = x, cdf
        return x * cdf

    def backward(self, grad):
        xp = get_array_module(grad)
        x = self.x
        local = x * x
        local *= -0.5
        local = xp.exp(local)
        local *= x
        local *= _INV_SQRT_2PI  # x phi(x)
        local += self.cdf  # Phi(x) + x phi(x), eq. 8.11
        local *= grad
        return local


class GELUTanh(Function):
    """y = x/2 (1 + tanh u), u = sqrt(2/pi)(x + 0.044715 x^3)  (eq. 8.12);  dL/dx = g * eq. 8.13

    Saves x and tanh(u).
    """

    def forward(self, x):
        xp = get_array_module(x)
        inner = x * x
        inner *= _TANH_COEF
        inner += 1.0
        inner *= x
        inner *= _SQRT_2_OVER_PI  # u
        th = xp.tanh(inner)  # tanh(u)
        self.x, self.tanh_u = x, th
        y = th + 1.0
        y *= x
        y *= 0.5
        return y

    def backward(self, grad):
        x, th = self.x, self.tanh_u
        du_dx = x * x
        du_dx *= 3 * _TANH_COEF
        du_dx += 1.0
        du_dx *= _SQRT_2_OVER_PI  # sqrt(2/pi) (1 + 3 c x^2)
        local = th * th
        local -= 1.0
        local *= -0.5
        local *= x
        local *= du_dx  # x/2 (1 - tanh^2 u) du/dx
        local += 0.5 * th
        local += 0.5  # eq. 8.13
        local *= grad
        return local


def _check_approximate(approximate: str) -> None:
    if approximate not in APPROXIMATIONS:
        raise ValueError(
            "gelu approximate must be 'none' (exact erf form) or 'tanh' (GPT-2's form), "
            f"got {approximate!r}"
        )


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU(x) = x Phi(x), exact (eq. 8.10, ``approximate="none"``) or GPT-2's tanh form (eq. 8.12).

    One fused op each (:class:`GELUFunction`, :class:`GELUTanh`).
    """
    _check_approximate(approximate)
    if approximate == "tanh":
        return apply(GELUTanh(), x)
    return apply(GELUFunction(), x)


def gelu_composed(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU from primitive ops (``tl.erf``, ``tanh``).

    The chapter's starting point; used to test and benchmark the fused :func:`gelu`.
    """
    _check_approximate(approximate)
    if approximate == "tanh":
        u = (x + x * x * x * _TANH_COEF) * _SQRT_2_OVER_PI
        return x * 0.5 * (u.tanh() + 1.0)
    return x * 0.5 * (erf(x * _SQRT_HALF) + 1.0)


def relu(x: Tensor) -> Tensor:
    """ReLU(x) = max(x, 0), the engine's op (``Tensor.relu``), here so that ``F.relu`` sits by
    ``F.gelu``."""
    return x.relu()


class GELU(Module):
    """The GELU activation as a layer; ``approximate="tanh"`` for GPT-2's form."""

    def __init__(self, approximate: str = "none"):
        _check_approximate(approximate)
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class ReLU(Module):
    """The ReLU activation as a layer."""

    def forward(self, x: Tensor) -> Tensor:
        return relu(x)
