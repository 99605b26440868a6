"""Timing a training step (``tinyllm bench``, chapter 11, "Making it fast").

A *step* is ``tinyllm.train.train_step`` with the trainer's recipe, in float32: a batch of B random
windows of T tokens, forward pass and mean cross-entropy, backward pass, clipping of the global
gradient norm at 1.0, an AdamW step with the trainer's parameter groups and learning-rate schedule,
zero_grad. For each model shape the benchmark reports the median milliseconds per step, tokens per
second (B T / step time), the achieved GFLOP/s and its fraction of the machine's float32 matmul
peak, and the median CPU time.

FLOPs of a step (derived in ``benchmarks/README.md``): with N_mm = 12 L C^2 + V C the weights that
take part in matrix products,

    forward FLOPs per token   F = 2 N_mm + 4 L T C
    training FLOPs per token  3 F = 6 N_mm + 12 L T C

since the backward pass makes two products per forward product (eq. 2.6). The same count is used for
every framework, so GFLOP/s compare like with like.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tinyllm.models import GPT_PRESETS, GPTConfig
from tinyllm.objectives import LanguageModelTask
from tinyllm.train import TrainConfig, build_model, build_optimizer, build_scheduler, train_step


@dataclass(frozen=True)
class BenchSetting:
    """One model shape to time."""

    name: str  # printed in the tables
    config: GPTConfig  # the model shape
    batch_size: int  # B sequences of T = config.context_length tokens per step
    block: int  # steps per interleaved block (tinyllm, then PyTorch, then tinyllm ...)
    warmup: int  # untimed steps per framework before timing
    generation_repeats: int = 3  # generation runs with and without the cache (median)


SETTINGS = [
    BenchSetting("shakespeare-char", GPT_PRESETS["shakespeare-char"], batch_size=12, block=5,
                 warmup=3),
    # the large preset's shape without its dropout, so both frameworks do the same arithmetic
    BenchSetting("6-layer C=384 T=256",
                 dataclasses.replace(GPT_PRESETS["shakespeare-char-large"], dropout=0.0),
                 batch_size=12, block=2, warmup=2, generation_repeats=1),
]


# --------------------------------------------------------------------------------------------------
# FLOPs and the matmul peak
# --------------------------------------------------------------------------------------------------


def matmul_weights(config: GPTConfig) -> int:
    """N_mm = 12 L C^2 + V C: the weights that take part in matrix products."""
    return 12 * config.num_layers * config.d_model ** 2 + config.vocab_size * config.d_model


def training_flops_per_token(config: GPTConfig) -> int:
    """3 F = 6 N_mm + 12 L T C: forward (2 N_mm + 4 L T C) and backward (twice the forward)."""
    attention = 4 * config.num_layers * config.context_length * config.d_model
    return 3 * (2 * matmul_weights(config) + attention)


# --------------------------------------------------------------------------------------------------
# The step, and timing it
# --------------------------------------------------------------------------------------------------


def random_task(config: GPTConfig, batch_size: int, seed: int = 0) -> LanguageModelTask:
    """Batches of random tokens: the speed of a step does not depend on which tokens it sees."""
    length = 50_000 + config.context_length
    stream = np.random.default_rng(seed).integers(0, config.vocab_size, length)
    val = stream[:config.context_length + 2]
    return LanguageModelTask(stream, val, batch_size, config.context_length)


class TinyllmStep:
    """A GPT with the trainer's AdamW, schedule and recipe, on random batches: ``step()`` is one
    ``tinyllm.train.train_step`` (the profiler calls its sub-steps on the same objects)."""

    def __init__(self, config: GPTConfig, batch_size: int, seed: int = 0, device: str = "cpu"):
        self.recipe = dataclasses.replace(TrainConfig(), batch_size=batch_size, device=device)
        self.model = build_model("gpt", config, seed).to(device)  # before AdamW, as the trainer
        self.optimizer = build_optimizer(self.recipe, self.model)
        self.scheduler = build_scheduler(self.recipe, self.optimizer)
        self.task = random_task(config, batch_size, seed)
        self.seed = seed
        self.data_rng = np.random.default_rng(seed)  # the PyTorch twin draws the same batches
        self.losses: list[float] = []

    def step(self) -> float:
        # host batches are copied up inside the model, as in the trainer; the loss comes back in
        # the step's one device->host transfer, which waits for the GPU: the wall clock is honest
        loss = train_step(self.model, self.task, self.data_rng, self.optimizer, self.scheduler,
                          self.recipe.grad_clip, self.recipe.grad_accum)
        self.losses.append(loss)
        return loss


def interleaved_times(steps: dict[str, Callable[[], object]], count: int, block: int,
                      warmup: int) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of ``count`` calls per runner, in alternating blocks of ``block`` calls,
    after warm-up.

    CPU time is this process's (all its threads): other programs on a busy machine stretch the wall
    clock but hardly the CPU time, which makes it the steadier figure there (with one thread it is
    the work).
    """
    for run in steps.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    while any(len(t) < count for t in times.values()):
        for name, run in steps.items():
            for _ in range(min(block, count - len(times[name]))):
                wall, cpu = time.perf_counter(), time.process_time()
                run()
                times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def time_training(setting: BenchSetting, steps: int, torch_threads: int | None,
                  device: str = "cpu", torch_device: str | None = None) -> dict:
    """Median seconds per step of tinyllm on ``device``, and of its PyTorch twin on
    ``torch_device`` ("cpu" or "cuda"; None: not timed) with ``torch_threads`` host threads."""
    ours = TinyllmStep(setting.config, setting.batch_size, device=device)
    runners = {"tinyllm": ours}
    if torch_device is not None:
        from tinyllm.bench.torch_twin import TorchStep  # imports torch: only when it is installed

        runners["PyTorch"] = TorchStep(ours.model.config, ours.model.state_dict(), ours.task,
                                       ours.recipe, ours.scheduler.schedule, ours.seed,
                                       torch_threads, torch_device)
    times = interleaved_times({name: runner.step for name, runner in runners.items()}, steps,
                              setting.block, setting.warmup)
    result = {"setting": setting, "parameters": ours.model.num_parameters(),
              "seconds": {name: statistics.median(w for w, _ in samples)
                          for name, samples in times.items()},
              "cpu_seconds": {name: statistics.median(c for _, c in samples)
                              for name, samples in times.items()}}
    if torch_device is not None:  # same weights, batches and recipe: equal losses up to rounding
        pairs = zip(ours.losses, runners["PyTorch"].losses, strict=True)
        result["max_loss_difference"] = float(f"{max(abs(a - b) for a, b in pairs):.2g}")
        result["steps_compared"] = len(ours.losses)
    return result


