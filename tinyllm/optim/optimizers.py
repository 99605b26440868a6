"""SGD, Adam and AdamW on raw arrays, and the optimizer state a checkpoint needs (chapter 09).

An optimizer holds ``param_groups``: a list of dicts, each with ``"params"`` (a list of Parameters)
and that group's settings (``lr``, ``weight_decay``, ...), so one model can train matrices with
weight decay and biases without (``param_groups_for_weight_decay``). ``step()`` updates every
parameter that has a gradient, in place, with whole-array NumPy (CuPy on a GPU); the moment buffers
live in ``state``, keyed by the parameter's index (its position when the groups are read in order),
which is what makes the state savable:

    optimizer = AdamW(param_groups_for_weight_decay(model, 0.1), lr=3e-4)
    loss.backward(); optimizer.step(); optimizer.zero_grad()
    state = optimizer.state_dict()           # moments as arrays, step and settings as numbers
    optimizer.load_state_dict(state)         # files: tinyllm.checkpoint.save_optimizer / load_...

Each ``_update`` is the chapter's formula line by line; in-place ops on buffers the optimizer owns
keep the number of temporary arrays at one per parameter per step, and float32 stays float32
(Python-float scalars).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from tinyllm.backend import get_array_module, to_device, to_numpy
from tinyllm.nn.module import Module
from tinyllm.tensor import Tensor, no_grad

ParamsArg = Iterable[Tensor] | Iterable[dict[str, Any]]


class Optimizer:
    """Base class: parameter groups, ``zero_grad``, ``step`` (``_update`` each), state dicts.

    ``params`` is an iterable of Parameters, or a list of group dicts
    ``{"params": [...], "lr": ...}`` whose missing settings come from the optimizer's arguments
    (``defaults``), as in PyTorch. A subclass defines ``_update(param, grad, state, group)``, which
    changes the array ``param`` in place.
    """

    def __init__(self, params: ParamsArg, defaults: dict[str, Any]):
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}  # parameter index -> buffers and update count
        self.step_count = 0  # number of step() calls so far
        for group in _as_groups(params):
            self.add_param_group(group)
        if not any(group["params"] for group in self.param_groups):
            raise ValueError(
                f"{type(self).__name__} got an empty parameter list: pass model.parameters() of a "
                "model that has parameters"
            )

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Append a group (e.g. for fine-tuning); its parameters get the next indices."""
        if "params" not in group:
            raise ValueError(f"a parameter group needs a 'params' entry, got keys {sorted(group)}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for other in self.param_groups for p in other["params"]}
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"an optimizer updates Tensors (model.parameters()), got a {type(p).__name__}"
                )
            if not p.is_leaf:
                raise ValueError("cannot optimize a tensor made by an op; pass the leaf Parameters")
            if id(p) in seen:
                raise ValueError("a parameter appears twice in the optimizer's groups; "
                                 "list each once")
            seen.add(id(p))
        full_group = {**self.defaults, **group, "params": params}
        self._check_settings(full_group)
        self.param_groups.append(full_group)

    def _check_settings(self, group: dict[str, Any]) -> None:
        """Validate one group's settings (subclasses add theirs); store numbers as Python floats."""
        if not group["lr"] >= 0:
            raise ValueError(f"invalid learning rate {group['lr']}: it must be >= 0")
        if not group["weight_decay"] >= 0:
            raise ValueError(f"invalid weight_decay {group['weight_decay']}: it must be >= 0")
        group["lr"], group["weight_decay"] = float(group["lr"]), float(group["weight_decay"])

    def indexed_params(self) -> Iterable[tuple[int, dict[str, Any], Tensor]]:
        """(index, group, parameter) for every parameter, indices counting through the groups."""
        index = 0
        for group in self.param_groups:
            for p in group["params"]:
                yield index, group, p
                index += 1

    def zero_grad(self) -> None:
        """Forget every gradient (``p.grad = None``), so the next backward starts from zero."""
        for _, _, p in self.indexed_params():
            p.grad = None

    def step(self) -> None:
        """One update of every parameter that has a gradient (``grad None``: skipped)."""
        with no_grad():
            for index, group, p in self.indexed_params():
                if p.grad is not None:
                    self._update(p.data, p.grad.data, self.state.setdefault(index, {}), group)
        self.step_count += 1

    # --- state for checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs, as host NumPy arrays (copies) and plain numbers.

        ``{"type": "AdamW", "step_count": 6, "param_groups": [{"lr": ..., "params": [0, 1]}, ...],
        "state": {0: {"step": 6, "m": array, "v": array}, ...}}``; groups name their parameters by
        index.
        """
        groups, index = [], 0
        for group in self.param_groups:
            settings = {key: value for key, value in group.items() if key != "params"}
            settings["params"] = list(range(index, index + len(group["params"])))
            index += len(group["params"])
            groups.append(settings)
        state = {
            i: {name: value if _is_number(value) else to_numpy(value).copy()
                for name, value in entry.items()}
            for i, entry in self.state.items()
        }
        return {"type": type(self).__name__, "step_count": self.step_count, "param_groups": groups,
                "state": state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (arrays are copied to each parameter's dtype and device).

        The optimizer must have been built with the same parameter groups (sizes and order) as the
        saved one; the saved settings, including ``lr``, replace the current ones.
        """
        if state.get("type") != type(self).__name__:
            raise ValueError(
                f"this optimizer state was saved by {state.get('type')}, "
                f"not by {type(self).__name__}"
            )
        saved_sizes = [len(group["params"]) for group in state["param_groups"]]
        own_sizes = [len(group["params"]) for group in self.param_groups]
        if saved_sizes != own_sizes:
            raise ValueError(
                f"the optimizer state has parameter groups of sizes {saved_sizes}, this optimizer "
                f"{own_sizes}: build it with the same parameters and groups as the one that was "
                "saved"
            )
        params = [p for _, _, p in self.indexed_params()]
        restored: dict[int, dict[str, Any]] = {}
        for key, entry in state["state"].items():
            index = int(key)
            if not 0 <= index < len(params):
                raise ValueError(f"the optimizer state names parameter {index}, "
                                 f"but there are {len(params)}")
            p, buffers = params[index], {}
            for name, value in entry.items():
                if _is_number(value):
                    buffers[name] = value.item() if isinstance(value, np.generic) else value
                    continue
                value = to_numpy(value)
                if value.shape != p.shape:
                    raise ValueError(
                        f"optimizer state {name!r} of parameter {index} has shape {value.shape}, "
                        f"the parameter has {p.shape}"
                    )
                buffers[name] = to_device(np.array(value, dtype=p.dtype), p.device)  # a copy we own
            restored[index] = buffers
        for group, saved in zip(self.param_groups, state["param_groups"]):
            for key, value in saved.items():
                if key != "params":
                    group[key] = tuple(value) if isinstance(value, list) else value
            self._check_settings(group)
        self.state = restored
        self.step_count = int(state["step_count"])

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}("]
        for i, group in enumerate(self.param_groups):
            settings = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} parameters, {settings}")
        return "\n".join(lines) + "\n)"


