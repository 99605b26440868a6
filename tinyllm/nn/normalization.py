"""Layer normalisation (chapter 08, sections 8.1 and 8.2).

Each token's feature vector x (the last axis, C entries) is standardised on its own, then scaled and
shifted:

    mu = mean(x),   sigma^2 = mean((x - mu)^2)   (biased, as PyTorch)            (eq. 8.1, 8.2)
    x_hat = (x - mu) / sqrt(sigma^2 + eps)                                        (eq. 8.3)
    y = x_hat * gamma + beta                                                      (eq. 8.4)

``layer_norm`` is ONE fused op whose backward is the formula derived in the chapter (eq. 8.5-8.7);
``layer_norm_composed`` builds the same function from primitive Tensor ops: it is the chapter's
starting point, used to test and benchmark the fused op.
"""

from __future__ import annotations

import numpy as np

from tinyllm.backend import get_array_module
from tinyllm.nn.module import Module, Parameter
from tinyllm.tensor import DEFAULT_DTYPE, Function, Tensor, apply


class LayerNormFunction(Function):
    """y = x_hat * gamma + beta over the last axis, x_hat = (x - mu) / sigma_hat (eqs. 8.1-8.4)

    with sigma_hat = sqrt(var + eps). Gradients (chapter 08, eqs. 8.5 and 8.7), with g = dL/dy and
    g_hat = g * gamma, sums over the leading axes and means over C:

        dL/dgamma = sum of g * x_hat,     dL/dbeta = sum of g
        dL/dx = (1 / sigma_hat) * (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat))

    Inputs: x (..., C), then gamma (C,) if ``has_weight``, then beta (C,) if ``has_bias``. The
    forward saves only x_hat (..., C) and 1/sigma_hat (..., 1) (and a reference to gamma, which
    exists anyway).
    """

    def __init__(self, eps: float, has_weight: bool, has_bias: bool):
        self.eps, self.has_weight, self.has_bias = eps, has_weight, has_bias

    def forward(self, x, *params):
        xp = get_array_module(x)
        weight = params[0] if self.has_weight else None
        bias = params[-1] if self.has_bias else None
        x_hat = x - x.mean(axis=-1, keepdims=True)  # (..., C), a fresh array we may overwrite
        out = xp.multiply(x_hat, x_hat)  # (..., C), reused below as the output buffer
        rstd = out.mean(axis=-1, keepdims=True)  # (..., 1) the biased variance, eq. 8.2
        rstd += self.eps
        xp.sqrt(rstd, out=rstd)
        xp.reciprocal(rstd, out=rstd)  # (..., 1) 1 / sigma_hat
        x_hat *= rstd  # eq. 8.3
        if weight is not None:
            xp.multiply(x_hat, weight, out=out)  # eq. 8.4
        else:
            out[...] = x_hat
        if bias is not None:
            out += bias
        self.x_hat, self.rstd, self.weight = x_hat, rstd, weight
        return out

    def backward(self, grad):
        xp = get_array_module(grad)
        x_hat, rstd, weight = self.x_hat, self.rstd, self.weight
        width = x_hat.shape[-1]
        grads = []
        g_xhat = grad * x_hat  # (..., C) g * x_hat; summed it is dL/dgamma
        if weight is not None:
            grads.append(g_xhat.reshape(-1, width).sum(axis=0))  # (C,) eq. 8.5
            g_xhat *= weight  # (..., C) now g_hat * x_hat
            g_hat = grad * weight  # (..., C)
        else:
            g_hat = grad  # not ours to overwrite: read only
        mean_g_hat = g_hat.mean(axis=-1, keepdims=True)  # (..., 1)
        mean_g_xhat = g_xhat.mean(axis=-1, keepdims=True)  # (..., 1)
        grad_x = xp.multiply(x_hat, mean_g_xhat, out=g_xhat)  # (..., C) reuse the buffer
        xp.subtract(g_hat, grad_x, out=grad_x)
        grad_x -= mean_g_hat
        grad_x *= rstd  # eq. 8.7
        if self.has_bias:
            grads.append(grad.reshape(-1, width).sum(axis=0))  # (C,) eq. 8.5
        return (grad_x, *grads)


def _check_layer_norm_inputs(x: Tensor, weight: Tensor | None, bias: Tensor | None) -> None:
    if x.ndim == 0:
        raise ValueError("layer_norm expected inputs (..., C) with at least one axis, got a scalar")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            f"layer_norm needs floating-point inputs, got dtype {x.dtype}; cast with .astype"
        )
    width = x.shape[-1]
    for name, param in (("weight", weight), ("bias", bias)):
        if param is not None and param.shape != (width,):
            raise ValueError(
                f"layer_norm {name} expected shape (C,) = ({width},) to match inputs (..., C) = "
                f"{x.shape}, "
                f"got {param.shape}"
            )


def layer_norm(x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalise x (..., C) over its last axis, scale by ``weight``, shift by ``bias`` (8.1-8.4).

    One fused op (:class:`LayerNormFunction`) with the chapter's backward (eq. 8.7). ``weight`` and
    ``bias`` are (C,) or None (no scale / no shift: GPT's LayerNorm can be built without bias).

    >>> y = layer_norm(tl.randn(2, 3, 8))      # every row of y has mean 0 and variance ~1
    """
    _check_layer_norm_inputs(x, weight, bias)
    params = [p for p in (weight, bias) if p is not None]
    return apply(LayerNormFunction(eps, weight is not None, bias is not None), x, *params)


def layer_norm_composed(x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None,
                        eps: float = 1e-5) -> Tensor:
    """The same function as :func:`layer_norm` from primitive ops (eqs. 8.1-8.4), differentiated by
    the engine.

    The chapter's starting point; used to test and benchmark the fused op.
    """
    _check_layer_norm_inputs(x, weight, bias)
    centered = x - x.mean(axis=-1, keepdims=True)  # (..., C)
    variance = (centered * centered).mean(axis=-1, keepdims=True)  # (..., 1)
    y = centered / (variance + eps).sqrt()  # (..., C)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


class LayerNorm(Module):
    """LayerNorm over the last axis (width ``d_model``): ``weight`` gamma (ones), ``bias`` beta (0).

    ``bias=False`` leaves ``bias = None`` (a scale but no shift). At initialisation the layer is the
    plain standardisation x_hat of eq. 8.3.
    """

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True, dtype=DEFAULT_DTYPE):
        if d_model < 1:
            raise ValueError(f"LayerNorm d_model must be a positive width C, got {d_model}")
        self.d_model, self.eps = d_model, eps
        self.weight = Parameter(np.ones(d_model, dtype=dtype))
        self.bias = Parameter(np.zeros(d_model, dtype=dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return layer_norm(x, self.weight, self.bias, self.eps)  # (..., C)

    def _check_input(self, x: Tensor) -> None:
        if x.ndim == 0 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"LayerNorm(d_model={self.d_model}) expected inputs (..., C) with "
                f"C = {self.d_model}, got {x.shape}"
            )

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, eps={self.eps}, bias={self.bias is not None}"
