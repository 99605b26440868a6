"""How fast does tinyllm train and generate? The library behind ``tinyllm bench`` (chapter 11, "Making it fast").

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

Threads. NumPy's BLAS reads its thread count once, when NumPy is imported, from OPENBLAS_NUM_THREADS (or
OMP_NUM_THREADS, MKL_NUM_THREADS); ``benchmarks/bench_gpt.py --threads N`` sets them before importing NumPy.
:func:`run_benchmarks` reports the count in effect and gives PyTorch the same (``torch.set_num_threads``).

When PyTorch is installed, the same model (same shapes, same initial weights, same batches, same recipe) is
written in PyTorch below and timed in the same run, in blocks of steps that alternate with tinyllm's, so a
drifting load on the machine hits both alike; the ratio of the medians is printed.
"""

from __future__ import annotations

import cProfile
import dataclasses
import importlib.util
import io
import json
import math
import os
import platform
import pstats
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tinyllm import __version__, optim
from tinyllm.models import GPT, GPT_PRESETS, GPTConfig
from tinyllm.objectives import LanguageModelTask
from tinyllm.runtime import keep_freed_memory
from tinyllm.tensor import Function, Tensor
from tinyllm.train import TrainConfig, build_model, build_optimizer

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class BenchSetting:
    """One model shape to time."""

    name: str  # printed in the tables
    config: GPTConfig  # the model shape
    batch_size: int  # B sequences of T = config.block_size tokens per step
    block: int  # steps per interleaved block (tinyllm, then PyTorch, then tinyllm ...)
    warmup: int  # untimed steps per framework before timing
    generation_repeats: int = 3  # generation runs with and without the cache (median)


SETTINGS = [
    BenchSetting("shakespeare-char", GPT_PRESETS["shakespeare-char"], batch_size=12, block=5, warmup=3),
    # the large preset's shape without its dropout, so both frameworks do the same arithmetic
    BenchSetting("6-layer C=384 T=256", dataclasses.replace(GPT_PRESETS["shakespeare-char-large"], dropout=0.0),
                 batch_size=12, block=2, warmup=2, generation_repeats=1),
]
TINY_SETTINGS = [  # for tests: seconds, not minutes
    BenchSetting("tiny-1", GPTConfig(block_size=8, n_layer=1, n_head=2, n_embd=16), batch_size=2, block=1,
                 warmup=1),
    BenchSetting("tiny-2", GPTConfig(block_size=8, n_layer=2, n_head=2, n_embd=16), batch_size=2, block=1,
                 warmup=1),
]


# --------------------------------------------------------------------------------------------------------
# FLOPs, matmul peak and threads
# --------------------------------------------------------------------------------------------------------


def matmul_weights(config: GPTConfig) -> int:
    """N_mm = 12 L C^2 + V C: the weights that take part in matrix products."""
    return 12 * config.n_layer * config.n_embd ** 2 + config.vocab_size * config.n_embd


def training_flops_per_token(config: GPTConfig) -> int:
    """3 F = 6 N_mm + 12 L T C: forward (2 N_mm + 4 L T C) and backward (twice the forward)."""
    forward = 2 * matmul_weights(config) + 4 * config.n_layer * config.block_size * config.n_embd
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


