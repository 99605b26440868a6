"""A Trainer for fine-tuning, in the spirit of Hugging Face's (chapter 14).

    trainer = Trainer(model, train_dataset, eval_dataset, compute_metrics, TrainerConfig(...))
    metrics = trainer.train(test_dataset=test)     # or train(resume=True) after an interruption

Each step is ``tinyllm.train.train_step``, the step of ``tinyllm train``: the schedule sets the
rate, forward and backward on one batch, the global gradient norm clipped, AdamW, the gradients
zeroed. Around it the Trainer adds what fine-tuning needs:

- epochs over the training set, in a fresh random order each epoch (drawn from the data generator);
- the rate: linear warm-up over ``warmup_ratio`` of all steps, then linear decay to 0 (Hugging
  Face's default) or half a cosine (eq. 9.11);
- AdamW with weight decay on matrices only, not on biases and LayerNorm parameters
  (``optim.param_groups_for_weight_decay``), on the model's trainable parameters only (a frozen
  encoder is not in the optimizer);
- after every epoch, ``compute_metrics(logits, labels)`` on the evaluation set; the weights of the
  best epoch by ``config.metric`` are kept in ``best.safetensors``, and loaded back at the end;
- early stopping: ``patience`` epochs in a row without a better metric end the training;
- ``checkpoint.safetensors`` after every epoch (and on Ctrl-C, SIGTERM, SIGHUP: mid-epoch): the
  weights, the optimizer's moments, the schedule, every random generator, the epoch's order and
  position in it, the best so far and the history; ``resume=True`` continues bit for bit;
- ``metrics.json`` (the per-epoch history, the best epoch, the test metrics) and ``confusion.png``.

The run folder follows ``tinyllm.runs``: locked, never overwritten without ``overwrite``, written
atomically, a non-finite loss stops the run before anything is saved.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tinyllm import optim, runs
from tinyllm.autograd import no_grad
from tinyllm.backend import to_numpy
from tinyllm.checkpoint import (
    CHECKPOINT_NAME,
    generator_states,
    load_safetensors,
    optimizer_state_from_arrays,
    optimizer_state_to_arrays,
    restore_generators,
    save_model,
    save_safetensors,
)
from tinyllm.checkpoint.safetensors import CheckpointError
from tinyllm.finetune.report import plot_confusion
from tinyllm.nn import Module
from tinyllm.train import train_step

FINETUNE_FORMAT = "tinyllm-finetune-1"
BEST_NAME = "best.safetensors"  # the weights of the best epoch
CONFUSION_NAME = "confusion.png"
SCHEDULES = ("linear", "cosine")


@dataclass(frozen=True)
class TrainerConfig:
    """Fine-tuning settings. Defaults: BERT's fine-tuning recipe (Devlin et al. 2019, A.3)."""

    epochs: int = 3  # passes over the training set
    batch_size: int = 16  # examples per step
    eval_batch_size: int = 64  # examples per forward pass when evaluating
    lr: float = 5e-5  # peak learning rate, reached after the warm-up
    warmup_ratio: float = 0.1  # fraction of all steps spent warming up linearly
    schedule: str = "linear"  # after the warm-up: "linear" decay to 0, or "cosine" to 0
    weight_decay: float = 0.01  # AdamW decay on matrices (not on biases and LayerNorms)
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.999  # AdamW second-moment decay
    grad_clip: float = 1.0  # clip the global gradient norm to this (0: off)
    metric: str = "macro_f1"  # a key of compute_metrics' result that picks the best epoch
    patience: int = 0  # stop after this many epochs without a better metric (0: never)
    seed: int = 1337  # epoch orders and dropout
    device: str = "cpu"  # "cpu" or "cuda"
    out_dir: str = "runs/finetune"  # checkpoint, best weights, metrics, confusion matrix

    def check(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0 (0: no early stopping), got {self.patience}")


def warmup_linear(step: int, max_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up, then linear decay to 0 at ``total_steps`` (eq. 14.8; the warm-up as in
    eq. 9.11): step < warmup: max_lr (step + 1) / (warmup + 1); else
    max_lr max(0, (total - step) / max(total - warmup, 1))."""
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    return max_lr * max(0.0, (total_steps - step) / max(total_steps - warmup_steps, 1))


class EpochBatches:
    """The training set as ``train_step`` reads it: ``batch("train", rng)`` gives the next batch of
    the epoch's order, a permutation drawn from ``rng`` when an epoch begins; ``position`` is 0
    again once the epoch is done."""

    def __init__(self, dataset, batch_size: int):
        self.dataset, self.batch_size = dataset, batch_size
        self.order, self.position = np.arange(len(dataset)), 0

    def batch(self, split: str, rng: np.random.Generator) -> dict:
        if self.position == 0:
            self.order = rng.permutation(len(self.dataset))  # (N,)
        chosen = self.order[self.position:self.position + self.batch_size]  # (B,)
        self.position = (self.position + len(chosen)) % len(self.dataset)
        return self.dataset.batch(chosen)

    def loss(self, model: Module, batch: dict):
        return model.loss(batch)


class Trainer:
    """Fine-tunes ``model`` (a Module with ``model(batch)`` -> logits (B, K) and ``loss(batch)``)
    on ``train_dataset``; see the module docstring. ``compute_metrics(logits, labels)`` -> a dict
    of numbers that holds ``config.metric``."""

    def __init__(self, model: Module, train_dataset, eval_dataset,
                 compute_metrics: Callable[[np.ndarray, np.ndarray], dict],
                 config: TrainerConfig = TrainerConfig(), label_names=None, log=print,
                 run_info: dict | None = None):
        config.check()
        if len(train_dataset) == 0 or len(eval_dataset) == 0:
            raise ValueError("the training and evaluation sets must not be empty")
        self.model, self.train_dataset, self.eval_dataset = model, train_dataset, eval_dataset
        self.compute_metrics, self.config, self.log = compute_metrics, config, log
        self.label_names = label_names
        self.run_info = dict(run_info or {})  # what built the model and data: saved, checked
        self.out_dir = Path(config.out_dir)
        self.steps_per_epoch = math.ceil(len(train_dataset) / config.batch_size)
        self.total_steps = config.epochs * self.steps_per_epoch
        trainable = getattr(model, "trainable_parameters", model.parameters)()
        self.optimizer = optim.AdamW(optim.param_groups_for_weight_decay(
            trainable, config.weight_decay), lr=config.lr, betas=(config.beta1, config.beta2))
        warmup = int(config.warmup_ratio * self.total_steps)
        schedule = (functools.partial(warmup_linear, max_lr=config.lr, warmup_steps=warmup,
                                      total_steps=self.total_steps)
                    if config.schedule == "linear" else
                    functools.partial(optim.warmup_cosine, max_lr=config.lr, min_lr=0.0,
                                      warmup_steps=warmup, total_steps=self.total_steps))
        self.scheduler = optim.LRScheduler(self.optimizer, schedule)
        self.batches = EpochBatches(train_dataset, config.batch_size)
        self.data_rng = np.random.default_rng(config.seed)
        self.greater_is_better = config.metric != "loss"
        self.state = {"step": 0, "epoch": 0, "best_metric": None, "best_epoch": None,
                      "bad_epochs": 0, "stopped_early": False, "history": [],
                      "epoch_losses": []}  # the training losses of the epoch under way

    # ------------------------------------------------------------------ evaluation
    def predict(self, dataset) -> np.ndarray:
        """Logits (N, K) on the host, in the dataset's order, in evaluation mode (no dropout)."""
        was_training, rows = self.model.training, []
        self.model.eval()
        try:
            with no_grad():
                for start in range(0, len(dataset), self.config.eval_batch_size):
                    indices = np.arange(start, min(start + self.config.eval_batch_size,
                                                   len(dataset)))
                    rows.append(to_numpy(self.model(dataset.batch(indices)).data))  # (B, K)
        finally:
            self.model.train(was_training)
        return np.concatenate(rows)  # (N, K)

    def evaluate(self, dataset) -> dict:
        return self.compute_metrics(self.predict(dataset), dataset.labels)

    def _improved(self, value: float) -> bool:
        best = self.state["best_metric"]
        return best is None or (value > best if self.greater_is_better else value < best)

    # ------------------------------------------------------------------ checkpoints
    def _save(self) -> None:
        arrays = {f"model.{name}": value for name, value in self.model.state_dict().items()}
        optimizer_arrays, optimizer_numbers = optimizer_state_to_arrays(
            self.optimizer.state_dict())
        arrays.update(optimizer_arrays)
        arrays["task.order"] = np.asarray(self.batches.order, dtype=np.int64)
        metadata = {"format": FINETUNE_FORMAT,
                    "trainer_config": json.dumps(dataclasses.asdict(self.config)),
                    "trainer_state": json.dumps(runs.finite_or_none(
                        {**self.state, "position": self.batches.position})),
                    "run_info": json.dumps(runs.finite_or_none(self.run_info)),
                    "generators": json.dumps(generator_states(self.model, self.data_rng)),
                    "optimizer": json.dumps(optimizer_numbers),
                    "scheduler": json.dumps(self.scheduler.state_dict())}
        save_safetensors(self.out_dir / CHECKPOINT_NAME, arrays, metadata)

    def _load(self) -> None:
        path = self.out_dir / CHECKPOINT_NAME
        arrays, metadata = load_safetensors(path)
        if metadata.get("format") != FINETUNE_FORMAT:
            raise CheckpointError(f"{path} is not a fine-tuning checkpoint (no '{FINETUNE_FORMAT}'"
                                  " format tag): resume a folder written by the Trainer")
        runs.check_settings(json.loads(metadata["trainer_config"]),
                            dataclasses.asdict(self.config), path)
        runs.check_settings(json.loads(metadata.get("run_info", "{}")),
                            runs.finite_or_none(self.run_info), path)
        self.model.load_state_dict({k[len("model."):]: v for k, v in arrays.items()
                                    if k.startswith("model.")})
        self.optimizer.load_state_dict(
            optimizer_state_from_arrays(arrays, json.loads(metadata["optimizer"])))
        self.scheduler.load_state_dict(json.loads(metadata["scheduler"]))
        restore_generators(json.loads(metadata["generators"]), self.model, self.data_rng)
        state = json.loads(metadata["trainer_state"])
        self.batches.order, self.batches.position = arrays["task.order"], state.pop("position")
        self.state = state

    # ------------------------------------------------------------------ the loop
    def train(self, resume: bool = False, overwrite: bool = False, test_dataset=None,
              progress: bool = True, on_step: Callable[[int], None] | None = None) -> dict:
        """Train (or continue the run in ``out_dir``), then evaluate the best epoch's weights on
        ``test_dataset`` if given; returns what ``metrics.json`` holds, or
        ``{"interrupted": True, ...}`` if a signal stopped the run (its checkpoint saved).
        ``on_step(step)`` is called after every step."""
        with runs.claim_run_folder(self.out_dir, resume=resume, overwrite=overwrite):
            if resume:
                self._load()
            self.model.to(self.config.device).train()
            return self._train(test_dataset, progress, on_step, first_save=not resume)

    def _train(self, test_dataset, progress: bool, on_step, first_save: bool) -> dict:
        config, state = self.config, self.state
        guard = runs.NonFiniteGuard(self.out_dir / CHECKPOINT_NAME, config.lr,
                                    saved_step=None if first_save else state["step"])
        stop = runs.StopRequest().install()
        bar = _progress_bar(progress, self.total_steps, state["step"])
        started = time.perf_counter()
        try:
            while state["epoch"] < config.epochs and not state["stopped_early"]:
                if stop.requested:
                    break
                with guard.at_step(state["step"] + 1):
                    loss = train_step(self.model, self.batches, self.data_rng, self.optimizer,
                                      self.scheduler, config.grad_clip, grad_accum=1)
                state["step"] += 1
                state["epoch_losses"].append(loss)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=state["epoch"] + 1, loss=f"{loss:.3f}")
                if on_step is not None:
                    on_step(state["step"])
                if self.batches.position == 0:  # the epoch is done
                    self._end_epoch(bar)
                    self._checkpoint(guard)
        finally:
            stop.uninstall()
            if bar is not None:
                bar.close()
        if stop.requested:
            self._checkpoint(guard)
            self.log(f"interrupted at step {state['step']}: checkpoint saved to "
                     f"{self.out_dir / CHECKPOINT_NAME}; continue with resume")
            return {"interrupted": True, "step": state["step"], "epoch": state["epoch"]}
        return self._finish(test_dataset, time.perf_counter() - started)

    def _end_epoch(self, bar) -> None:
        state = self.state
        epoch_losses, state["epoch_losses"] = state["epoch_losses"], []
        state["epoch"] += 1
        metrics = self.evaluate(self.eval_dataset)
        if self.config.metric not in metrics:
            raise ValueError(f"compute_metrics gave no {self.config.metric!r} (it gave "
                             f"{sorted(metrics)}): choose the metric among those")
        value = float(metrics[self.config.metric])
        state["history"].append({"epoch": state["epoch"], "step": state["step"],
                                 "train_loss": float(np.mean(epoch_losses)) if epoch_losses
                                 else None,
                                 "lr": self.optimizer.param_groups[0]["lr"],
                                 **{f"eval_{k}": v for k, v in metrics.items()}})
        if self._improved(value):
            state["best_metric"], state["best_epoch"], state["bad_epochs"] = \
                value, state["epoch"], 0
            save_model(self.out_dir / BEST_NAME, self.model,
                       {"epoch": str(state["epoch"]), self.config.metric: repr(value)})
        else:
            state["bad_epochs"] += 1
            if self.config.patience and state["bad_epochs"] >= self.config.patience:
                state["stopped_early"] = True
        message = (f"epoch {state['epoch']}: eval {self.config.metric} {value:.4f} (best "
                   f"{state['best_metric']:.4f}, epoch {state['best_epoch']})"
                   + (", early stop" if state["stopped_early"] else ""))
        if bar is not None:
            bar.write(message)
        else:
            self.log(message)

    def _checkpoint(self, guard: runs.NonFiniteGuard) -> None:
        guard.check_weights(self.model, self.state["step"])
        self._save()
        if guard.saved(self.state["step"]):  # this run's first save: a replaced run's results go
            runs.remove_stale_results(self.out_dir)
            (self.out_dir / CONFUSION_NAME).unlink(missing_ok=True)

    def _finish(self, test_dataset, wall: float) -> dict:
        state = self.state
        if (self.out_dir / BEST_NAME).is_file():  # Hugging Face's load_best_model_at_end
            self.model.load_state_dict(load_safetensors(self.out_dir / BEST_NAME)[0])
        metrics = {**self.run_info, "metric": self.config.metric,
                   "best_metric": state["best_metric"],
                   "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
                   "steps": state["step"], "stopped_early": state["stopped_early"],
                   "train_examples": len(self.train_dataset), "wall_s": round(wall, 2),
                   "history": state["history"], "config": dataclasses.asdict(self.config)}
        if test_dataset is not None:
            started = time.perf_counter()
            metrics["test"] = self.evaluate(test_dataset)
            metrics["test_wall_s"] = round(time.perf_counter() - started, 2)
            if "confusion" in metrics["test"] and self.label_names is not None:
                plot_confusion(metrics["test"]["confusion"], self.label_names,
                               self.out_dir / CONFUSION_NAME,
                               title=f"test, best epoch {state['best_epoch']}")
        return runs.write_json(self.out_dir / runs.METRICS_NAME, metrics)


def _progress_bar(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)
