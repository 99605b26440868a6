"""How fast does tinyllm train and generate? The library behind ``tinyllm bench``
(chapter 11, "Making it fast").

A *training step* is exactly the trainer's recipe (``tinyllm.train``), in float32: a batch of B random windows
of T tokens, forward pass and mean cross-entropy, backward pass, clipping of the global gradient norm at 1.0,
an AdamW step with the trainer's parameter groups and learning-rate schedule, zero_grad. For each model shape
the benchmark prints the median milliseconds per step, tokens per second (B T / step time), the achieved
GFLOP/s and its fraction of the machine's float32 matmul peak, which it measures itself (the best of a few
float32 2048 x 2048 products, with the same threads, before and after the steps), and the median CPU time
of a step (steadier than the wall clock on a machine shared with other programs). It also times text
generation with and without the KV cache (chapter 07).

Counting the FLOPs. A product (M, K) @ (K, N) costs 2 M K N operations (one multiply, one add per term). In
the forward pass every token's vector meets every weight matrix once:

    per block:  W_q, W_k, W_v, W_o (4 C^2 weights), fc1 and fc2 (8 C^2)    2 * 12 C^2
    tied output layer (V C weights)                                         2 * V C
    attention, per block: Q K^T and P V, T keys of width D in H heads      2 * 2 T D H = 4 T C

so, with N_mm = 12 L C^2 + V C the weights that take part in products (not the position table, not the
LayerNorm gains),

    forward FLOPs per token   F = 2 N_mm + 4 L T C
    training FLOPs per token  3 F = 6 N_mm + 12 L T C

because the backward pass makes two products per forward product, dL/dA = G B^T and dL/dB = A^T G (eq. 2.6):
the "6 N" rule (Kaplan et al. 2020) plus the attention term (Chowdhery et al. 2022, PaLM, appendix B). The
attention term counts the whole T x T score matrix, which is what tinyllm computes before it masks the upper
triangle (PyTorch's CPU kernel may skip some masked blocks, so its true work is slightly less); a count of
the useful, causal half would be 2 L T C forward (6 L T C training). Elementwise work
(embeddings, LayerNorm, GELU, softmax, AdamW) is of order C per token and is not counted. The same count is
used for every framework, so GFLOP/s compare like with like.

Threads. ``tinyllm bench --threads N`` (or ``benchmarks/bench_gpt.py --threads N``) limits the BLAS threads
with ``tinyllm.runtime.limit_blas_threads``; :func:`run_benchmarks` reports the count in effect and gives
PyTorch the same (``torch.set_num_threads``).

When PyTorch is installed, the same model (same shapes, same initial weights, same batches, same recipe) is
written in PyTorch below and timed in the same run, in blocks of steps that alternate with tinyllm's, so a
drifting load on the machine hits both alike; the ratio of the medians is printed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tinyllm import __version__, optim
from tinyllm.models import GPT, GPT_PRESETS, GPTConfig
from tinyllm.objectives import LanguageModelTask
from tinyllm.runtime import blas_threads, keep_freed_memory
from tinyllm.tensor import Tensor
from tinyllm.train import TrainConfig, build_model, build_optimizer


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
    BenchSetting("shakespeare-char", GPT_PRESETS["shakespeare-char"], batch_size=12, block=5, warmup=3),
    # the large preset's shape without its dropout, so both frameworks do the same arithmetic
    BenchSetting("6-layer C=384 T=256",
                 dataclasses.replace(GPT_PRESETS["shakespeare-char-large"], dropout=0.0),
                 batch_size=12, block=2, warmup=2, generation_repeats=1),
]
TINY_SETTINGS = [  # for tests: seconds, not minutes
    BenchSetting("tiny-1", GPTConfig(context_length=8, num_layers=1, num_heads=2, d_model=16), batch_size=2, block=1,
                 warmup=1),
    BenchSetting("tiny-2", GPTConfig(context_length=8, num_layers=2, num_heads=2, d_model=16), batch_size=2, block=1,
                 warmup=1),
]


# --------------------------------------------------------------------------------------------------------
# FLOPs, matmul peak and threads
# --------------------------------------------------------------------------------------------------------


def matmul_weights(config: GPTConfig) -> int:
    """N_mm = 12 L C^2 + V C: the weights that take part in matrix products."""
    return 12 * config.num_layers * config.d_model ** 2 + config.vocab_size * config.d_model


def training_flops_per_token(config: GPTConfig) -> int:
    """3 F = 6 N_mm + 12 L T C: forward (2 N_mm + 4 L T C) and backward (twice the forward)."""
    forward = 2 * matmul_weights(config) + 4 * config.num_layers * config.context_length * config.d_model
    return 3 * forward


def numpy_matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of a float32 (size, size) @ (size, size) product with NumPy's BLAS (2 size^3 FLOPs)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty((size, size), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up: thread pool, caches
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def torch_matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """The same product with PyTorch's BLAS."""
    import torch

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


