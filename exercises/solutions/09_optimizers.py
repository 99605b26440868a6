"""Reference solutions of exercises/09_optimizers.py. Try the exercises first."""

from __future__ import annotations

import math

from tinyllm.backend import get_array_module
from tinyllm.tensor import Tensor


def sgd_update(self, param, grad, state, group):
    """eqs. 9.1-9.4"""
    lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
    if weight_decay != 0:
        grad = grad + weight_decay * param  # a new array: p.grad stays untouched
    if momentum != 0:
        buffer = state.get("momentum_buffer")
        buffer = grad.copy() if buffer is None else momentum * buffer + grad  # b_t
        state["momentum_buffer"] = buffer
        grad = grad + momentum * buffer if group["nesterov"] else buffer
    param -= lr * grad


def adam_update(self, param, grad, state, group):
    """eqs. 9.4, 9.6-9.10"""
    xp = get_array_module(param)
    lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
    if not state:
        state["step"], state["m"], state["v"] = 0, xp.zeros_like(param), xp.zeros_like(param)
    state["step"] += 1
    t = state["step"]
    if group["weight_decay"] != 0:
        if self.decoupled_weight_decay:
            param *= 1 - lr * group["weight_decay"]  # AdamW, eq. 9.10
        else:
            grad = grad + group["weight_decay"] * param  # Adam, eq. 9.4
    state["m"] = beta1 * state["m"] + (1 - beta1) * grad
    state["v"] = beta2 * state["v"] + (1 - beta2) * grad * grad
    denom = xp.sqrt(state["v"]) / math.sqrt(1 - beta2 ** t) + eps
    param -= lr / (1 - beta1 ** t) * state["m"] / denom


def warmup_cosine(step, max_lr, min_lr, warmup_steps, total_steps):
    """eq. 9.11"""
    if step < 0 or warmup_steps < 0:
        raise ValueError(f"step and warmup_steps must be >= 0, got step={step}, "
                         f"warmup_steps={warmup_steps}")
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def clip_grad_norm_(params, max_norm):
    """eq. 9.13"""
    params = [params] if isinstance(params, Tensor) else list(params)
    grads = [p.grad for p in params if p.grad is not None]
    total = math.sqrt(sum(float((g.data.astype("float64") ** 2).sum()) for g in grads))
    scale = max_norm / (total + 1e-6)
    if scale < 1:
        for g in grads:
            g.data *= g.dtype.type(scale)
    return total