def _is_number(value) -> bool:
    return isinstance(value, (bool, int, float, np.integer, np.floating))


def _as_groups(params: ParamsArg) -> list[dict[str, Any]]:
    """The optimizer's ``params`` argument as a list of group dicts."""
    if isinstance(params, Tensor):
        raise TypeError("params must be an iterable of Parameters, got one Tensor: "
                        "wrap it in a list, [p]")
    if isinstance(params, Module):
        raise TypeError("params must be an iterable of Parameters, got a Module: "
                        "pass model.parameters()")
    items = list(params)
    if not items:
        raise ValueError("optimizer got an empty parameter list: pass model.parameters()")
    if all(isinstance(item, dict) for item in items):
        return items
    if any(isinstance(item, dict) for item in items):
        raise TypeError("params mixes Parameters and group dicts: give either one or the other")
    return [{"params": items}]


def param_groups_for_weight_decay(model: Module | Iterable[Tensor],
                                  weight_decay: float) -> list[dict]:
    """Two groups, the GPT/nanoGPT convention: matrices (ndim >= 2: linear and embedding weights)
    decay with ``weight_decay``; vectors (biases, LayerNorm gains and shifts) do not, since
    shrinking a gain or a shift toward 0 is not a useful prior. Empty groups are left out. Pass the
    result to the optimizer.
    """
    params = model.parameters() if isinstance(model, Module) else list(model)
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": float(weight_decay)})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


# --------------------------------------------------------------------------------------------------
# The optimizers
# --------------------------------------------------------------------------------------------------


