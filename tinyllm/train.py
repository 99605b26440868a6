"""One training loop for GPT and BERT (chapter 11, "Training"; chapter 09 for the optimizer).

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
"""

from __future__ import annotations

import dataclasses
import functools
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyllm import optim, runs
from tinyllm.checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    restore_generators,
    save_checkpoint,
    saved_settings,
)
from tinyllm.corpus import load_corpus, load_text
from tinyllm.models import BERT, BERT_PRESETS, GPT, GPT_PRESETS, BERTConfig, GPTConfig
from tinyllm.nn import Module
from tinyllm.objectives import BERT_SPECIAL_TOKENS, LanguageModelTask, MaskedLMTask
from tinyllm.runtime import keep_freed_memory
from tinyllm.tokenizers import BPETokenizer, CharTokenizer


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe. Defaults: nanoGPT's CPU recipe for character-level Shakespeare."""

    model: str = "gpt"  # "gpt" (autoregressive LM) or "bert" (MLM + NSP)
    preset: str = "shakespeare-char"  # model shape: a key of GPT_PRESETS or BERT_PRESETS
    data: str | None = None  # a UTF-8 text file (last 10% = validation); None: a bundled corpus
    corpus: str = "shakespeare"  # bundled corpus when data is None ("shakespeare-all": 37 plays)
    tokenizer: str = "char"  # "char" or "bpe" (byte-level BPE trained on the training text)
    bpe_vocab_size: int = 2000  # BPE vocabulary: 256 bytes + merges + special tokens
    iters: int = 2000  # optimizer steps
    batch_size: int = 12  # sequences per micro-batch
    grad_accum: int = 1  # micro-batches per step (effective batch = batch_size * grad_accum)
    lr: float = 1e-3  # peak learning rate, reached after the warm-up
    min_lr: float = 1e-4  # learning rate at the end of the cosine decay
    warmup_iters: int = 100  # linear warm-up steps
    weight_decay: float = 0.1  # AdamW decay on matrices (not on biases and LayerNorms)
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.99  # AdamW second-moment decay (0.99: small batches, nanoGPT)
    grad_clip: float = 1.0  # clip the global gradient norm to this (0: off)
    mask_prob: float = 0.15  # BERT: fraction of tokens chosen for the MLM loss
    eval_interval: int = 250  # steps between validation estimates
    eval_iters: int = 20  # batches per periodic validation estimate
    final_eval_iters: int = 200  # batches for the final train and validation losses
    checkpoint_interval: int = 500  # steps between checkpoints (and one at the end)
    sample_tokens: int = 500  # GPT: length of the sample printed at the end (0: none)
    seed: int = 1337  # initialisation, batches and dropout
    device: str = "cpu"  # "cpu" or "cuda"
    out_dir: str = "runs/shakespeare-char"  # where checkpoint, loss curve and metrics go


TRAIN_PRESETS = {
    "shakespeare-char": TrainConfig(),
    "shakespeare-bert": TrainConfig(
        model="bert", preset="shakespeare-bert", tokenizer="bpe", iters=1500, batch_size=32,
        lr=1e-3, min_lr=1e-4, warmup_iters=100, weight_decay=0.01, beta2=0.999, eval_iters=10,
        final_eval_iters=50, sample_tokens=0, out_dir="runs/shakespeare-bert",
    ),
}


# --------------------------------------------------------------------------------------------------
# Building the pieces
# --------------------------------------------------------------------------------------------------


def load_texts(config: TrainConfig) -> tuple[str, str]:
    """(train, validation) text: a user's file with the fixed 90/10 split, or the bundled corpus."""
    return load_text(config.data) if config.data else load_corpus(config.corpus)


