"""Chapter 16 in the trainer and the command line: ``tinyllm train --precision``, ``tinyllm
quantize`` (a checkpoint ``tinyllm sample`` reads), ``tinyllm prune`` (masks that ``train
--resume`` keeps), the loss scaler's state and the masks in the checkpoint for an exact resume,
and the same on "cuda" (the strict CuPy stand-in when there is no GPU).

Every run is tiny: the 2-layer, width-16 GPT of tests/test_11_train.py on a synthetic play.
"""

import contextlib
import dataclasses
import io
import json

import numpy as np
import pytest
from synthetic import synthetic_play

import tinyllm as tl
import tinyllm.compress.training as CT
import tinyllm.train as T
from tinyllm.checkpoint import CheckpointError, load_checkpoint
from tinyllm.checkpoint.quantized import (
    load_for_inference,
    load_quantized_checkpoint,
    save_quantized_checkpoint,
)
from tinyllm.checkpoint.safetensors import load_safetensors, save_safetensors
from tinyllm.cli import generate_text, main
from tinyllm.compress import LossScaler, MixedPrecision, quantize_model
from tinyllm.models import GPT, GPT_PRESETS, GPTConfig
from tinyllm.nn import Parameter
from tinyllm.runs import NonFiniteError

pytestmark = pytest.mark.ch16

TINY = GPTConfig(vocab_size=1, context_length=8, num_layers=2, num_heads=2, d_model=16)


@pytest.fixture(autouse=True)
def tiny_preset(monkeypatch):
    monkeypatch.setitem(GPT_PRESETS, "tiny", TINY)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "play.txt"
    path.write_text(synthetic_play(), encoding="utf-8")
    return path


def config(text_file, out, **changes) -> T.TrainConfig:
    base = T.TrainConfig(preset="tiny", data=str(text_file), iters=6, batch_size=4, warmup_iters=2,
                         eval_interval=100, eval_iters=2, final_eval_iters=2,
                         checkpoint_interval=100, sample_tokens=0, out_dir=str(out))
    return dataclasses.replace(base, **changes)


def quiet(cfg, resume=False) -> dict:
    return T.train(cfg, resume=resume, progress=False, log=lambda message: None)


def cli(argv) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in argv])
    return code, out.getvalue()


def scaler_with(init_scale: float, growth_interval: int):
    """A MixedPrecision factory whose float16 loss scaler starts at ``init_scale``."""
    def make(model, precision):
        enabled = precision == "fp16"
        return MixedPrecision(model, precision, LossScaler(init_scale, growth_interval,
                                                           enabled=enabled))
    return make


# ==================================================================================================
# tinyllm train --precision
# ==================================================================================================


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_a_mixed_precision_run_keeps_float32_master_weights(precision, text_file, tmp_path):
    metrics = quiet(config(text_file, tmp_path / "run", precision=precision))
    model, _, info = load_checkpoint(tmp_path / "run")
    assert metrics["precision"] == precision and np.isfinite(metrics["val_loss"])
    assert all(p.dtype == np.float32 for p in model.parameters())
    assert info["settings"]["precision"] == precision
    scaler = info["loss_scaler"]
    assert scaler["enabled"] is (precision == "fp16")
    assert scaler["loss_scale"] == (2.0 ** 16 if precision == "fp16" else 1.0) * \
        0.5 ** scaler["skipped_steps"]  # growth_interval 2000: no growth in 6 steps
    assert metrics["skipped_steps"] == scaler["skipped_steps"]


def test_bf16_follows_fp32_closely_at_equal_steps(text_file, tmp_path):
    fp32 = quiet(config(text_file, tmp_path / "fp32", iters=20))
    bf16 = quiet(config(text_file, tmp_path / "bf16", iters=20, precision="bf16"))
    assert abs(bf16["val_loss"] - fp32["val_loss"]) < 0.05  # 2^-8 rounding, 20 steps


