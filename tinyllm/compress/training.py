"""What chapter 16 changes in a training run: mixed precision and pruning masks (chapter 16).

``tinyllm.train`` builds one :class:`RunCompression` per run from ``TrainConfig.precision`` and
the masks a pruned checkpoint holds (``tinyllm prune``); with "fp32" and no masks it does nothing.

- ``precision`` "fp16" or "bf16": each step is :func:`~tinyllm.compress.mixed_precision_step`
  (float32 master weights, a low-precision compute copy, dynamic loss scaling for float16). A step
  whose *gradients* overflow is skipped and the loss scale halved (eq. 16.4): that is the loss
  scaler doing its job, not a diverging run, so it is no ``NonFiniteError``. Two overflows are:
  a float16 *forward* that overflows (the loss itself is inf or nan: the activations passed 65504,
  which no loss scale can fix), and an overflow with the scale already below 1 (or with the
  scaler off, as in bf16): then the gradients themselves are not finite.
- ``masks`` (parameter name -> boolean array, True = kept): after every optimizer step the pruned
  weights are set to zero again (:func:`~tinyllm.compress.apply_masks`, eq. 16.12), so they stay
  exactly zero through fine-tuning, however AdamW's moments and weight decay would move them.

Both go into the checkpoint (:meth:`RunCompression.checkpoint_state`): the loss scaler's state as
metadata and the masks as ``mask.<name>`` arrays, so ``--resume`` continues the run exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tinyllm import optim
from tinyllm.backend import to_device
from tinyllm.compress.mixed import MixedPrecision, mixed_precision_step
from tinyllm.compress.precision import check_precision
from tinyllm.compress.prune import apply_masks
from tinyllm.nn import Module
from tinyllm.runs import NonFiniteError

MIN_LOSS_SCALE = 1.0  # an overflow at S < 1 is not the scale's fault: the gradients are inf


class RunCompression:
    """The precision and the pruning masks of one training run (module docstring)."""

    def __init__(self, model: Module, precision: str = "fp32",
                 masks: dict[str, np.ndarray] | None = None,
                 scaler_state: dict[str, Any] | None = None):
        check_precision(precision)
        self.model, self.precision = model, precision
        self.mixed = MixedPrecision(model, precision) if precision != "fp32" else None
        if scaler_state is not None and self.mixed is not None:
            self.mixed.scaler.load_state_dict(scaler_state)  # an exact resume
        self.masks = {name: np.asarray(mask, dtype=bool) for name, mask in (masks or {}).items()}
        self._on_device: dict[str, Any] = {}
        if self.masks:
            self.place_masks()

    def place_masks(self) -> None:
        """Copy the masks to the model's device once (not once per step), and apply them."""
        own = dict(self.model.named_parameters())
        self._on_device = {name: to_device(mask, own[name].device) if name in own else mask
                           for name, mask in self.masks.items()}
        apply_masks(self.model, self._on_device)  # also checks names and shapes

    def step(self, task, data_rng: np.random.Generator, optimizer: optim.Optimizer,
             scheduler: optim.LRScheduler, grad_clip: float, grad_accum: int) -> float:
        """One mixed-precision step; returns the training loss (skipped steps included)."""
        result = mixed_precision_step(self.mixed, task, data_rng, optimizer, scheduler,
                                      grad_clip, grad_accum)
        if not math.isfinite(result.loss):
            raise NonFiniteError(f"the training loss is {result.loss} in the {self.precision} "
                                 "forward pass (activations beyond the format's range, which "
                                 "no loss scale fixes); train with --precision bf16 or fp32")
        scaler = self.mixed.scaler
        if not result.stepped and (not scaler.enabled or scaler.loss_scale < MIN_LOSS_SCALE):
            raise NonFiniteError(f"the gradients are not finite at loss scale "
                                 f"{result.loss_scale:g} (not a float16 range problem)")
        return result.loss

    def after_step(self) -> None:
        """w <- m * w for every masked weight: pruned weights stay exactly zero."""
        if self._on_device:
            apply_masks(self.model, self._on_device)

    @property
    def skipped_steps(self) -> int:
        """Steps skipped for a float16 gradient overflow over the whole run (0 without fp16)."""
        return self.mixed.scaler.skipped_steps if self.mixed is not None else 0

    def checkpoint_state(self) -> dict[str, Any]:
        """``save_checkpoint``'s ``masks`` and ``loss_scaler`` arguments (None when unused)."""
        scaler = self.mixed.scaler.state_dict() if self.mixed is not None else None
        return {"masks": self.masks or None, "loss_scaler": scaler}
