"""AdaGrad (Duchi, Hazan & Singer 2011), chapter 09's family; GloVe trains with it (chapter 18).

Each entry of each parameter gets its own step size, the learning rate divided by the root of the
sum of all its squared gradients so far:

    g <- g + weight_decay * theta          (optional L2 term, as in PyTorch)
    G <- G + g^2                           (G starts at initial_accumulator_value)
    theta <- theta - lr * g / (sqrt(G) + eps)

Entries with large or frequent gradients (the vectors of frequent words) take smaller steps; rare
ones keep larger steps, which is why Pennington et al. (2014) train GloVe with it (lr 0.05). With
``lr_decay = 0`` this is PyTorch's ``torch.optim.Adagrad``; GloVe's reference code starts G at 1.
The state (``step`` and ``sum`` per parameter) is saved and restored like every optimizer's.
"""

from __future__ import annotations

from typing import Any

from tinyllm.backend import get_array_module
from tinyllm.optim.optimizers import Optimizer, ParamsArg


class Adagrad(Optimizer):
    """AdaGrad: G += g^2, theta -= lr g / (sqrt(G) + eps), per entry (see the module docstring)."""

    def __init__(self, params: ParamsArg, lr: float = 1e-2, eps: float = 1e-10,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0):
        super().__init__(params, {"lr": lr, "eps": eps, "weight_decay": weight_decay,
                                  "initial_accumulator_value": initial_accumulator_value})

    def _check_settings(self, group: dict[str, Any]) -> None:
        super()._check_settings(group)
        if not group["eps"] >= 0:
            raise ValueError(f"invalid eps {group['eps']}: it must be >= 0")
        if not group["initial_accumulator_value"] >= 0:
            raise ValueError(f"invalid initial_accumulator_value "
                             f"{group['initial_accumulator_value']}: it must be >= 0 (a sum of "
                             "squares)")
        group["eps"] = float(group["eps"])
        group["initial_accumulator_value"] = float(group["initial_accumulator_value"])

    def _update(self, param, grad, state: dict[str, Any], group: dict[str, Any]) -> None:
        xp = get_array_module(param)
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * param  # a new array: p.grad stays as it was
        if not state:
            state["step"] = 0
            state["sum"] = xp.full_like(param, group["initial_accumulator_value"])
        state["step"] += 1
        scratch = xp.multiply(grad, grad)  # the one temporary array, reused below
        state["sum"] += scratch  # G_t = G_{t-1} + g_t^2
        xp.sqrt(state["sum"], out=scratch)
        scratch += group["eps"]  # sqrt(G_t) + eps
        xp.divide(grad, scratch, out=scratch)
        scratch *= group["lr"]  # lr g_t / (sqrt(G_t) + eps)
        param -= scratch
