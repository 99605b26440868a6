"""Learning-rate schedules: plain functions of the step (chapter 09, "Learning-rate schedules").

Steps count from 0 (the first update is step 0). A schedule returns a learning rate; ``set_lr``
writes it into every parameter group, and ``LRScheduler`` does both once per training step:

    for step in range(total_steps):
        set_lr(optimizer, warmup_cosine(step, max_lr=1e-3, min_lr=1e-4, warmup_steps=100,
                                        total_steps=5000))
        ...  # forward, backward, optimizer.step()
"""

from __future__ import annotations

import math
from typing import Any, Callable

from tinyllm.optim.optimizers import Optimizer


def warmup_cosine(step: int, max_lr: float, min_lr: float, warmup_steps: int,
                  total_steps: int) -> float:
    """Linear warm-up to ``max_lr``, then half a cosine down to ``min_lr`` (eq. 9.11).

    step < warmup:  lr = max_lr (step + 1) / (warmup + 1)
    otherwise:      r = min((step - warmup) / max(total - warmup, 1), 1)
                    lr = min_lr + (1 + cos(pi r)) / 2 * (max_lr - min_lr)

    The peak ``max_lr`` is reached at ``step == warmup_steps``, ``min_lr`` from ``total_steps`` on.
    """
    if step < 0 or warmup_steps < 0:
        raise ValueError(f"step and warmup_steps must be >= 0, got step={step}, "
                         f"warmup_steps={warmup_steps}")
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def inverse_sqrt(step: int, d_model: int, warmup_steps: int) -> float:
    """The original Transformer's schedule (Vaswani et al. 2017, eq. 3; our eq. 9.12):

    lr = d_model^-0.5 * min((step + 1)^-0.5, (step + 1) * warmup^-1.5)

    The paper counts steps from 1, so it is evaluated at ``step + 1``: the rate rises linearly for
    the first ``warmup_steps`` updates, peaks at d_model^-0.5 * warmup^-0.5 on update number
    ``warmup_steps`` (our ``step == warmup_steps - 1``), then decays like 1/sqrt(step).
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if warmup_steps <= 0 or d_model <= 0:
        raise ValueError(f"d_model and warmup_steps must be > 0, got {d_model} and {warmup_steps}")
    n = step + 1
    return d_model ** -0.5 * min(n ** -0.5, n * warmup_steps ** -1.5)


def set_lr(optimizer: Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group of ``optimizer`` to ``lr``."""
    if not lr >= 0:
        raise ValueError(f"invalid learning rate {lr}: it must be >= 0")
    for group in optimizer.param_groups:
        group["lr"] = float(lr)


class LRScheduler:
    """Applies ``schedule(step)`` to an optimizer once per training step.

    Call ``scheduler.step()`` before each ``optimizer.step()``: it sets the rate for the current
    step (0, 1, 2, ...) and returns it. Its one number of state, ``step_count``, goes into a
    checkpoint.

        schedule = functools.partial(warmup_cosine, max_lr=1e-3, min_lr=1e-4, warmup_steps=100,
                                     total_steps=5000)
        scheduler = LRScheduler(optimizer, schedule)
    """

    def __init__(self, optimizer: Optimizer, schedule: Callable[[int], float]):
        self.optimizer, self.schedule = optimizer, schedule
        self.step_count = 0  # the step whose rate the next call to step() sets

    def step(self) -> float:
        lr = self.schedule(self.step_count)
        set_lr(self.optimizer, lr)
        self.step_count += 1
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
