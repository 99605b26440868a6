"""Reference solutions of exercises/08_transformer_block.py. Try the exercises first."""

from __future__ import annotations

from tinyllm.backend import get_array_module


def linear_forward(self, x):
    """y = x W + b"""
    y = x @ self.weight  # (..., in_features) @ (in_features, out_features)
    return y + self.bias if self.bias is not None else y


def layer_norm_forward(self, x, *params):
    """x_hat = (x - mu) / sqrt(var + eps), y = x_hat gamma + beta   (eqs. 8.1-8.4)"""
    xp = get_array_module(x)
    weight = params[0] if self.has_weight else None
    bias = params[-1] if self.has_bias else None
    centred = x - x.mean(axis=-1, keepdims=True)  # (..., C)
    self.rstd = 1 / xp.sqrt((centred * centred).mean(axis=-1, keepdims=True) + self.eps)  # (..., 1)
    self.x_hat, self.weight = centred * self.rstd, weight
    out = self.x_hat * weight if weight is not None else self.x_hat.copy()
    return out + bias if bias is not None else out


def layer_norm_backward(self, grad):
    """dx = rstd (g_hat - mean g_hat - x_hat mean(g_hat x_hat)); dgamma, dbeta sums (8.5, 8.7)"""
    width = self.x_hat.shape[-1]
    g_hat = grad * self.weight if self.weight is not None else grad  # (..., C)
    grad_x = self.rstd * (g_hat - g_hat.mean(axis=-1, keepdims=True)
                          - self.x_hat * (g_hat * self.x_hat).mean(axis=-1, keepdims=True))
    grads = [grad_x]
    if self.has_weight:
        grads.append((grad * self.x_hat).reshape(-1, width).sum(axis=0))  # (C,)
    if self.has_bias:
        grads.append(grad.reshape(-1, width).sum(axis=0))  # (C,)
    return tuple(grads)