def blas_threads() -> int | None:
    """Threads of the BLAS library NumPy calls, or None where it cannot be asked.

    With ``threadpoolctl`` installed it is asked; otherwise, on Linux, the OpenBLAS library that NumPy loaded
    is found in ``/proc/self/maps`` and its ``openblas_get_num_threads`` is called through ctypes.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return _openblas_threads()
    counts = [pool["num_threads"] for pool in threadpool_info() if pool["internal_api"] == "openblas"]
    counts = counts or [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return counts[0] if counts else None


def _openblas_threads() -> int | None:
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower()})
    except OSError:  # not Linux
        return None
    getters = ("openblas_get_num_threads", "openblas_get_num_threads64_", "scipy_openblas_get_num_threads64_")
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for name in getters:
            if hasattr(library, name):
                return int(getattr(library, name)())
    return None


def thread_settings() -> str:
    return ", ".join(f"{name}={os.environ.get(name, 'unset')}" for name in THREAD_VARIABLES)


# --------------------------------------------------------------------------------------------------------
# One training step: tinyllm with the trainer's recipe, and the same in PyTorch
# --------------------------------------------------------------------------------------------------------


def random_task(config: GPTConfig, batch_size: int, seed: int = 0) -> LanguageModelTask:
    """Batches of random tokens: the speed of a step does not depend on which tokens it sees."""
    stream = np.random.default_rng(seed).integers(0, config.vocab_size, 50_000 + config.block_size)
    return LanguageModelTask(stream, stream[:config.block_size + 2], batch_size, config.block_size)


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


class TorchStep:
    """The same GPT in PyTorch: tinyllm's initial weights, the same batches, the same recipe.

    Written with ``torch.nn.functional`` on a dict of leaf tensors, so it reads like the tinyllm model:
    tied embeddings, pre-LN blocks without biases, exact GELU, ``F.scaled_dot_product_attention``. As in
    nanoGPT (and the PyTorch reference), W_q, W_k and W_v are one (C, 3C) matrix, one product instead of
    three. AdamW with the same groups (decay on matrices only), ``clip_grad_norm_``, ``zero_grad``.
    """

    def __init__(self, twin: TinyllmStep, threads: int):
        import torch
        import torch.nn.functional as F

        self.torch, self.F = torch, F
        torch.set_num_threads(threads)
        self.config, self.recipe = twin.model.config, twin.recipe
        self.task = twin.task
        self.data_rng = np.random.default_rng(twin.seed)  # the twin's batches, step by step
        self.weights = self._copy_weights(twin.model)
        params = list(self.weights.values())
        r = self.recipe
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": r.weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW(groups, lr=r.lr, betas=(r.beta1, r.beta2))
        self.params = params
        self.step_count = 0
        self.losses: list[float] = []

    def _copy_weights(self, model: GPT) -> dict:
        state = model.state_dict()  # tinyllm stores Linear weights as (in, out): x @ W reads the same here

        def leaf(array):
            return self.torch.tensor(array, requires_grad=True)

        weights = {"wte": leaf(state["wte.weight"]), "wpe": leaf(state["wpe.weight"]),
                   "ln_f": leaf(state["ln_f.weight"])}
        for i in range(self.config.n_layer):
            p = f"blocks.{i}."
            qkv = np.concatenate([state[p + f"attn.{name}_proj.weight"] for name in "qkv"], axis=1)  # (C, 3C)
            weights.update({p + "ln1": leaf(state[p + "ln1.weight"]), p + "qkv": leaf(qkv),
                            p + "out": leaf(state[p + "attn.out_proj.weight"]),
                            p + "ln2": leaf(state[p + "ln2.weight"]), p + "fc1": leaf(state[p + "ff.fc1.weight"]),
                            p + "fc2": leaf(state[p + "ff.fc2.weight"])})
        return weights

    def loss(self, ids, targets):
        F, w = self.F, self.weights
        B, T = ids.shape
        C, H = self.config.n_embd, self.config.n_head
        x = F.embedding(ids, w["wte"]) + w["wpe"][:T]  # (B, T, C)
        for i in range(self.config.n_layer):
            p = f"blocks.{i}."
            q, k, v = (F.layer_norm(x, (C,), w[p + "ln1"]) @ w[p + "qkv"]).split(C, dim=2)  # 3 x (B, T, C)
            q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
            x = x + y.transpose(1, 2).reshape(B, T, C) @ w[p + "out"]  # (B, T, C)
            x = x + F.gelu(F.layer_norm(x, (C,), w[p + "ln2"]) @ w[p + "fc1"]) @ w[p + "fc2"]  # (B, T, C)
        logits = F.layer_norm(x, (C,), w["ln_f"]) @ w["wte"].T  # (B, T, V)
        return F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))

    def step(self) -> float:
        r = self.recipe
        lr = optim.warmup_cosine(self.step_count, r.lr, r.min_lr, r.warmup_iters, r.iters)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = self.task.batch("train", self.data_rng)
        loss = self.loss(self.torch.from_numpy(x), self.torch.from_numpy(y))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.params, r.grad_clip)
        self.optimizer.step()
        self.step_count += 1
        self.losses.append(loss.item())
        return self.losses[-1]


def interleaved_times(steps: dict[str, Callable[[], object]], count: int, block: int,
                      warmup: int) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of ``count`` calls per runner, in alternating blocks of ``block`` calls, after warm-up.

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
    """ms per new token for ``block_size - 1`` tokens from a 1-token prompt, cached and not (interleaved)."""
    new_tokens = model.config.block_size - 1
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
# Profiling: where does a tinyllm step spend its time?
# --------------------------------------------------------------------------------------------------------


def _function_classes() -> list[type]:
    """Every op class defined so far (all subclasses of Function, at any depth)."""
    found, todo = [], [Function]
    while todo:
        for cls in todo.pop().__subclasses__():
            if cls not in found:  # a class with two op parents is reached twice
                found.append(cls)
                todo.append(cls)
    return found


class OpTimer:
    """Seconds spent in each op class's ``forward`` and ``backward`` (a profiling tool, not library code).

    Inside ``with OpTimer() as timer:`` every op class's own ``forward``/``backward`` is replaced by a timed
    wrapper; the originals come back on exit. Times are exclusive: an op run inside another op's forward
    counts for itself only. ``timer.seconds[(name, "forward")]``, ``timer.calls[...]``.
    """

    def __init__(self):
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self._saved: list[tuple[type, str, Callable]] = []
        self._nested = [0.0]  # stack: time of timed calls inside the running one

    def __enter__(self) -> OpTimer:
        for cls in _function_classes():
            for method in ("forward", "backward"):
                if method in vars(cls):
                    original = vars(cls)[method]
                    self._saved.append((cls, method, original))
                    setattr(cls, method, self._timed((cls.__name__, method), original))
        return self

    def __exit__(self, *exc_info) -> None:
        for cls, method, original in reversed(self._saved):
            setattr(cls, method, original)
        self._saved.clear()

    def _timed(self, key: tuple[str, str], original: Callable) -> Callable:
        def timed(op, *args, **kwargs):
            self._nested.append(0.0)
            start = time.perf_counter()
            try:
                return original(op, *args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self.seconds[key] += elapsed - self._nested.pop()
                self._nested[-1] += elapsed
                self.calls[key] += 1

        return timed


def profile_training_step(setting: BenchSetting, steps: int, peak: float, top: int = 25) -> dict:
    """Print where a tinyllm step spends its time: phases, op classes (forward and backward), cProfile."""
    runner = TinyllmStep(setting.config, setting.batch_size)
    for _ in range(setting.warmup):
        runner.step()
    phases: dict[str, list[float]] = {"forward": [], "backward": [], "update": []}
    with OpTimer() as timer:
        for _ in range(steps):
            start = time.perf_counter()
            loss = runner.forward()
            after_forward = time.perf_counter()
            runner.backward(loss)
            after_backward = time.perf_counter()
            runner.update()
            phases["forward"].append(after_forward - start)
            phases["backward"].append(after_backward - after_forward)
            phases["update"].append(time.perf_counter() - after_backward)
    ms = {name: 1e3 * sum(values) / steps for name, values in phases.items()}  # means: they add up
    total = sum(ms.values())
    print(f"\nprofile of a tinyllm step, {setting.name}, mean of {steps} steps with op timers "
          f"({total:.1f} ms per step)")
    print(f"  forward (model + loss) {ms['forward']:8.1f} ms  {ms['forward'] / total:5.1%}")
    print(f"  backward               {ms['backward']:8.1f} ms  {ms['backward'] / total:5.1%}")
    print(f"  clip + AdamW + zero    {ms['update']:8.1f} ms  {ms['update'] / total:5.1%}")

    names = sorted({name for name, _ in timer.seconds},
                   key=lambda n: -(timer.seconds[(n, "forward")] + timer.seconds[(n, "backward")]))
    print(f"  {'op class':<28}{'calls/step':>11}{'forward ms':>12}{'backward ms':>13}{'total ms':>10}{'share':>8}")
    op_ms = {}
    for name in names:
        forward, backward = (1e3 * timer.seconds[(name, m)] / steps for m in ("forward", "backward"))
        op_ms[name] = {"forward_ms": round(forward, 3), "backward_ms": round(backward, 3)}
        calls = timer.calls[(name, "forward")] / steps
        print(f"  {name:<28}{calls:>11.0f}{forward:>12.2f}{backward:>13.2f}{forward + backward:>10.2f}"
              f"{(forward + backward) / total:>8.1%}")
    ops_forward = sum(v["forward_ms"] for v in op_ms.values())
    ops_backward = sum(v["backward_ms"] for v in op_ms.values())
    outside_forward, outside_backward = ms["forward"] - ops_forward, ms["backward"] - ops_backward
    print(f"  {'outside ops, forward':<39}{outside_forward:>12.2f}{'':>13}{outside_forward:>10.2f}"
          f"{outside_forward / total:>8.1%}   (layers' Python, Tensor bookkeeping, checks)")
    print(f"  {'outside ops, backward':<39}{'':>12}{outside_backward:>13.2f}{outside_backward:>10.2f}"
          f"{outside_backward / total:>8.1%}   (graph walk, unbroadcast, gradient sums)")

    tokens = setting.batch_size * setting.config.block_size
    matmul_flops = 6 * matmul_weights(setting.config) * tokens
    attention_flops = 12 * setting.config.n_layer * setting.config.block_size * setting.config.n_embd * tokens
    rates = {}
    for name, flops in (("MatMul", matmul_flops), ("ScaledDotProductAttention", attention_flops)):
        if name in op_ms:
            seconds = (op_ms[name]["forward_ms"] + op_ms[name]["backward_ms"]) / 1e3
            rates[name] = flops / seconds / 1e9
            print(f"  inside {name}: {flops / 1e9:.2f} GFLOP per step at {rates[name]:.1f} GFLOP/s "
                  f"({rates[name] / peak:.0%} of the peak)")

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        runner.step()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    print(f"\ncProfile of {steps} steps, {setting.name}, sorted by tottime (top {top}):")
    print(text.getvalue().strip("\n"))
    return {"phases_ms": {k: round(v, 3) for k, v in ms.items()}, "ops_ms": op_ms,
            "outside_ops_ms": {"forward": round(outside_forward, 3), "backward": round(outside_backward, 3)},
            "gflops_inside": {k: round(v, 2) for k, v in rates.items()}}


# --------------------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------------------


def time_training(setting: BenchSetting, steps: int, torch_threads: int | None) -> dict:
    """Median seconds per step of tinyllm, and of its PyTorch twin when ``torch_threads`` is given."""
    runners = {"tinyllm": TinyllmStep(setting.config, setting.batch_size)}
    if torch_threads is not None:
        runners["PyTorch"] = TorchStep(runners["tinyllm"], torch_threads)
    times = interleaved_times({name: runner.step for name, runner in runners.items()}, steps, setting.block,
                              setting.warmup)
    result = {"setting": setting, "parameters": runners["tinyllm"].model.num_parameters(),
              "seconds": {name: statistics.median(w for w, _ in samples) for name, samples in times.items()},
              "cpu_seconds": {name: statistics.median(c for _, c in samples) for name, samples in times.items()}}
    if torch_threads is not None:  # same weights, batches and recipe: the losses agree up to float32 rounding
        pairs = zip(runners["tinyllm"].losses, runners["PyTorch"].losses, strict=True)
        result["max_loss_difference"] = float(f"{max(abs(a - b) for a, b in pairs):.2g}")
        result["steps_compared"] = len(runners["tinyllm"].losses)
    return result


def print_training(results: list[dict], peak: float, steps: int) -> list[dict]:
    """The training table; returns its rows as plain figures (for the JSON line)."""
    print(f"\ntraining step (forward + backward + clip + AdamW), float32, median of {steps} steps per framework"
          + (", in alternating blocks" if "PyTorch" in results[0]["seconds"] else "")
          + "; ms/step is wall-clock time, CPU ms the process's CPU time (all threads)")
    print(f"{'model':<22}{'params':>9}{'tokens':>8}{'GFLOP':>8}  {'framework':<10}{'ms/step':>9}"
          f"{'tokens/s':>10}{'GFLOP/s':>9}{'of peak':>9}{'CPU ms':>9}")
    rows = []
    for result in results:
        setting = result["setting"]
        tokens = setting.batch_size * setting.config.block_size
        flops = training_flops_per_token(setting.config) * tokens
        row = {"model": setting.name, "parameters": result["parameters"], "batch_size": setting.batch_size,
               "block_size": setting.config.block_size, "tokens_per_step": tokens,
               "gflop_per_step": round(flops / 1e9, 3)}
        for index, (name, seconds) in enumerate(result["seconds"].items()):
            key = "tinyllm" if name == "tinyllm" else "torch"
            gflops, cpu_ms = flops / seconds / 1e9, 1e3 * result["cpu_seconds"][name]
            row.update({f"{key}_ms": round(1e3 * seconds, 2), f"{key}_tokens_per_s": round(tokens / seconds, 1),
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
    print("\ngeneration: block_size - 1 new tokens from a 1-token prompt, batch 1, ms per new token")
    print(f"{'model':<22}{'new':>6}{'runs':>6}{'KV cache':>10}{'no cache':>10}{'speed-up':>10}  same tokens")
    rows = []
    for setting in settings:
        model = GPT(setting.config, rng=np.random.default_rng(0))
        row = {"model": setting.name, **generation_times(model, setting.generation_repeats)}
        print(f"{setting.name:<22}{row['new_tokens']:>6}{setting.generation_repeats:>6}"
              f"{row['cache_ms_per_token']:>10.2f}{row['no_cache_ms_per_token']:>10.2f}{row['speedup']:>9.2f}x  "
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
    print(f"BLAS threads: {threads if threads is not None else 'unknown'} (read by NumPy at import from "
          f"{thread_settings()})" + (f"; PyTorch threads: {torch_threads}" if has_torch else ""))

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
    print(f"float32 matmul peak ({peak_size}^3 product, best of {peak_repeats} before and {peak_repeats} after "
          "the steps): " + ", ".join(f"{name} {value:.1f} GFLOP/s" for name, value in peaks.items())
          + f"; fractions of peak are of {peak:.1f} GFLOP/s")
    figures = {"threads": threads, "torch_threads": torch_threads,
               "peak_gflops": {name: round(value, 1) for name, value in peaks.items()},
               "training": print_training(results, peak, steps)}
    if generation:
        figures["generation"] = print_generation(settings)
    if profile:
        figures["profile"] = {setting.name: profile_training_step(setting, min(steps, 10), peak)
                              for setting in settings}
    print("\n" + json.dumps({key: value for key, value in figures.items() if key != "profile"}))
    return figures