def test_a_float16_overflow_skips_the_step_and_the_run_goes_on(text_file, tmp_path, monkeypatch):
    """S = 2^40: every scaled gradient is inf in float16, so all 6 steps are skipped (the scale
    halves each time); the run does not stop, and the weights are still the initial ones."""
    monkeypatch.setattr(CT, "MixedPrecision", scaler_with(2.0 ** 40, 2000))
    metrics = quiet(config(text_file, tmp_path / "run", precision="fp16"))
    model, tokenizer, info = load_checkpoint(tmp_path / "run")
    assert metrics["skipped_steps"] == 6 and info["loss_scaler"]["loss_scale"] == 2.0 ** 34
    assert len(info["history"]["train_loss"]) == 6
    assert all(np.isfinite(info["history"]["train_loss"]))  # the loss itself was finite
    initial = T.build_model("gpt", dataclasses.replace(TINY, vocab_size=tokenizer.vocab_size),
                            1337)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, initial.state_dict()[name], err_msg=name)


def test_a_float16_run_resumes_exactly_with_its_loss_scaler(text_file, tmp_path, monkeypatch):
    """S starts at 2^18 and grows every 2 clean steps: 3 steps then resume to 6 == 6 at once
    (weights, losses, the scaler's state), which needs the scaler's state in the checkpoint."""
    monkeypatch.setattr(CT, "MixedPrecision", scaler_with(2.0 ** 18, 2))
    constant = dict(lr=1e-3, min_lr=1e-3, warmup_iters=0, precision="fp16")
    quiet(config(text_file, tmp_path / "once", **constant))
    short = config(text_file, tmp_path / "twice", iters=3, **constant)
    quiet(short)
    quiet(dataclasses.replace(short, iters=6), resume=True)
    (w1, _, i1), (w2, _, i2) = (load_checkpoint(tmp_path / n) for n in ("once", "twice"))
    assert i1["history"]["train_loss"] == i2["history"]["train_loss"]
    assert i1["loss_scaler"] == i2["loss_scaler"]
    assert i1["loss_scaler"]["skipped_steps"] >= 1  # the state machine did move
    for name, value in w1.state_dict().items():
        np.testing.assert_array_equal(value, w2.state_dict()[name], err_msg=name)


class SqrtAtZero:
    """A task whose loss sum(sqrt(w - w)) is 0 but whose gradient 1 / (2 sqrt(0)) is inf."""

    tokens_per_batch = 1

    def batch(self, split, rng):
        return None

    def loss(self, model, batch):
        w = model.model.weight  # model: MixedPrecision's Float32Output around Single
        return (w - tl.tensor(w.data.astype(np.float32))).astype(np.float32).sqrt().sum()


class Single(tl.nn.Module):
    def __init__(self):
        self.weight = Parameter(np.ones(3, dtype=np.float32))

    def forward(self, x):
        return x


@pytest.mark.parametrize("precision, message", [
    ("bf16", "the gradients are not finite at loss scale 1"),
    ("fp16", "the gradients are not finite at loss scale 1 "),
])
def test_non_finite_gradients_that_no_scale_explains_stop_the_run(precision, message):
    """bf16 has no loss scaler: an inf gradient is the run's. fp16 skips it while S >= 1."""
    model = Single()
    run = CT.RunCompression(model, precision)
    if precision == "fp16":
        run.mixed.scaler.loss_scale = 1.0  # the next overflow halves it below 1
    optimizer = tl.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = tl.optim.LRScheduler(optimizer, lambda step: 1e-3)
    with pytest.raises(NonFiniteError, match=message), np.errstate(divide="ignore"):
        run.step(SqrtAtZero(), np.random.default_rng(0), optimizer, scheduler, 1.0, 1)
    np.testing.assert_array_equal(model.weight.data, np.ones(3))  # no update


# ==================================================================================================
# tinyllm quantize -> tinyllm sample
# ==================================================================================================


@pytest.fixture
def trained(text_file, tmp_path):
    quiet(config(text_file, tmp_path / "run", iters=10))
    return tmp_path / "run"


