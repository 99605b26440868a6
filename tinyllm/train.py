"""One training loop for GPT, BERT and the LSTM (chapter 11, "Training"; 09 for the optimizer).

    for step in range(iters):                                       train_step:
        set the learning rate from the warm-up + cosine schedule        scheduler.step()
        for k micro-batches: loss = task.loss(model, batch) / k;        accumulate_gradients
            loss.backward()                  (gradient accumulation)
        clip the global gradient norm; AdamW step; zero the gradients   apply_update
        every eval_interval steps: validation loss (and perplexity; for BERT masked-token accuracy)

:func:`train_step` is the one training step: ``tinyllm train`` runs it, and so do the benchmark and
the profiler behind ``tinyllm bench``. A run writes to ``out_dir``: ``checkpoint.safetensors``
(everything an exact resume needs, ``tinyllm.checkpoint.training``), ``loss.png`` and
``metrics.json``. Ctrl-C (or SIGTERM, SIGHUP) finishes the current step, saves a checkpoint and
stops; ``resume`` continues from it and gives the same losses as a run that was never interrupted.
``tinyllm.runs`` keeps the folder safe: locked, never silently replaced, data checked, no NaN saved.
The recipe (``TrainConfig``, the presets, the builders) is ``tinyllm.recipe``; a task with a state
of its own (truncated BPTT's position and carried state) saves it in the checkpoint too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time
from pathlib import Path

import numpy as np

from tinyllm import distributed, optim, runs
from tinyllm.backend import get_array_module, to_numpy
from tinyllm.checkpoint import (  # noqa: F401 (load_checkpoint: chapter 12 imports it from here)
    CHECKPOINT_NAME,
    load_checkpoint,
    restore_generators,
    save_checkpoint,
)
from tinyllm.compress.training import RunCompression
from tinyllm.nn import Module
from tinyllm.recipe import (  # noqa: F401 (the recipe, importable from here as before)
    TRAIN_PRESETS,
    TrainConfig,
    build_model,
    build_optimizer,
    build_scheduler,
    build_task,
    build_tokenizer,
    data_fingerprint,
    load_texts,
    model_config,
    saved_train_config,
)
from tinyllm.runtime import keep_freed_memory

# --------------------------------------------------------------------------------------------------
# The training step
# --------------------------------------------------------------------------------------------------


def accumulate_gradients(model: Module, task, data_rng: np.random.Generator, grad_accum: int,
                         ranks=distributed.SINGLE_PROCESS):
    """Forward and backward over ``grad_accum`` micro-batches; returns the mean of their losses,
    a 0-d float64 array on the model's device (summed there: no transfer, no wait).

    Each micro-batch's loss is divided by k = grad_accum before its backward, so the gradients that
    add up in ``p.grad`` are those of the mean loss over the k micro-batches (eq. 9.14). Under MPI
    (``ranks``: ``tinyllm.distributed``) the W ranks draw all W k micro-batches, each computes its
    k, and the gradients and losses are summed over the ranks (eq. 17.1).
    """
    count = grad_accum * ranks.size  # micro-batches in the step, over all ranks
    loss_sum = None
    for index in range(count):
        batch = task.batch("train", data_rng)  # every rank draws every batch: one stream
        if index % ranks.size != ranks.rank:
            continue
        loss = task.loss(model, batch) / count
        loss.backward()
        term = loss.data.astype(np.float64)  # () float64: the sum a Python float would make
        loss_sum = term if loss_sum is None else loss_sum + term
    return ranks.reduce_gradients(model, loss_sum)  # one process: loss_sum as is


def step_numbers(*values) -> list[float]:
    """0-d arrays on one device (or floats) -> host floats, in one device->host transfer.

    On a GPU every ``float(x)`` waits for the device; stacking first waits once for all of them.
    """
    xp = get_array_module(*values)
    stacked = xp.stack([xp.asarray(value, dtype=np.float64) for value in values])  # (n,)
    return [float(number) for number in to_numpy(stacked)]


def apply_update(model: Module, optimizer: optim.Optimizer, grad_clip: float,
                 loss=None) -> float | None:
    """Clip the global gradient norm to ``grad_clip`` (eq. 9.13; 0: off), step, zero the grads.

    ``loss`` (from ``accumulate_gradients``, on the device) comes to the host with the norm, in
    the step's one transfer; it is returned as a float. A non-finite loss or norm raises
    ``runs.NonFiniteError`` before the step: the weights stay as they were.
    """
    norm = optim.clip_grad_norm_(model.parameters(), grad_clip) if grad_clip > 0 else None
    checked = {what: value for what, value in (("training loss", loss), ("gradient norm", norm))
               if value is not None}  # the loss first: a nan loss is named as the loss
    host = dict(zip(checked, step_numbers(*checked.values()))) if checked else {}
    for what, number in host.items():
        runs.check_finite(what, number)
    optimizer.step()
    optimizer.zero_grad()
    return host.get("training loss")


def train_step(model: Module, task, data_rng: np.random.Generator, optimizer: optim.Optimizer,
               scheduler: optim.LRScheduler, grad_clip: float, grad_accum: int,
               ranks=distributed.SINGLE_PROCESS) -> float:
    """One optimizer step; returns the training loss (the mean over the micro-batches).

    The learning rate of this step comes from the schedule, the batches from ``data_rng``;
    afterwards the parameters are updated and their gradients are None again. A non-finite loss
    or gradient norm raises ``runs.NonFiniteError`` before the update.
    """
    scheduler.step()
    loss = accumulate_gradients(model, task, data_rng, grad_accum, ranks)  # on the device
    return apply_update(model, optimizer, grad_clip, loss)  # the one device->host transfer


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------


def _print(message: str) -> None:
    print(message, flush=True)


def train(config: TrainConfig, resume: bool = False, progress: bool = True, log=_print, *,
          overwrite: bool = False, allow_changed_data: bool = False) -> dict:
    """Run ``config`` (or continue the run in ``config.out_dir`` if ``resume``); returns metrics.

    First the output folder is checked and locked (``runs.claim_run_folder``): a folder that
    holds a run is refused unless ``resume`` or ``overwrite``; resuming on a training text whose
    size or SHA-256 changed is refused unless ``allow_changed_data``. Under ``mpiexec -n W``
    (``tinyllm.distributed``) rank 0 alone holds the folder, logs and writes; the others return
    ``{"rank": r, "iters": ...}``.
    """
    ranks = distributed.world()
    folder = (runs.claim_run_folder(Path(config.out_dir), resume=resume, overwrite=overwrite)
              if ranks.is_root else contextlib.nullcontext())
    with ranks.fail_together(), folder:  # an error on one rank stops every rank
        ranks.barrier()  # the others start once rank 0 holds the folder
        return _train(config, resume, progress and ranks.is_root,
                      log if ranks.is_root else _quiet, allow_changed_data, ranks)


def _quiet(message: str) -> None:
    pass


def _train(config: TrainConfig, resume: bool, progress: bool, log, allow_changed_data,
           ranks=distributed.SINGLE_PROCESS) -> dict:
    ranks.check_supported(config)
    out_dir = Path(config.out_dir)
    checkpoint_path = out_dir / CHECKPOINT_NAME
    train_text, val_text = load_texts(config)
    data = data_fingerprint(config)  # recorded in every checkpoint
    if resume:
        model, tokenizer, info = load_checkpoint(checkpoint_path)
        saved = dataclasses.asdict(TrainConfig(**info["settings"]))
        runs.check_settings(saved, dataclasses.asdict(config), checkpoint_path)
        runs.check_data(info["data"], data, allow_changed_data, log)
        shape, step, history = info["shape"], info["step"], info["history"]
    else:
        tokenizer = build_tokenizer(config, train_text, val_text)
        shape = model_config(config, tokenizer.vocab_size)
        model = build_model(config.model, shape, config.seed)
        step, history = 0, {"step": [], "train_loss": [], "eval_step": [], "val_loss": [], "lr": []}
    model.to(config.device)
    task = build_task(config, tokenizer, shape, train_text, val_text)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer)
    data_rng = np.random.default_rng(config.seed)
    if resume:
        optimizer.load_state_dict(info["optimizer_state"])
        scheduler.load_state_dict(info["scheduler_state"])
        restore_generators(info["generators"], model, data_rng)
        if hasattr(task, "load_state_dict"):  # the LSTM's stream position and carried state
            task.load_state_dict(info["task_state"])
        ranks.resume(info["ranks"], model, checkpoint_path)  # W as saved; each rank's dropout
    else:
        ranks.start(model, config.seed)  # rank r > 0: dropout generators of its own
    keep_freed_memory()
    guard = runs.NonFiniteGuard(checkpoint_path, config.lr, saved_step=step if resume else None)
    compression = RunCompression(model, config.precision,  # fp16/bf16, pruning masks (ch. 16)
                                 info["masks"] if resume else None,
                                 info["loss_scaler"] if resume else None)

    def save() -> None:
        guard.check_weights(model, step)  # a non-finite weight is never saved
        rank_state = ranks.checkpoint_state(model)  # every rank: dropout generators to rank 0
        if not ranks.is_root:
            return
        save_checkpoint(checkpoint_path, model, optimizer, scheduler, tokenizer, data_rng,
                        settings=dataclasses.asdict(config), step=step, history=history, data=data,
                        task_state=task.state_dict() if hasattr(task, "state_dict") else None,
                        ranks=rank_state, **compression.checkpoint_state())
        if guard.saved(step):  # this run's first checkpoint: a replaced run's results are stale
            runs.remove_stale_results(out_dir)

    stop = runs.StopRequest().install()  # SIGINT, SIGTERM, SIGHUP: finish this step, save, stop
    tokens_per_step = task.tokens_per_batch * config.grad_accum * ranks.size
    log(f"{config.model.upper()} {config.preset}: {model.num_parameters():,} parameters, "
        f"vocabulary {tokenizer.vocab_size}, {tokens_per_step} tokens per step")
    bar = _progress_bar(progress, config.iters, step)
    start_step, started = step, time.perf_counter()
    try:
        while step < config.iters and not ranks.any(stop.requested):  # a stop stops all ranks
            with guard.at_step(step + 1):  # a non-finite loss or gradient norm stops the run
                loss = (train_step(model, task, data_rng, optimizer, scheduler, config.grad_clip,
                                   config.grad_accum, ranks) if compression.mixed is None else
                        compression.step(task, data_rng, optimizer, scheduler, config.grad_clip,
                                         config.grad_accum))  # skips a float16 overflow step
                compression.after_step()  # pruned weights back to exactly zero
            step += 1
            if step % distributed.CHECK_INTERVAL == 0:
                ranks.check_identical(model, step)  # the same weights on every rank
            history["step"].append(step)
            history["train_loss"].append(loss)
            history["lr"].append(optimizer.param_groups[0]["lr"])  # the step's rate (all groups')
            elapsed = time.perf_counter() - started
            tokens_per_s = (step - start_step) * tokens_per_step / elapsed
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_s:,.0f}")
            if step % config.eval_interval == 0 and step < config.iters and ranks.is_root:
                val = task.evaluate(model, "val", config.eval_iters, seed=config.seed + 1)
                history["eval_step"].append(step)
                history["val_loss"].append(val["loss"])
                model.train()
                _write(bar, log, f"step {step}: train loss {loss:.4f}, val loss {val['loss']:.4f}")
            if step % config.checkpoint_interval == 0 and step < config.iters:
                save()
    finally:
        stop.uninstall()
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - started
    save()
    stopped = ranks.any(stop.requested)  # the same answer on every rank
    ranks.check_identical(model, step)
    if not ranks.is_root:  # rank 0 evaluates and writes; its last save gathers from this rank
        if not stopped:
            ranks.checkpoint_state(model)
        return {"rank": ranks.rank, "iters": step}
    if stopped:
        log(f"interrupted at step {step}: checkpoint saved to {checkpoint_path}; continue with "
            f"`{ranks.command} --resume --out {out_dir}` (stopped by {stop.signal_name})")
        return {"interrupted": True, "iters": step}

    steps_run = step - start_step
    metrics = {"model": config.model, "preset": config.preset, "parameters": model.num_parameters(),
               "iters": step, "wall_s": round(wall, 2),
               "ms_per_step": round(1000 * wall / max(steps_run, 1), 2),
               "tokens_per_s": round(steps_run * tokens_per_step / max(wall, 1e-9), 1)}
    if ranks.size > 1:
        metrics["ranks"] = ranks.size  # MPI ranks (each with grad_accum micro-batches a step)
    val = task.evaluate(model, "val", config.final_eval_iters, seed=config.seed + 1)
    train_eval = task.evaluate(model, "train", config.final_eval_iters, seed=config.seed + 2)
    model.train()
    metrics.update({"val_loss": round(val["loss"], 4), "train_loss": round(train_eval["loss"], 4),
                    "val_perplexity": round(val["perplexity"], 3)})
    metrics.update({key: round(value, 4) for key, value in val.items()  # BERT: mlm_accuracy, ...
                    if key not in ("loss", "perplexity")})
    if compression.mixed is not None:  # chapter 16: what the loss scaler did
        metrics.update(precision=config.precision, skipped_steps=compression.skipped_steps)
    history["eval_step"].append(step)
    history["val_loss"].append(val["loss"])
    save()
    plot_losses(history, out_dir / runs.LOSS_PLOT_NAME,
                title=f"{config.model.upper()} {config.preset}")
    return runs.write_json(out_dir / runs.METRICS_NAME, metrics)  # strict JSON: nan -> null


def _progress_bar(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def _write(bar, log, message: str) -> None:
    if bar is not None:
        bar.write(message)
    else:
        log(message)


def plot_losses(history: dict, path: Path, title: str = "") -> None:
    """Training loss per step (light), its moving average and the validation estimates (dots), PNG.

    Drawn on a bare ``Figure`` (no pyplot): it needs no display and leaves a notebook's plots alone.
    Written atomically, like every file of a run.
    """
    from matplotlib.figure import Figure

    steps, losses = np.array(history["step"]), np.array(history["train_loss"])
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    if len(losses):
        ax.plot(steps, losses, color="tab:blue", alpha=0.25, lw=0.8, label="train (per step)")
        window = max(1, min(50, len(losses) // 10))
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, color="tab:blue", label=f"train ({window}-step mean)")
    if history["eval_step"]:
        ax.plot(history["eval_step"], history["val_loss"], "o-", color="tab:orange",
                label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    runs.write_bytes(path, png.getvalue())