def print_training(results: list[dict], peak: float, steps: int) -> list[dict]:
    """The training table; returns its rows as plain figures (for the JSON line)."""
    print("\ntraining step (forward + backward + clip + AdamW), float32, "
          f"median of {steps} steps per framework"
          + (", in alternating blocks" if "PyTorch" in results[0]["seconds"] else "")
          + "; ms/step is wall-clock time, CPU ms the process's CPU time (all threads)")
    print(f"{'model':<22}{'params':>9}{'tokens':>8}{'GFLOP':>8}  {'framework':<10}{'ms/step':>9}"
          f"{'tokens/s':>10}{'GFLOP/s':>9}{'of peak':>9}{'CPU ms':>9}")
    rows = []
    for result in results:
        setting = result["setting"]
        tokens = setting.batch_size * setting.config.context_length
        flops = training_flops_per_token(setting.config) * tokens
        row = {"model": setting.name, "parameters": result["parameters"],
               "batch_size": setting.batch_size, "context_length": setting.config.context_length,
               "tokens_per_step": tokens, "gflop_per_step": round(flops / 1e9, 3)}
        for index, (name, seconds) in enumerate(result["seconds"].items()):
            key = "tinyllm" if name == "tinyllm" else "torch"
            gflops, cpu_ms = flops / seconds / 1e9, 1e3 * result["cpu_seconds"][name]
            row.update({f"{key}_ms": round(1e3 * seconds, 2),
                        f"{key}_tokens_per_s": round(tokens / seconds, 1),
                        f"{key}_gflops": round(gflops, 2),
                        f"{key}_peak_fraction": round(gflops / peak, 4),
                        f"{key}_cpu_ms": round(cpu_ms, 2)})
            label = (f"{setting.name:<22}{result['parameters'] / 1e6:>8.2f}M{tokens:>8}"
                     f"{flops / 1e9:>8.2f}" if index == 0 else " " * 47)
            print(f"{label}  {name:<10}{1e3 * seconds:>9.1f}{tokens / seconds:>10,.0f}"
                  f"{gflops:>9.1f}{gflops / peak:>9.1%}{cpu_ms:>9.1f}")
        if "max_loss_difference" in result:
            row["ratio_tinyllm_over_torch"] = round(row["tinyllm_ms"] / row["torch_ms"], 2)
            row["max_loss_difference"] = result["max_loss_difference"]
            print(f"{'':<47}  tinyllm / PyTorch = {row['ratio_tinyllm_over_torch']:.2f}x   (losses "
                  f"of the {result['steps_compared']} steps agree within "
                  f"{row['max_loss_difference']:.1g})")
        rows.append(row)
    return rows