# --------------------------------------------------------------------------------------------------------
# One training step: tinyllm with the trainer's recipe, and the same in PyTorch
# --------------------------------------------------------------------------------------------------------


def random_task(config: GPTConfig, batch_size: int, seed: int = 0) -> LanguageModelTask:
    """Batches of random tokens: the speed of a step does not depend on which tokens it sees."""
    stream = np.random.default_rng(seed).integers(0, config.vocab_size, 50_000 + config.context_length)
    return LanguageModelTask(stream, stream[:config.context_length + 2], batch_size, config.context_length)


class TinyllmStep:
    """A GPT, its AdamW and its batches; ``step()`` is one training step of ``tinyllm.train.train``.

    The step is split into its phases (``forward``, ``backward``, ``update``) so that the profiler can time
    each; ``step()`` runs them in the trainer's order and returns the loss.
    """

    def __init__(self, config: GPTConfig, batch_size: int, seed: int = 0):
        self.recipe = dataclasses.replace(TrainConfig(), batch_size=batch_size)
        self.model = build_model("gpt", config, seed)
        self.optimizer = build_optimizer(self.recipe, self.model)
        self.task = random_task(config, batch_size, seed)
        self.seed = seed
        self.data_rng = np.random.default_rng(seed)  # the PyTorch twin draws the same batches
        self.step_count = 0
        self.losses: list[float] = []

    def forward(self) -> Tensor:
        r = self.recipe
        lr = optim.warmup_cosine(self.step_count, r.lr, r.min_lr, r.warmup_iters, r.iters)
        optim.set_lr(self.optimizer, lr)
        return self.task.loss(self.model, self.task.batch("train", self.data_rng)) / r.grad_accum

    def backward(self, loss: Tensor) -> float:
        loss.backward()
        return loss.item()

    def update(self) -> None:
        optim.clip_grad_norm_(self.model.parameters(), self.recipe.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.step_count += 1

    def step(self) -> float:
        loss = self.backward(self.forward())
        self.update()
        self.losses.append(loss)
        return loss


def interleaved_times(steps: dict[str, Callable[[], object]], count: int, block: int,
                      warmup: int) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of ``count`` calls per runner, in alternating blocks of ``block`` calls,
    after warm-up.

    CPU time is this process's (all its threads): other programs on a busy machine stretch the wall clock
    but hardly the CPU time, which makes it the steadier figure there (with one thread it is the work done).
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


# --------------------------------------------------------------------------------------------------------
# Generation with and without the KV cache
# --------------------------------------------------------------------------------------------------------


def generation_times(model: GPT, repeats: int) -> dict[str, float]:
    """ms per new token for ``context_length - 1`` tokens from a 1-token prompt, cached and not (interleaved)."""
    new_tokens = model.config.context_length - 1
    prompt = np.zeros((1, 1), dtype=np.int64)  # (B, T0) = (1, 1)
    times: dict[bool, list[float]] = {True: [], False: []}
    outputs = {}
    for _ in range(repeats):
        for use_cache in (True, False):
            start = time.perf_counter()
            outputs[use_cache] = model.generate(prompt, new_tokens, rng=np.random.default_rng(0),
                                                use_cache=use_cache)
            times[use_cache].append(time.perf_counter() - start)
    cached, uncached = (1e3 * statistics.median(times[c]) / new_tokens for c in (True, False))
    return {"new_tokens": new_tokens, "cache_ms_per_token": round(cached, 3),
            "no_cache_ms_per_token": round(uncached, 3), "speedup": round(uncached / cached, 2),
            "same_tokens": bool(np.array_equal(outputs[True], outputs[False]))}


# --------------------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------------------


def time_training(setting: BenchSetting, steps: int, torch_threads: int | None) -> dict:
    """Median seconds per step of tinyllm, and of its PyTorch twin when ``torch_threads`` is given."""
    runners = {"tinyllm": TinyllmStep(setting.config, setting.batch_size)}
    if torch_threads is not None:
        from tinyllm.bench_torch import (
            TorchStep,  # imports torch: only when it is installed
        )

        runners["PyTorch"] = TorchStep(runners["tinyllm"], torch_threads)
    times = interleaved_times({name: runner.step for name, runner in runners.items()}, steps, setting.block,
                              setting.warmup)
    result = {"setting": setting, "parameters": runners["tinyllm"].model.num_parameters(),
              "seconds": {name: statistics.median(w for w, _ in samples)
                          for name, samples in times.items()},
              "cpu_seconds": {name: statistics.median(c for _, c in samples)
                              for name, samples in times.items()}}
    if torch_threads is not None:  # same weights, batches and recipe: the losses agree up to float32 rounding
        pairs = zip(runners["tinyllm"].losses, runners["PyTorch"].losses, strict=True)
        result["max_loss_difference"] = float(f"{max(abs(a - b) for a, b in pairs):.2g}")
        result["steps_compared"] = len(runners["tinyllm"].losses)
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
        row = {"model": setting.name, "parameters": result["parameters"], "batch_size": setting.batch_size,
               "context_length": setting.config.context_length, "tokens_per_step": tokens,
               "gflop_per_step": round(flops / 1e9, 3)}
        for index, (name, seconds) in enumerate(result["seconds"].items()):
            key = "tinyllm" if name == "tinyllm" else "torch"
            gflops, cpu_ms = flops / seconds / 1e9, 1e3 * result["cpu_seconds"][name]
            row.update({f"{key}_ms": round(1e3 * seconds, 2),
                        f"{key}_tokens_per_s": round(tokens / seconds, 1),
                        f"{key}_gflops": round(gflops, 2), f"{key}_peak_fraction": round(gflops / peak, 4),
                        f"{key}_cpu_ms": round(cpu_ms, 2)})
            label = (f"{setting.name:<22}{result['parameters'] / 1e6:>8.2f}M{tokens:>8}{flops / 1e9:>8.2f}"
                     if index == 0 else " " * 47)
            print(f"{label}  {name:<10}{1e3 * seconds:>9.1f}{tokens / seconds:>10,.0f}{gflops:>9.1f}"
                  f"{gflops / peak:>9.1%}{cpu_ms:>9.1f}")
        if "max_loss_difference" in result:
            row["ratio_tinyllm_over_torch"] = round(row["tinyllm_ms"] / row["torch_ms"], 2)
            row["max_loss_difference"] = result["max_loss_difference"]
            print(f"{'':<47}  tinyllm / PyTorch = {row['ratio_tinyllm_over_torch']:.2f}x   (losses of the "
                  f"{result['steps_compared']} steps agree within {row['max_loss_difference']:.1g})")
        rows.append(row)
    return rows


def print_generation(settings: list[BenchSetting]) -> list[dict]:
    """The KV-cache table; returns its rows."""
    print("\ngeneration: context_length - 1 new tokens from a 1-token prompt, batch 1, ms per new token")
    print(f"{'model':<22}{'new':>6}{'runs':>6}{'KV cache':>10}{'no cache':>10}{'speed-up':>10}  same tokens")
    rows = []
    for setting in settings:
        model = GPT(setting.config, rng=np.random.default_rng(0))
        row = {"model": setting.name, **generation_times(model, setting.generation_repeats)}
        print(f"{setting.name:<22}{row['new_tokens']:>6}{setting.generation_repeats:>6}"
              f"{row['cache_ms_per_token']:>10.2f}{row['no_cache_ms_per_token']:>10.2f}"
              f"{row['speedup']:>9.2f}x  "
              f"{'yes' if row['same_tokens'] else 'no'}")
        rows.append(row)
    return rows


def run_benchmarks(steps: int = 20, quick: bool = False, tiny: bool = False, profile: bool = False,
                   compare_torch: bool = True, generation: bool = True) -> dict:
    """Time training steps (and generation) of the benchmark models; print tables and one JSON line.

    ``steps``: timed steps per model and framework; ``quick``: only the first (small) model; ``tiny``: toy
    sizes, for tests; ``profile``: also print where a tinyllm step spends its time; ``compare_torch``: time
    PyTorch too when it is installed; ``generation``: the KV-cache benchmark. Returns the printed figures.
    """
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    keep_freed_memory()  # as the trainer does, so the benchmark measures the same process
    settings = (TINY_SETTINGS if tiny else SETTINGS)[:1 if quick else None]
    has_torch = compare_torch and importlib.util.find_spec("torch") is not None
    threads = blas_threads()
    torch_threads = (threads or os.cpu_count() or 1) if has_torch else None
    peak_size, peak_repeats = (256, 2) if tiny else (2048, 5)

    versions = f"tinyllm {__version__}, NumPy {np.__version__}, Python {platform.python_version()}"
    if has_torch:
        import torch

        torch.set_num_threads(torch_threads)
        versions += f", PyTorch {torch.__version__}"
    else:
        versions += " (PyTorch not installed: tinyllm only)" if compare_torch else " (PyTorch not timed)"
    print(versions)
    print(f"BLAS threads: {threads if threads is not None else 'unknown'}"
          + (f"; PyTorch threads: {torch_threads}" if has_torch else ""))

    def measure_peaks() -> dict[str, float]:
        peaks = {"NumPy": numpy_matmul_gflops(peak_size, peak_repeats)}
        if has_torch:
            peaks["PyTorch"] = torch_matmul_gflops(peak_size, peak_repeats)
        return peaks

    before = measure_peaks()
    results = []
    for setting in settings:
        print(f"timing {setting.name}: {setting.warmup} + {steps} steps per framework ...", flush=True)
        results.append(time_training(setting, steps, torch_threads))
    # measured again after the timings, the best of both kept: the peak is what the machine can give
    peaks = {name: max(value, before[name]) for name, value in measure_peaks().items()}
    peak = max(peaks.values())
    print(f"float32 matmul peak ({peak_size}^3 product, "
          f"best of {peak_repeats} before and {peak_repeats} after the steps): "
          + ", ".join(f"{name} {value:.1f} GFLOP/s" for name, value in peaks.items())
          + f"; fractions of peak are of {peak:.1f} GFLOP/s")
    figures = {"threads": threads, "torch_threads": torch_threads,
               "peak_gflops": {name: round(value, 1) for name, value in peaks.items()},
               "training": print_training(results, peak, steps)}
    if generation:
        figures["generation"] = print_generation(settings)
    if profile:
        from tinyllm.profiling import profile_training_step

        figures["profile"] = {setting.name: profile_training_step(setting, min(steps, 10), peak)
                              for setting in settings}
    print("\n" + json.dumps({key: value for key, value in figures.items() if key != "profile"}))
    return figures