def build_tokenizer(config: TrainConfig, train_text: str, val_text: str):
    if config.tokenizer == "char":  # the alphabet of the whole text, as in nanoGPT
        return CharTokenizer.from_text(train_text + val_text)
    if config.tokenizer == "bpe":
        specials = BERT_SPECIAL_TOKENS if config.model == "bert" else ("<|endoftext|>",)
        return BPETokenizer.train(train_text, config.bpe_vocab_size, special_tokens=specials)
    raise ValueError(f"unknown tokenizer {config.tokenizer!r}; expected 'char' or 'bpe'")


def model_config(config: TrainConfig, vocab_size: int) -> GPTConfig | BERTConfig:
    presets = GPT_PRESETS if config.model == "gpt" else BERT_PRESETS
    if config.preset not in presets:
        raise ValueError(f"unknown {config.model} preset {config.preset!r}; "
                         f"choose one of {sorted(presets)}")
    return dataclasses.replace(presets[config.preset], vocab_size=vocab_size)


def build_model(kind: str, shape: GPTConfig | BERTConfig, seed: int) -> Module:
    rng = np.random.default_rng(seed)
    return GPT(shape, rng=rng) if kind == "gpt" else BERT(shape, rng=rng)


def build_task(config: TrainConfig, tokenizer, shape, train_text: str, val_text: str):
    if config.model == "gpt":
        train_ids = np.array(tokenizer.encode(train_text), dtype=np.int64)
        val_ids = np.array(tokenizer.encode(val_text), dtype=np.int64)
        return LanguageModelTask(train_ids, val_ids, config.batch_size, shape.context_length)
    return MaskedLMTask(tokenizer, train_text, val_text, config.batch_size, shape.context_length,
                        config.mask_prob)


def build_optimizer(config: TrainConfig, model: Module) -> optim.AdamW:
    groups = optim.param_groups_for_weight_decay(model, config.weight_decay)
    return optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))


def build_scheduler(config: TrainConfig, optimizer: optim.Optimizer) -> optim.LRScheduler:
    """Warm-up to ``config.lr``, then half a cosine to ``config.min_lr`` at ``config.iters``
    (eq. 9.11), as an ``LRScheduler`` whose ``step_count`` a checkpoint saves."""
    schedule = functools.partial(optim.warmup_cosine, max_lr=config.lr, min_lr=config.min_lr,
                                 warmup_steps=config.warmup_iters, total_steps=config.iters)
    return optim.LRScheduler(optimizer, schedule)


# --------------------------------------------------------------------------------------------------
# The training step
# --------------------------------------------------------------------------------------------------


def accumulate_gradients(model: Module, task, data_rng: np.random.Generator,
                         grad_accum: int) -> float:
    """Forward and backward over ``grad_accum`` micro-batches; returns the mean of their losses.

    Each micro-batch's loss is divided by k = grad_accum before its backward, so the gradients that
    add up in ``p.grad`` are those of the mean loss over the k micro-batches (eq. 9.14).
    """
    loss_sum = 0.0
    for _ in range(grad_accum):
        loss = task.loss(model, task.batch("train", data_rng)) / grad_accum
        loss.backward()
        loss_sum += loss.item()
    return loss_sum


def apply_update(model: Module, optimizer: optim.Optimizer, grad_clip: float) -> None:
    """Clip the global gradient norm to ``grad_clip`` (eq. 9.13; 0: off), step, zero the grads.

    A non-finite norm raises ``runs.NonFiniteError`` before the step: the weights stay as they were.
    """
    if grad_clip > 0:
        runs.check_finite("gradient norm", optim.clip_grad_norm_(model.parameters(), grad_clip))
    optimizer.step()
    optimizer.zero_grad()


def train_step(model: Module, task, data_rng: np.random.Generator, optimizer: optim.Optimizer,
               scheduler: optim.LRScheduler, grad_clip: float, grad_accum: int) -> float:
    """One optimizer step; returns the training loss (the mean over the micro-batches).

    The learning rate of this step comes from the schedule, the batches from ``data_rng``;
    afterwards the parameters are updated and their gradients are None again. A non-finite loss
    or gradient norm raises ``runs.NonFiniteError`` before the update.
    """
    scheduler.step()
    loss = accumulate_gradients(model, task, data_rng, grad_accum)
    runs.check_finite("training loss", loss)
    apply_update(model, optimizer, grad_clip)
    return loss