@pytest.mark.parametrize("bits, group", [(8, None), (8, 8), (4, 8)])
def test_quantize_writes_a_checkpoint_that_sample_reads(bits, group, trained, tmp_path):
    out = tmp_path / f"q{bits}.safetensors"
    argv = ["quantize", "--checkpoint", trained, "--bits", bits, "--out", out]
    code, printed = cli(argv + (["--group-size", group] if group else []))
    report = json.loads(printed)
    assert code == 0 and report["bytes"] == out.stat().st_size
    assert report["bytes"] < report["float32_bytes"] / 3  # no optimizer moments, 1 byte a weight
    model, tokenizer, info = load_checkpoint(trained)
    expected = quantize_model(model, bits, group)
    loaded, loaded_tokenizer, loaded_info = load_quantized_checkpoint(out)
    assert loaded_tokenizer.to_dict() == tokenizer.to_dict() and loaded_info["source"]["step"] == 10
    ids = np.array([tokenizer.encode("the king ")[:8]])
    with tl.no_grad():
        np.testing.assert_array_equal(loaded(ids).numpy(), expected(ids).numpy())
    text = generate_text(str(out), "the ", 20, temperature=0.0)  # what `tinyllm sample` runs
    with tl.no_grad():
        greedy = expected.generate(np.array([tokenizer.encode("the ")]), 20, temperature=0.0)
    assert text == tokenizer.decode(greedy[0].tolist())
    assert cli(["sample", "--checkpoint", out, "--tokens", 5, "--prompt", "the "])[0] == 0


def test_load_for_inference_reads_both_kinds_of_checkpoint(trained, tmp_path):
    out = tmp_path / "q.safetensors"
    cli(["quantize", "--checkpoint", trained, "--out", out])
    assert isinstance(load_for_inference(trained)[0], GPT)
    assert type(load_for_inference(out)[0]).__name__ == "QuantizedModel"


def test_a_quantized_checkpoint_is_checked_before_it_is_trusted(trained, tmp_path):
    out = tmp_path / "q.safetensors"
    cli(["quantize", "--checkpoint", trained, "--out", out])
    arrays, metadata = load_safetensors(out)
    bigger = dict(json.loads(metadata["model_config"]), num_layers=40)
    save_safetensors(tmp_path / "big.safetensors", arrays,
                     {**metadata, "model_config": json.dumps(bigger)})
    with pytest.raises(CheckpointError, match="parameters but the file holds"):
        load_quantized_checkpoint(tmp_path / "big.safetensors")
    levels = next(name for name in arrays if name.endswith(".weight.q"))
    save_safetensors(tmp_path / "f.safetensors", {**arrays, levels: arrays[levels] * 1.0},
                     metadata)
    with pytest.raises(CheckpointError, match="expected I8 for bits=8"):
        load_quantized_checkpoint(tmp_path / "f.safetensors")
    spec = dict(json.loads(metadata["quantization"]), bits=5)
    save_safetensors(tmp_path / "s.safetensors", arrays,
                     {**metadata, "quantization": json.dumps(spec)})
    with pytest.raises(CheckpointError, match="bits must be 8"):
        load_quantized_checkpoint(tmp_path / "s.safetensors")
    with pytest.raises(CheckpointError, match="not a quantized tinyllm checkpoint"):
        load_quantized_checkpoint(trained / "checkpoint.safetensors")


# ==================================================================================================
# tinyllm prune -> tinyllm train --resume
# ==================================================================================================


def test_pruned_weights_stay_zero_through_fine_tuning(trained, tmp_path):
    pruned = tmp_path / "pruned"
    code, printed = cli(["prune", "--checkpoint", trained, "--sparsity", 0.6, "--out", pruned])
    assert code == 0 and abs(json.loads(printed)["sparsity"] - 0.6) < 1e-3
    model, _, info = load_checkpoint(pruned)
    masks = info["masks"]
    assert masks and all(name.endswith(".weight") for name in masks)
    for name, p in model.named_parameters():
        if name in masks:
            assert np.all(p.numpy()[~masks[name]] == 0)
    source = load_checkpoint(trained)[2]
    assert info["step"] == source["step"] and info["history"] == source["history"]
    fine_tune = dataclasses.replace(T.saved_train_config(pruned), iters=16, out_dir=str(pruned))
    quiet(fine_tune, resume=True)
    tuned, _, tuned_info = load_checkpoint(pruned)
    assert tuned_info["step"] == 16 and set(tuned_info["masks"]) == set(masks)
    before = dict(model.named_parameters())
    moved = 0
    for name, p in tuned.named_parameters():
        if name in masks:
            assert np.all(p.numpy()[~masks[name]] == 0), name  # AdamW would have moved them
            moved += int(np.any(p.numpy()[masks[name]] != before[name].numpy()[masks[name]]))
    assert moved == len(masks)  # the kept weights did train


