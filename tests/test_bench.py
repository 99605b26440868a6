"""Chapter 11, "Making it fast": the benchmark behind ``tinyllm bench`` (``tinyllm/bench/``) runs,
prints its figures, times the trainer's own step, and counts FLOPs as benchmarks/README.md derives.
No timing is asserted (the test machine's speed is nobody's business here).
"""

import importlib.machinery
import importlib.util
import json
import sys
import types

import numpy as np
import pytest

from tinyllm import train
from tinyllm.backend import DeviceError, cuda_available
from tinyllm.bench import run_benchmarks
from tinyllm.bench.peak import matmul_gflops
from tinyllm.bench.profiling import OpTimer
from tinyllm.bench.run import torch_device_for
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


# --- on "cuda" (issue 13): the strict CuPy stand-in (tests/fake_cupy.py) without a GPU ------------
def fake_torch_without_cuda(monkeypatch) -> None:
    """An installed PyTorch that sees no CUDA GPU (only what run_benchmarks asks of it)."""
    torch = types.ModuleType("torch")
    torch.__spec__ = importlib.machinery.ModuleSpec("torch", None)
    torch.__version__ = "9.9"
    torch.cuda = types.SimpleNamespace(is_available=lambda: False)
    monkeypatch.setitem(sys.modules, "torch", torch)


def test_a_step_on_cuda_equals_the_cpu_step_with_one_transfer(strict_device):
    """TinyllmStep(device="cuda"): the model on the device, the same losses as on the cpu (bit
    for bit on the stand-in), and one device->host transfer per step (the loss and the norm)."""
    setting = TINY_SETTINGS[1]
    cpu = TinyllmStep(setting.config, setting.batch_size)
    cuda = TinyllmStep(setting.config, setting.batch_size, device="cuda")
    assert {p.device for p in cuda.model.parameters()} == {"cuda"}
    transfers = []
    for _ in range(3):
        strict_device.reset()
        assert cuda.step() == cpu.step()
        transfers.append(strict_device.TRANSFERS["to_host"])
    assert transfers == [1, 1, 1]
    for (name, p), (_, q) in zip(cpu.model.named_parameters(), cuda.model.named_parameters()):
        np.testing.assert_array_equal(q.numpy(), p.numpy(), err_msg=name)


def test_the_peak_on_cuda_is_the_device_matmul_synchronised(strict_device):
    """matmul_gflops(cupy): device operands, one synchronising transfer per product (a warm-up
    and ``repeats`` timed products)."""
    products = []
    original = strict_device.matmul

    def recording(a, b, out=None):
        products.append((type(a), type(b), type(out)))
        return original(a, b, out=out)

    strict_device.matmul = recording
    try:
        strict_device.reset()
        gflops = matmul_gflops(strict_device, size=64, repeats=3)
    finally:
        strict_device.matmul = original
    assert gflops > 0 and np.isfinite(gflops)
    assert products == [(strict_device.ndarray,) * 3] * 4
    assert strict_device.TRANSFERS["to_host"] == 4
    assert matmul_gflops(np, size=64, repeats=2) > 0  # the cpu: NumPy, nothing to wait for


def test_a_cuda_run_names_the_device_and_says_pytorch_cuda_is_missing(strict_device, monkeypatch,
                                                                     capsys):
    fake_torch_without_cuda(monkeypatch)
    figures = tiny_run(steps=2, quick=True, device="cuda")
    out = capsys.readouterr().out
    assert "PyTorch 9.9 (PyTorch CUDA not available: tinyllm only)" in out.splitlines()[0]
    assert out.splitlines()[1].startswith("device: cuda (")
    assert "CuPy" in out and "NumPy " not in out.split("matmul peak")[1].splitlines()[0]
    printed = json.loads(out.strip().splitlines()[-1])
    assert printed == json.loads(json.dumps(figures))
    assert printed["device"] == "cuda" and set(printed["peak_gflops"]) == {"CuPy"}
    assert printed["torch_threads"] is None and "torch_ms" not in printed["training"][0]
    assert printed["training"][0]["tinyllm_ms"] > 0
    assert printed["generation"][0]["same_tokens"] is True


def test_pytorch_is_timed_on_the_benchmarks_device(monkeypatch):
    assert torch_device_for("cpu", compare_torch=False) == (None, " (PyTorch not timed)")
    fake_torch_without_cuda(monkeypatch)
    assert torch_device_for("cpu", True) == ("cpu", ", PyTorch 9.9")
    assert torch_device_for("cuda", True) == (
        None, ", PyTorch 9.9 (PyTorch CUDA not available: tinyllm only)")
    monkeypatch.setattr(sys.modules["torch"].cuda, "is_available", lambda: True)
    assert torch_device_for("cuda", True) == ("cuda", ", PyTorch 9.9")
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert torch_device_for("cuda", True) == (None, " (PyTorch not installed: tinyllm only)")


def test_profiling_on_cuda_is_refused_before_any_timing(strict_device, capsys):
    with pytest.raises(ValueError, match="profile with device='cpu'"):
        tiny_run(steps=2, profile=True, device="cuda")
    assert capsys.readouterr().out == ""


@pytest.mark.skipif(cuda_available(), reason="checks the message without a GPU")
def test_cuda_without_a_gpu_is_the_one_unavailable_error(capsys):
    with pytest.raises(DeviceError, match="device 'cuda' requested but unavailable"):
        tiny_run(steps=2, device="cuda")
    assert capsys.readouterr().out == ""