def saved_train_config(out_dir: str | Path) -> TrainConfig:
    """The settings the run in ``out_dir`` was started with, from its checkpoint (for --resume)."""
    return TrainConfig(**saved_settings(Path(out_dir) / CHECKPOINT_NAME))


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
    size or SHA-256 changed is refused unless ``allow_changed_data``.
    """
    with runs.claim_run_folder(Path(config.out_dir), resume=resume, overwrite=overwrite):
        return _train(config, resume, progress, log, allow_changed_data)


def _train(config: TrainConfig, resume: bool, progress: bool, log, allow_changed_data) -> dict:
    out_dir = Path(config.out_dir)
    checkpoint_path = out_dir / CHECKPOINT_NAME
    train_text, val_text = load_texts(config)
    data = runs.data_fingerprint(config.data, config.corpus)  # recorded in every checkpoint
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
    keep_freed_memory()
    guard = runs.NonFiniteGuard(checkpoint_path, config.lr, saved_step=step if resume else None)

    def save() -> None:
        guard.check_weights(model, step)  # a non-finite weight is never saved
        save_checkpoint(checkpoint_path, model, optimizer, scheduler, tokenizer, data_rng,
                        settings=dataclasses.asdict(config), step=step, history=history, data=data)
        if guard.saved(step):  # this run's first checkpoint: a replaced run's results are stale
            runs.remove_stale_results(out_dir)

    stop = runs.StopRequest().install()  # SIGINT, SIGTERM, SIGHUP: finish this step, save, stop
    tokens_per_step = task.tokens_per_batch * config.grad_accum
    log(f"{config.model.upper()} {config.preset}: {model.num_parameters():,} parameters, "
        f"vocabulary {tokenizer.vocab_size}, {tokens_per_step} tokens per step")
    bar = _progress_bar(progress, config.iters, step)
    start_step, started = step, time.perf_counter()
    try:
        while step < config.iters and not stop.requested:
            with guard.at_step(step + 1):  # a non-finite loss or gradient norm stops the run
                loss = train_step(model, task, data_rng, optimizer, scheduler, config.grad_clip,
                                  config.grad_accum)
            step += 1
            history["step"].append(step)
            history["train_loss"].append(loss)
            history["lr"].append(optimizer.param_groups[0]["lr"])  # the step's rate (all groups')
            elapsed = time.perf_counter() - started
            tokens_per_s = (step - start_step) * tokens_per_step / elapsed
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_s:,.0f}")
            if step % config.eval_interval == 0 and step < config.iters:
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
    if stop.requested:
        log(f"interrupted at step {step}: checkpoint saved to {checkpoint_path}; continue with "
            f"`tinyllm train --resume --out {out_dir}` (stopped by {stop.signal_name})")
        return {"interrupted": True, "iters": step}

    steps_run = step - start_step
    metrics = {"model": config.model, "preset": config.preset, "parameters": model.num_parameters(),
               "iters": step, "wall_s": round(wall, 2),
               "ms_per_step": round(1000 * wall / max(steps_run, 1), 2),
               "tokens_per_s": round(steps_run * tokens_per_step / max(wall, 1e-9), 1)}
    val = task.evaluate(model, "val", config.final_eval_iters, seed=config.seed + 1)
    train_eval = task.evaluate(model, "train", config.final_eval_iters, seed=config.seed + 2)
    model.train()
    metrics.update({"val_loss": round(val["loss"], 4), "train_loss": round(train_eval["loss"], 4),
                    "val_perplexity": round(val["perplexity"], 3)})
    if config.model == "bert":
        metrics.update({key: round(val[key], 4) for key in
                        ("mlm_loss", "mlm_accuracy", "baseline_accuracy", "nsp_accuracy")})
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
