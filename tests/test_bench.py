"""Chapter 11, "Making it fast": the benchmark behind ``tinyllm bench`` (``tinyllm/bench/``) runs,
prints its figures, times the trainer's own step, and counts FLOPs as benchmarks/README.md derives.
No timing is asserted (the test machine's speed is nobody's business here).
"""

import importlib.util
import json

import numpy as np
import pytest

from tinyllm import train
from tinyllm.bench import run_benchmarks
from tinyllm.bench.profiling import OpTimer
from tinyllm.bench.training import (
    BenchSetting,
    TinyllmStep,
    matmul_weights,
    training_flops_per_token,
)
from tinyllm.models import GPT, GPT_PRESETS, GPTConfig
from tinyllm.nn.attention import ScaledDotProductAttention
from tinyllm.ops import MatMul
from tinyllm.tensor import Tensor

pytestmark = pytest.mark.ch11

HAS_TORCH = importlib.util.find_spec("torch") is not None

TINY_SETTINGS = [  # seconds, not minutes
    BenchSetting("tiny-1", GPTConfig(context_length=8, num_layers=1, num_heads=2, d_model=16),
                 batch_size=2, block=1, warmup=1),
    BenchSetting("tiny-2", GPTConfig(context_length=8, num_layers=2, num_heads=2, d_model=16),
                 batch_size=2, block=1, warmup=1),
]


def tiny_run(**options) -> dict:
    """run_benchmarks on the tiny shapes, with a small matmul for the peak."""
    return run_benchmarks(settings=TINY_SETTINGS, peak_size=256, peak_repeats=2, **options)


def test_tiny_run_prints_every_figure_and_one_json_line(capsys):
    figures = tiny_run(steps=2, quick=True)
    out = capsys.readouterr().out
    for field in ("BLAS threads", "matmul peak", "ms/step", "tokens/s", "GFLOP/s", "of peak",
                  "KV cache", "no cache", "speed-up", "tiny-1"):
        assert field in out
    assert "tiny-2" not in out  # quick: the first model only
    printed = json.loads(out.strip().splitlines()[-1])
    assert printed == json.loads(json.dumps(figures))
    (row,) = printed["training"]
    config = TINY_SETTINGS[0].config
    assert row["tokens_per_step"] == TINY_SETTINGS[0].batch_size * config.context_length
    assert row["tinyllm_ms"] > 0 and row["tinyllm_gflops"] > 0
    tokens_per_s = row["tokens_per_step"] / row["tinyllm_ms"] * 1e3
    assert row["tinyllm_tokens_per_s"] == pytest.approx(tokens_per_s, rel=0.02)
    (gen,) = printed["generation"]
    assert gen["new_tokens"] == config.context_length - 1 and gen["same_tokens"] is True
    if HAS_TORCH:
        assert row["max_loss_difference"] < 1e-4 and row["ratio_tinyllm_over_torch"] > 0


def test_profile_mode_times_op_classes_and_restores_them(capsys):
    original_forward, original_backward = MatMul.forward, MatMul.backward
    original_tensor_backward = Tensor.backward
    figures = tiny_run(steps=2, quick=True, compare_torch=False, generation=False, profile=True)
    out = capsys.readouterr().out
    for field in ("forward (model + loss)", "backward", "clip + AdamW", "MatMul",
                  "ScaledDotProductAttention", "outside ops", "cProfile", "tottime"):
        assert field in out
    assert MatMul.forward is original_forward and MatMul.backward is original_backward
    assert Tensor.backward is original_tensor_backward  # the backward-phase timer is gone too
    profile = figures["profile"]["tiny-1"]
    assert set(profile["phases_ms"]) == {"forward", "backward", "update"}
    assert {"MatMul", "LayerNormFunction", "CrossEntropy"} <= set(profile["ops_ms"])