def test_pruning_a_pruned_run_keeps_what_was_pruned(trained, tmp_path):
    cli(["prune", "--checkpoint", trained, "--sparsity", 0.5, "--out", tmp_path / "a"])
    cli(["prune", "--checkpoint", tmp_path / "a", "--sparsity", 0.3, "--out", tmp_path / "b"])
    first, second = load_checkpoint(tmp_path / "a")[2]["masks"], \
        load_checkpoint(tmp_path / "b")[2]["masks"]
    for name in first:
        assert not np.any(second[name] & ~first[name])


def test_a_mask_that_fits_no_weight_is_refused(trained, tmp_path):
    cli(["prune", "--checkpoint", trained, "--sparsity", 0.5, "--out", tmp_path / "p"])
    path = tmp_path / "p" / "checkpoint.safetensors"
    arrays, metadata = load_safetensors(path)
    name = next(n for n in arrays if n.startswith("mask."))
    arrays[name] = arrays[name][:-1]
    save_safetensors(tmp_path / "bad.safetensors", arrays, metadata)
    with pytest.raises(CheckpointError, match="names no weight of its shape"):
        load_checkpoint(tmp_path / "bad.safetensors")


# ==================================================================================================
# The same on "cuda"
# ==================================================================================================


@pytest.mark.parametrize("matmul", ["dequant", "int8"])
def test_a_quantized_model_runs_on_the_device(device, matmul):
    model = GPT(dataclasses.replace(TINY, vocab_size=11), rng=np.random.default_rng(0))
    ids = np.random.default_rng(1).integers(0, 11, size=(2, 8))
    with tl.no_grad():
        expected = quantize_model(model, 8, 8, matmul)(ids).numpy()
        moved = quantize_model(model, 8, 8, matmul).to(device)
        logits = moved(tl.tensor(ids, device=device))
        assert logits.device == device
        np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-5, atol=1e-5)
        assert moved.generate(np.zeros((1, 1), dtype=np.int64), 4, temperature=0.0).shape \
            == (1, 5)
    arrays = moved.quantized_state_dict()  # host arrays for the file
    assert all(type(a) is np.ndarray for a in arrays.values())


def test_a_pruned_bf16_run_trains_on_the_device(device, text_file, tmp_path):
    quiet(config(text_file, tmp_path / "run", iters=4, device=device))
    cli(["prune", "--checkpoint", tmp_path / "run", "--sparsity", 0.5, "--out", tmp_path / "p"])
    resumed = dataclasses.replace(T.saved_train_config(tmp_path / "p"), iters=7,
                                  out_dir=str(tmp_path / "p"), device=device)
    quiet(resumed, resume=True)
    model, _, info = load_checkpoint(tmp_path / "p")
    for name, p in model.named_parameters():
        if name in info["masks"]:
            assert np.all(p.numpy()[~info["masks"][name]] == 0), name
    metrics = quiet(config(text_file, tmp_path / "bf16", iters=3, device=device,
                           precision="bf16"))
    assert np.isfinite(metrics["val_loss"]) and metrics["skipped_steps"] == 0


def test_save_quantized_checkpoint_names_its_source(trained, tmp_path):
    model, tokenizer, _ = load_checkpoint(trained)
    save_quantized_checkpoint(tmp_path / "q.safetensors", quantize_model(model, 4, 8), tokenizer,
                              "gpt", {"path": "somewhere", "step": 3})
    _, _, info = load_quantized_checkpoint(tmp_path / "q.safetensors")
    assert info["spec"].bits == 4 and info["source"] == {"path": "somewhere", "step": 3}
