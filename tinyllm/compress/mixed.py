"""Mixed-precision training: low-precision compute, float32 master weights (chapter 16).

Micikevicius et al. 2018 ("Mixed Precision Training", ICLR) keep three things apart:

1. the *master* weights theta, in float32: the optimizer updates them, so a small update
   lr * m / sqrt(v) that float16 would round away (below 2^-11 of the weight, eq. 16.1) still
   counts;
2. a *compute copy* round(theta) in float16 (or bfloat16) for the forward and backward passes;
3. a float32 loss: the logits are cast to float32 before the cross-entropy, so the log-sum-exp and
   the scaled seed gradient S * dL/dL do not overflow float16 (S = 2^16 > 65504 would).

One step (:func:`mixed_precision_step`, the same pieces as ``tinyllm.train.train_step``):

    with mixed.compute_weights():        theta_16 = round(theta_32)   (every parameter)
        (S * L(theta_16)).backward()      gradients in float16, times S  (eq. 16.2)
    on leaving: theta_32 comes back and every gradient is cast to float32
    if scaler.unscale_and_check(...):    g = g / S, all finite?
        clip, optimizer.step()           update the float32 master weights
    scaler.update()                      halve S on overflow, double it after N clean steps

bfloat16 is emulated (NumPy has none): the compute copy and the gradients are rounded to bfloat16
values (:func:`round_to_bfloat16`) but the arithmetic runs in float32, as bfloat16 hardware
accumulates its products in float32. Its range is float32's, so its loss scaler is off (S = 1).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from tinyllm import optim
from tinyllm.compress.precision import (
    LossScaler,
    check_precision,
    round_to_bfloat16,
    round_to_precision,
)
from tinyllm.nn import Module
from tinyllm.tensor import Tensor


class Float32Output(Module):
    """``model`` whose floating outputs (logits, loss) are cast to float32: a differentiable Cast,
    so the backward hands the compute copy its gradient in the compute dtype again."""

    def __init__(self, model: Module):
        self.model = model

    def forward(self, *args, **kwargs):
        out = self.model(*args, **kwargs)
        if isinstance(out, tuple):
            return tuple(_as_float32(item) for item in out)
        return _as_float32(out)


def _as_float32(value):
    if isinstance(value, Tensor) and np.issubdtype(value.dtype, np.floating) \
            and value.dtype != np.float32:
        return value.astype(np.float32)
    return value


class MixedPrecision:
    """A model's float32 master weights with a compute copy in ``precision`` ("fp16", "bf16" or
    "fp32", the last a no-op for comparisons), and the :class:`LossScaler` of the run.

    The model's Parameters stay the optimizer's: :meth:`compute_weights` swaps each one's array for
    its low-precision copy and swaps the master back afterwards, so no second model is built.
    ``forward_model`` is the model with float32 outputs; pass it to ``task.loss``.
    """

    def __init__(self, model: Module, precision: str = "fp16", scaler: LossScaler | None = None):
        check_precision(precision)
        wrong = sorted({str(p.dtype) for p in model.parameters()} - {"float32", "float64"})
        if wrong:
            raise TypeError(f"MixedPrecision needs float32 master weights, got {wrong}; build "
                            "the model in float32 (the default) and let MixedPrecision cast it")
        self.model, self.precision = model, precision
        self.scaler = scaler if scaler is not None else LossScaler(enabled=precision == "fp16")
        self.forward_model = Float32Output(model)

    @contextlib.contextmanager
    def compute_weights(self) -> Iterator[None]:
        """Inside: every parameter holds round(theta) in the compute precision. On leaving (also
        on an error): the master arrays come back, gradients are cast to the master dtype (and, for
        bf16, rounded to bfloat16 values first)."""
        params = self.model.parameters()
        masters = [p.data for p in params]
        for p in params:
            p.data = round_to_precision(p.data, self.precision)
        try:
            yield
        finally:
            for p, master in zip(params, masters):
                p.data = master
                if p.grad is not None:
                    grad = p.grad.data
                    grad = round_to_bfloat16(grad) if self.precision == "bf16" else grad
                    p.grad = Tensor(grad.astype(master.dtype))

    def evaluate(self, task, split: str, iters: int, seed: int) -> dict[str, float]:
        """``task.evaluate`` with the compute copy: the loss the low-precision model reaches."""
        with self.compute_weights():
            return task.evaluate(self.forward_model, split, iters, seed)


@dataclass(frozen=True)
class MixedStep:
    """What one :func:`mixed_precision_step` did."""

    loss: float  # the unscaled training loss (mean over the micro-batches); inf/nan on overflow
    stepped: bool  # False: a gradient overflowed, the step was skipped, weights unchanged
    loss_scale: float  # S used for this step (the scaler's next S may differ)


def mixed_precision_step(mixed: MixedPrecision, task, data_rng: np.random.Generator,
                         optimizer: optim.Optimizer, scheduler: optim.LRScheduler,
                         grad_clip: float, grad_accum: int) -> MixedStep:
    """``train_step`` in mixed precision: schedule, k scaled micro-batches, unscale, check, clip,
    step or skip, update the scaler (see the module docstring for the order).

    As in PyTorch's GradScaler, the learning-rate schedule advances on a skipped step too. The
    micro-batches' gradients add up in the compute dtype (scaled), then go to float32 once.
    """
    scheduler.step()
    scale, loss_sum = mixed.scaler.loss_scale, 0.0
    with mixed.compute_weights(), np.errstate(over="ignore", invalid="ignore"):  # inf: skip
        for _ in range(grad_accum):
            loss = task.loss(mixed.forward_model, task.batch("train", data_rng)) / grad_accum
            mixed.scaler.scale(loss).backward()  # d(S L)/d theta_16   (eq. 16.2)
            loss_sum += loss.item()
    params = mixed.model.parameters()
    stepped = mixed.scaler.unscale_and_check(params)
    if stepped:
        if grad_clip > 0:
            optim.clip_grad_norm_(params, grad_clip)
        optimizer.step()
    optimizer.zero_grad()
    mixed.scaler.update()
    return MixedStep(loss=loss_sum, stepped=stepped, loss_scale=scale)