class SGD(Optimizer):
    """Stochastic gradient descent, optional momentum (heavy ball or Nesterov), L2 weight decay.

    g <- g + weight_decay * theta                 (eq. 9.4, L2 regularisation, as in PyTorch) b <-
    momentum * b + g                          (eq. 9.2, b starts at 0, so b_1 = g_1) theta <- theta
    - lr * b                        (eq. 9.2; with nesterov: lr * (g + momentum * b), eq. 9.3)
    Without momentum: theta <- theta - lr * g      (eq. 9.1)
    """

    def __init__(self, params: ParamsArg, lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                                  "nesterov": nesterov})

    def _check_settings(self, group: dict[str, Any]) -> None:
        super()._check_settings(group)
        if not group["momentum"] >= 0:
            raise ValueError(f"invalid momentum {group['momentum']}: it must be >= 0")
        if group["nesterov"] and group["momentum"] <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0, got momentum=0")
        group["momentum"] = float(group["momentum"])

    def _update(self, param, grad, state: dict[str, Any], group: dict[str, Any]) -> None:
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        if weight_decay != 0:
            grad = grad + weight_decay * param  # a new array: p.grad stays as backward made it
        if momentum != 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = get_array_module(param).zeros_like(param)
            buffer = state["momentum_buffer"]
            buffer *= momentum
            buffer += grad  # b_t = mu b_{t-1} + g_t
            grad = grad + momentum * buffer if group["nesterov"] else buffer
        param -= lr * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), PyTorch's bias correction, L2 weight decay added to the gradient.

    g <- g + weight_decay * theta                                       (eq. 9.4, only in Adam)
    m <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2      (eq. 9.6)
    theta <- theta - lr/(1 - beta1^t) * m / (sqrt(v)/sqrt(1 - beta2^t) + eps)   (eqs. 9.8, 9.9)

    t counts the updates this parameter has received (``state[i]["step"]``), as in PyTorch.
    """

    decoupled_weight_decay = False  # AdamW: True, decay the weights, not the gradient (eq. 9.10)

    def __init__(self, params: ParamsArg, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay})

    def _check_settings(self, group: dict[str, Any]) -> None:
        super()._check_settings(group)
        betas = tuple(group["betas"])
        if len(betas) != 2 or not all(0 <= beta < 1 for beta in betas):
            raise ValueError(f"invalid betas {betas}: need two numbers in [0, 1), "
                             "e.g. (0.9, 0.999)")
        if not group["eps"] >= 0:
            raise ValueError(f"invalid eps {group['eps']}: it must be >= 0")
        group["betas"], group["eps"] = (float(betas[0]), float(betas[1])), float(group["eps"])

    def _update(self, param, grad, state: dict[str, Any], group: dict[str, Any]) -> None:
        xp = get_array_module(param)
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        weight_decay = group["weight_decay"]
        if not state:
            state["step"], state["m"], state["v"] = 0, xp.zeros_like(param), xp.zeros_like(param)
        state["step"] += 1
        t, m, v = state["step"], state["m"], state["v"]
        if weight_decay != 0:
            if self.decoupled_weight_decay:
                param *= 1 - lr * weight_decay  # AdamW: theta <- theta - lr lambda theta (9.10)
            else:
                grad = grad + weight_decay * param  # Adam: L2 term in the gradient (eq. 9.4)
        scratch = xp.empty_like(param)  # the one temporary array, reused below
        xp.multiply(grad, 1 - beta1, out=scratch)
        m *= beta1
        m += scratch  # m_t = beta1 m_{t-1} + (1 - beta1) g_t
        xp.multiply(grad, grad, out=scratch)
        scratch *= 1 - beta2
        v *= beta2
        v += scratch  # v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
        xp.sqrt(v, out=scratch)
        scratch /= math.sqrt(1 - beta2 ** t)
        scratch += eps  # sqrt(v_hat) + eps
        xp.divide(m, scratch, out=scratch)
        scratch *= lr / (1 - beta1 ** t)  # lr * m_hat / (sqrt(v_hat) + eps)
        param -= scratch


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), in PyTorch's order:

    theta <- theta * (1 - lr * weight_decay)      (eq. 9.10), then the Adam update of eqs. 9.6-9.9
    without any L2 term in the gradient, so every weight shrinks at the same rate whatever its
    gradient history.
    """

    decoupled_weight_decay = True

    def __init__(self, params: ParamsArg, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

