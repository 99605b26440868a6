"""Optimizers, learning-rate schedules and gradient clipping (chapter 09).

Read in this order: ``optimizers.py`` (the Optimizer base, SGD, Adam, AdamW, parameter groups and
the state a checkpoint needs, as a dict), ``schedules.py`` (warm-up + cosine, inverse square root),
``clipping.py`` (global norm).

    from tinyllm import optim
    optimizer = optim.AdamW(optim.param_groups_for_weight_decay(model, 0.1), lr=3e-4)
    for step in range(total_steps):
        optim.set_lr(optimizer, optim.warmup_cosine(step, 3e-4, 3e-5, 100, total_steps))
        loss = model.loss(*batch)    # k micro-batches: (loss / k).backward() k times, then step
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        optimizer.zero_grad()

``tinyllm.train.train_step`` is this loop body, with an ``LRScheduler`` setting the rate.
"""

from tinyllm.optim.adagrad import Adagrad  # AdaGrad, for GloVe (chapter 18)
from tinyllm.optim.clipping import clip_grad_norm_
from tinyllm.optim.optimizers import (
    SGD,
    Adam,
    AdamW,
    Optimizer,
    param_groups_for_weight_decay,
)
from tinyllm.optim.schedules import LRScheduler, inverse_sqrt, set_lr, warmup_cosine

__all__ = [
    "SGD",
    "Adam",
    "Adagrad",
    "AdamW",
    "LRScheduler",
    "Optimizer",
    "clip_grad_norm_",
    "inverse_sqrt",
    "param_groups_for_weight_decay",
    "set_lr",
    "warmup_cosine",
]