def test_op_timer_counts_every_product_of_a_step():
    """L blocks of 6 products (q, k, v, out, fc1, fc2) plus the output layer; each forward has a
    backward."""
    setting = TINY_SETTINGS[1]
    runner = TinyllmStep(setting.config, setting.batch_size)
    with OpTimer() as timer:
        runner.step()
        runner.step()
    L = setting.config.num_layers
    assert timer.calls[("MatMul", "forward")] == 2 * (6 * L + 1)
    assert timer.calls[("MatMul", "backward")] == timer.calls[("MatMul", "forward")]
    assert timer.calls[("ScaledDotProductAttention", "forward")] == 2 * L
    assert all(seconds >= 0 for seconds in timer.seconds.values())


def test_flop_count_matches_the_products_the_model_computes(monkeypatch):
    """F = 2 N_mm + 4 L T C per token: count 2 M K N over the MatMul and attention products of a
    forward pass."""
    config = GPTConfig(vocab_size=11, context_length=6, num_layers=2, num_heads=2, d_model=8)
    B, T = 3, config.context_length
    counted = []

    def counting(original, products):
        def forward(op, *arrays):
            counted.append(products(*arrays))
            return original(op, *arrays)
        return forward

    def matmul_flops(a, b):  # (..., M, K) @ (K, N)
        return 2 * int(np.prod(a.shape[:-1])) * a.shape[-1] * b.shape[-1]

    def attention_flops(q, k, v):  # Q K^T: (.., T, D) @ (.., D, T);  P V: (.., T, T) @ (.., T, D)
        return 2 * q.size * k.shape[-2] + 2 * q.shape[-2] * v.size

    monkeypatch.setattr(MatMul, "forward", counting(MatMul.forward, matmul_flops))
    monkeypatch.setattr(ScaledDotProductAttention, "forward",
                        counting(ScaledDotProductAttention.forward, attention_flops))
    GPT(config, rng=np.random.default_rng(0))(np.zeros((B, T), dtype=np.int64))
    assert sum(counted) * 3 == training_flops_per_token(config) * B * T
    # the closed form for the benchmark's small model (benchmarks/README.md): 6 N_mm + 12 L T C
    small = GPT_PRESETS["shakespeare-char"]
    assert matmul_weights(small) == 12 * 4 * 128 ** 2 + 70 * 128 == 795_392
    assert training_flops_per_token(small) == 6 * 795_392 + 12 * 4 * 64 * 128 == 5_165_568


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_torch_twin_follows_the_same_trajectory():
    setting = TINY_SETTINGS[1]
    ours = TinyllmStep(setting.config, setting.batch_size)
    from tinyllm.bench.torch_twin import TorchStep

    theirs = TorchStep(ours.model.config, ours.model.state_dict(), ours.task, ours.recipe,
                       ours.scheduler.schedule, ours.seed, threads=1)
    for _ in range(4):
        assert ours.step() == pytest.approx(theirs.step(), abs=1e-5)


def test_bad_step_count_is_refused():
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        tiny_run(steps=0)


def test_the_benchmark_times_the_trainers_own_step(monkeypatch):
    """TinyllmStep.step is tinyllm.train.train_step with the trainer's recipe (clipping at 1.0)."""
    calls = []
    original = train.train_step

    def recording(model, task, data_rng, optimizer, scheduler, grad_clip, grad_accum):
        calls.append((grad_clip, grad_accum, scheduler.step_count))
        return original(model, task, data_rng, optimizer, scheduler, grad_clip, grad_accum)

    monkeypatch.setattr("tinyllm.bench.training.train_step", recording)
    setting = TINY_SETTINGS[0]
    runner = TinyllmStep(setting.config, setting.batch_size)
    losses = [runner.step(), runner.step()]
    recipe = train.TrainConfig()
    assert calls == [(recipe.grad_clip, recipe.grad_accum, 0),
                     (recipe.grad_clip, recipe.grad_accum, 1)]
    assert runner.losses == losses
    assert runner.optimizer.step_count == runner.scheduler.step_count == 2
    expected_lr = train.build_scheduler(recipe, runner.optimizer).schedule(1)
    assert runner.optimizer.param_groups[0]["lr"] == expected_lr
