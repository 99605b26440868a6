"""Chapter 11, "Training": the training loop of ``tinyllm/train.py`` end to end, for GPT and BERT.

Every run here is tiny (a 2-layer, 16-wide model, a few steps, on a short text written to
``tmp_path``), so the whole file runs in seconds. Under test: what a run writes (metrics.json,
loss.png, the checkpoint) and what the checkpoint holds; the exact resume (the same losses and the
same weights as a run that was never stopped, including the dropout generators of BERT); Ctrl-C in a
real ``python -m tinyllm train`` process; gradient accumulation (the loss and gradient of k
micro-batches equal those of one batch k times larger); the learning-rate schedule (eq. 9.11); the
fixed 90/10 split of ``--data``; clear errors for bad checkpoints and for resuming with other
settings.
"""

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from synthetic import synthetic_play

import tinyllm as tl
import tinyllm.train as T
from tinyllm import optim
from tinyllm.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    CheckpointError,
    load_checkpoint,
    load_safetensors,
    save_model,
    save_safetensors,
)
from tinyllm.corpus import load_corpus, load_text
from tinyllm.models import (
    BERT_PRESETS,
    GPT_PRESETS,
    BERTConfig,
    GPTConfig,
    gpt_parameter_count,
)
from tinyllm.objectives import BERT_SPECIAL_TOKENS, LanguageModelTask
from tinyllm.tokenizers import CharTokenizer

pytestmark = pytest.mark.ch11

# vocab_size: the tokenizer's
TINY_GPT = GPTConfig(vocab_size=1, context_length=8, num_layers=2, num_heads=2, d_model=16)
TINY_BERT = BERTConfig(vocab_size=1, context_length=16, num_layers=2, num_heads=2, d_model=16,
                       d_ff=32)  # dropout 0.1


@pytest.fixture(autouse=True)
def tiny_presets(monkeypatch):
    """Register the tiny shapes as presets "tiny" and "tiny-bert" for the duration of each test."""
    monkeypatch.setitem(GPT_PRESETS, "tiny", TINY_GPT)
    monkeypatch.setitem(BERT_PRESETS, "tiny-bert", TINY_BERT)




@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "play.txt"
    path.write_text(synthetic_play(), encoding="utf-8")
    return path


def gpt_config(text_file: Path, out: Path, **changes) -> T.TrainConfig:
    config = T.TrainConfig(preset="tiny", data=str(text_file), iters=8, batch_size=4,
                           warmup_iters=2, eval_interval=100, eval_iters=2, final_eval_iters=2,
                           checkpoint_interval=100, sample_tokens=0, out_dir=str(out))
    return dataclasses.replace(config, **changes)


def bert_config(text_file: Path, out: Path, **changes) -> T.TrainConfig:
    config = T.TrainConfig(model="bert", preset="tiny-bert", tokenizer="bpe", bpe_vocab_size=300,
                           data=str(text_file), iters=8, batch_size=4, lr=5e-4, min_lr=5e-5,
                           warmup_iters=2, weight_decay=0.01, beta2=0.999, eval_interval=100,
                           eval_iters=2, final_eval_iters=2, checkpoint_interval=100,
                           sample_tokens=0, out_dir=str(out))
    return dataclasses.replace(config, **changes)


def quiet(config: T.TrainConfig, resume: bool = False, log=None) -> dict:
    return T.train(config, resume=resume, progress=False, log=log or (lambda message: None))


def saved_state(out_dir) -> tuple[dict, dict]:
    model, _, info = load_checkpoint(out_dir)
    return model.state_dict(), info["history"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# ==================================================================================================
# What a run writes
# ==================================================================================================


def test_a_run_writes_metrics_loss_curve_and_checkpoint(text_file, tmp_path):
    config = gpt_config(text_file, tmp_path / "run")
    messages = []
    metrics = quiet(config, log=messages.append)
    out = tmp_path / "run"
    assert json.loads((out / "metrics.json").read_text()) == metrics
    for key in ("val_loss", "train_loss", "iters", "tokens_per_s", "wall_s", "val_perplexity",
                "parameters"):
        assert key in metrics
    vocab = len(set(synthetic_play()))
    shape = dataclasses.replace(TINY_GPT, vocab_size=vocab)
    assert metrics["iters"] == 8 and metrics["parameters"] == gpt_parameter_count(shape)
    assert metrics["tokens_per_s"] > 0 and metrics["wall_s"] >= 0
    assert 0 < metrics["val_loss"] < 2 * math.log(vocab)
    assert 0 < metrics["train_loss"] < 2 * math.log(vocab)
    assert metrics["val_perplexity"] == pytest.approx(math.exp(metrics["val_loss"]), rel=1e-3)
    assert messages[0] == (f"GPT tiny: {gpt_parameter_count(shape):,} parameters, "
                           f"vocabulary {vocab}, 32 tokens per step")
    png = (out / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    assert (out / CHECKPOINT_NAME).is_file()
    assert not list(out.glob("*.tmp"))  # the atomic write left no temporary file


def test_history_follows_the_warmup_cosine_schedule(text_file, tmp_path):
    """lr(step) = max_lr (step + 1) / (warmup + 1) during warm-up, then a half cosine to min_lr
    (eq. 9.11)."""
    config = gpt_config(text_file, tmp_path / "run", iters=10, warmup_iters=3, eval_interval=4)
    quiet(config)
    _, history = saved_state(tmp_path / "run")
    assert history["step"] == list(range(1, 11))
    expected = [1e-3 * (s + 1) / 4 for s in range(3)]
    expected += [1e-4 + 0.5 * (1 + math.cos(math.pi * (s - 3) / 7)) * (1e-3 - 1e-4)
                 for s in range(3, 10)]
    np.testing.assert_allclose(history["lr"], expected, rtol=1e-12)
    assert len(history["train_loss"]) == 10 and all(np.isfinite(history["train_loss"]))
    assert history["eval_step"] == [4, 8, 10]  # every eval_interval steps, and the final estimate


def test_checkpoint_holds_the_trained_model_and_tokenizer(text_file, tmp_path, monkeypatch):
    built = []
    original = T.build_model

    def recording_build_model(kind, shape, seed):
        built.append(original(kind, shape, seed))
        return built[-1]

    monkeypatch.setattr(T, "build_model", recording_build_model)
    config = gpt_config(text_file, tmp_path / "run")
    quiet(config)
    trained = built[0]
    model, tokenizer, info = load_checkpoint(tmp_path / "run")
    assert model is not trained and type(model) is type(trained)
    assert_same_weights(model.state_dict(), trained.state_dict())
    ids = np.random.default_rng(0).integers(0, tokenizer.vocab_size, (2, 8))
    with tl.no_grad():
        np.testing.assert_array_equal(model(ids).numpy(), trained(ids).numpy())
    # the tokenizer is the alphabet of the whole file, and round-trips it
    text = synthetic_play()
    assert isinstance(tokenizer, CharTokenizer) and tokenizer.chars == sorted(set(text))
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert T.TrainConfig(**info["settings"]) == config and info["step"] == 8
    assert info["scheduler_state"] == {"step_count": 8}
    assert info["shape"] == dataclasses.replace(TINY_GPT, vocab_size=tokenizer.vocab_size)
    assert info["optimizer_state"]["step_count"] == 8 and "data" in info["generators"]
    # the file or its folder; a safetensors file tagged as a tinyllm checkpoint
    again, _, _ = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    assert_same_weights(again.state_dict(), model.state_dict())
    _, metadata = load_safetensors(tmp_path / "run" / CHECKPOINT_NAME)
    assert metadata["format"] == CHECKPOINT_FORMAT and metadata["model_kind"] == "gpt"


def test_checkpoints_are_written_every_checkpoint_interval(text_file, tmp_path, monkeypatch):
    steps = []
    original = T.save_checkpoint

    def recording_save(*args, step, **kwargs):
        steps.append(step)
        original(*args, step=step, **kwargs)

    monkeypatch.setattr(T, "save_checkpoint", recording_save)
    quiet(gpt_config(text_file, tmp_path / "run", checkpoint_interval=3))
    assert steps[:2] == [3, 6] and steps[2:] and set(steps[2:]) == {8}


@pytest.mark.parametrize("kind", [
    "gpt",
    "bert",
])
def test_reported_losses_are_evaluations_of_the_saved_model(kind, text_file, tmp_path):
    """metrics.json's val_loss and train_loss are the task's evaluation of the final model, without
    dropout."""
    make = gpt_config if kind == "gpt" else bert_config
    config = make(text_file, tmp_path / "run")
    metrics = quiet(config)
    model, tokenizer, info = load_checkpoint(tmp_path / "run")
    task = T.build_task(config, tokenizer, info["shape"], *load_text(text_file))
    model.eval()
    val = task.evaluate(model, "val", config.final_eval_iters, seed=config.seed + 1)
    train = task.evaluate(model, "train", config.final_eval_iters, seed=config.seed + 2)
    assert metrics["val_loss"] == round(val["loss"], 4)
    assert metrics["train_loss"] == round(train["loss"], 4)
    if kind == "bert":
        assert metrics["mlm_accuracy"] == round(val["mlm_accuracy"], 4)


def test_bert_run_reports_masked_token_accuracy_and_its_baseline(text_file, tmp_path):
    metrics = quiet(bert_config(text_file, tmp_path / "bert"))
    for key in ("mlm_accuracy", "baseline_accuracy", "nsp_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["baseline_accuracy"] > 0  # the most frequent token is among the masked ones
    assert metrics["val_loss"] > metrics["mlm_loss"] > 0  # the total adds the NSP loss
    assert metrics["val_perplexity"] == pytest.approx(math.exp(metrics["mlm_loss"]), rel=1e-3)
    model, tokenizer, info = load_checkpoint(tmp_path / "bert")
    assert type(model).__name__ == "BERT"
    assert set(BERT_SPECIAL_TOKENS) <= set(tokenizer.special_tokens)
    assert info["shape"].vocab_size == tokenizer.vocab_size <= 300
    # dropout state is saved
    assert any(name.endswith("emb_drop.rng") for name in info["generators"])


def test_gpt_learns_a_periodic_text(tmp_path):
    """The next character of 'abcdefgh\\n' repeated is determined by the current one: loss -> 0."""
    path = tmp_path / "abc.txt"
    path.write_text("abcdefgh\n" * 400)
    config = gpt_config(path, tmp_path / "run", iters=40, lr=1e-2, min_lr=1e-3, batch_size=8)
    metrics = quiet(config)
    assert metrics["val_loss"] < 0.25 * math.log(9) and metrics["train_loss"] < 0.25 * math.log(9)


def test_progress_bar_gives_the_same_run(text_file, tmp_path, capsys):
    quiet_metrics = quiet(gpt_config(text_file, tmp_path / "a", eval_interval=4))
    bar_metrics = T.train(gpt_config(text_file, tmp_path / "b", eval_interval=4), progress=True)
    timing = ("wall_s", "ms_per_step", "tokens_per_s")
    assert {k: v for k, v in bar_metrics.items() if k not in timing} == \
        {k: v for k, v in quiet_metrics.items() if k not in timing}
    captured = capsys.readouterr()
    assert "step 4: train loss" in captured.out and "8/8" in captured.err  # message above the bar


# ==================================================================================================
# Exact resume
# ==================================================================================================


@pytest.mark.parametrize("kind", [
    "gpt",
    "bert",
])
def test_resuming_a_finished_run_equals_one_longer_run(kind, text_file, tmp_path):
    """4 steps, then resume to 8 in the same folder == 8 steps at once: same losses and weights.

    The learning rate is constant (lr = min_lr, no warm-up): a cosine schedule depends on ``iters``,
    so extending a finished run changes the rates of the steps already taken (that case is the
    Ctrl-C test).
    """
    make = gpt_config if kind == "gpt" else bert_config
    settings = dict(lr=1e-3, min_lr=1e-3, warmup_iters=0, final_eval_iters=2)
    once = make(text_file, tmp_path / "once", **settings)
    quiet(once)
    short = make(text_file, tmp_path / "twice", **settings, iters=4)
    quiet(short)
    quiet(dataclasses.replace(short, iters=8), resume=True)
    weights_once, history_once = saved_state(tmp_path / "once")
    weights_twice, history_twice = saved_state(tmp_path / "twice")
    assert len(history_twice["train_loss"]) == 8
    assert history_twice["train_loss"] == history_once["train_loss"]
    assert_same_weights(weights_twice, weights_once)


def interrupt_at(step: int):
    """A log function that sends this process SIGINT (Ctrl-C) at the step's validation message."""
    def log(message: str) -> None:
        if message.startswith(f"step {step}:"):
            signal.raise_signal(signal.SIGINT)
    return log


@pytest.mark.parametrize("make", [gpt_config, bert_config], ids=["gpt", "bert"])
def test_ctrl_c_then_resume_equals_an_uninterrupted_run(make, text_file, tmp_path):
    """Ctrl-C at step 4 of 10 (warm-up + cosine schedule, BERT's dropout), then --resume: the whole
    history (losses, rates, validation estimates) and the final weights equal those of the run never
    stopped."""
    config = make(text_file, tmp_path / "once", iters=10, eval_interval=4, checkpoint_interval=3)
    metrics_once = quiet(config)
    stopped = dataclasses.replace(config, out_dir=str(tmp_path / "twice"))
    messages = []
    handler = signal.getsignal(signal.SIGINT)
    result = T.train(stopped, progress=False,
                     log=lambda m: (messages.append(m), interrupt_at(4)(m)))
    assert signal.getsignal(signal.SIGINT) is handler  # the Ctrl-C handler is removed again
    assert result == {"interrupted": True, "iters": 4}
    saved_to = tmp_path / "twice"
    assert messages[-1].startswith(f"interrupted at step 4: checkpoint saved to {saved_to}")
    assert "tinyllm train --resume --out" in messages[-1]
    assert not (tmp_path / "twice" / "metrics.json").exists()
    _, partial = saved_state(tmp_path / "twice")
    assert partial["step"] == [1, 2, 3, 4]
    metrics_twice = quiet(stopped, resume=True)
    weights_once, history_once = saved_state(tmp_path / "once")
    weights_twice, history_twice = saved_state(tmp_path / "twice")
    assert history_twice == history_once
    assert_same_weights(weights_twice, weights_once)
    for key in ("val_loss", "train_loss", "iters"):
        assert metrics_twice[key] == metrics_once[key]


def interrupt_a_training_process(flags: list[str], cwd: Path) -> str:
    """Run `python -m tinyllm train FLAGS`, press Ctrl-C (SIGINT) once it trains; return output."""
    # One BLAS thread: on a loaded machine, multi-threaded BLAS can make a step many times slower.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "tinyllm", "train", *flags],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               cwd=cwd, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any("parameters" in line for line in lines):  # printed just before the first step
            assert process.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, ("no parameter-count line within 120 s: "
                                                 + "".join(lines))
            time.sleep(0.05)
        time.sleep(1.0)  # let it train a few steps
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(timeout=10)
    output = "".join(lines)
    assert "Traceback" not in output, output
    assert json.loads(output[output.index("{"):]) == {"interrupted": True,
                                                      "iters": interrupted_step(output)}
    return output


def interrupted_step(output: str) -> int:
    return int(output.split("interrupted at step ")[1].split(":")[0])


def test_ctrl_c_in_a_real_training_process(text_file, tmp_path):
    """`python -m tinyllm train ...` (the default 0.8M-parameter preset), Ctrl-C once it trains:
    exit code 0, a checkpoint at the step reached; `--resume` continues from that step (Ctrl-C again
    to end it)."""
    out = tmp_path / "run"
    flags = ["--data", str(text_file), "--out", str(out), "--iters", "100000", "--no-progress",
             "--eval-interval", "1000", "--batch-size", "2", "--sample-tokens", "0"]
    first = interrupt_a_training_process(flags, tmp_path)
    stopped_at = interrupted_step(first)
    assert 1 <= stopped_at < 1000
    assert (f"checkpoint saved to {out / CHECKPOINT_NAME}; "
            f"continue with `tinyllm train --resume --out {out}`") in first
    model, _, info = load_checkpoint(out)
    assert info["step"] == stopped_at and info["history"]["step"] == list(range(1, stopped_at + 1))
    assert model.num_parameters() == 800_000
    first_losses = info["history"]["train_loss"]

    second = interrupt_a_training_process([*flags, "--resume"], tmp_path)
    resumed_to = interrupted_step(second)
    assert resumed_to > stopped_at
    _, _, info = load_checkpoint(out)
    assert info["step"] == resumed_to and info["history"]["step"] == list(range(1, resumed_to + 1))
    assert info["history"]["train_loss"][:stopped_at] == first_losses
    assert info["optimizer_state"]["step_count"] == resumed_to


# ==================================================================================================
# Gradient accumulation
# ==================================================================================================


def test_gradient_accumulation_averages_micro_batches(text_file, tmp_path, monkeypatch):
    """grad_accum = 2 with batch 2 on rows (x0, x1), (x2, x3) == grad_accum = 1 with batch 4 on
    (x0..x3): the loss is the mean of the micro-batch means (each has the same number of tokens),
    and so is the gradient the optimizer sees (eq. 11.8)."""
    vocab = len(set(synthetic_play()))
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, vocab, (4, 8)), rng.integers(0, vocab, (4, 8))
    original_batch = LanguageModelTask.batch
    queue: list = []

    def scripted_batch(self, split, generator):
        if split == "train" and queue:
            return queue.pop(0)
        return original_batch(self, split, generator)

    gradients: list = []
    original_step = optim.AdamW.step

    def recording_step(self):
        gradients.append([p.grad.numpy().copy() for _, _, p in self.indexed_params()])
        original_step(self)

    monkeypatch.setattr(LanguageModelTask, "batch", scripted_batch)
    monkeypatch.setattr(optim.AdamW, "step", recording_step)

    queue[:] = [(x[:2], y[:2]), (x[2:], y[2:])]
    messages = []
    accumulated = quiet(gpt_config(text_file, tmp_path / "a", iters=1, batch_size=2, grad_accum=2,
                                   grad_clip=0.0),
                        log=messages.append)
    assert messages[0].endswith("32 tokens per step")
    queue[:] = [(x, y)]
    quiet(gpt_config(text_file, tmp_path / "b", iters=1, batch_size=4, grad_accum=1, grad_clip=0.0))
    assert not queue and len(gradients) == 2 and accumulated["iters"] == 1

    loss_a = saved_state(tmp_path / "a")[1]["train_loss"][0]
    loss_b = saved_state(tmp_path / "b")[1]["train_loss"][0]
    shape = dataclasses.replace(TINY_GPT, vocab_size=vocab)
    model = T.build_model("gpt", shape, seed=1337)  # the initial model of both runs
    with tl.no_grad():
        micro = [model(x[:2], y[:2])[1].item(), model(x[2:], y[2:])[1].item()]
    assert loss_a == pytest.approx(np.mean(micro), rel=1e-6)
    assert loss_b == pytest.approx(np.mean(micro), rel=1e-6)
    for g_a, g_b in zip(*gradients):
        np.testing.assert_allclose(g_a, g_b, rtol=1e-4, atol=1e-8)


# ==================================================================================================
# The training step
# ==================================================================================================


@pytest.mark.parametrize("grad_clip", [1.0, 0.0])
def test_train_step_is_schedule_gradients_clip_update(grad_clip, monkeypatch):
    """train_step: the scheduled rate, the mean loss of k micro-batches, clipping only when
    grad_clip > 0 (eq. 9.13), one AdamW step, and no gradients left over."""
    ids = np.arange(300) % 7
    task = LanguageModelTask(ids, ids[:20], batch_size=2, context_length=8)
    config = T.TrainConfig(iters=10, warmup_iters=2)
    model = T.build_model("gpt", dataclasses.replace(TINY_GPT, vocab_size=7), seed=0)
    before = model.state_dict()
    optimizer = T.build_optimizer(config, model)
    scheduler = T.build_scheduler(config, optimizer)
    clipped = []
    original_clip = optim.clip_grad_norm_

    def recording_clip(params, max_norm):
        clipped.append(max_norm)
        return original_clip(params, max_norm)

    monkeypatch.setattr(optim, "clip_grad_norm_", recording_clip)

    loss = T.train_step(model, task, np.random.default_rng(5), optimizer, scheduler, grad_clip,
                        grad_accum=2)
    fresh = T.build_model("gpt", dataclasses.replace(TINY_GPT, vocab_size=7), seed=0)
    rng = np.random.default_rng(5)  # the same two micro-batches
    with tl.no_grad():
        micro = [fresh(*task.batch("train", rng))[1].item() for _ in range(2)]
    assert loss == pytest.approx(np.mean(micro), rel=1e-6)
    assert clipped == ([grad_clip] if grad_clip > 0 else [])
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3 / 3] * 2  # eq. 9.11 at step 0
    assert optimizer.step_count == scheduler.step_count == 1
    assert all(p.grad is None for p in model.parameters())
    after = model.state_dict()
    assert any(not np.array_equal(before[name], after[name]) for name in before)


# ==================================================================================================
# Data: --data uses the fixed 90/10 split; the bundled corpus otherwise
# ==================================================================================================


def test_data_file_uses_the_fixed_90_10_split(text_file, tmp_path, monkeypatch):
    text = synthetic_play()
    cut = int(0.9 * len(text))
    config = gpt_config(text_file, tmp_path / "run", iters=1)
    assert T.load_texts(config) == load_text(text_file) == (text[:cut], text[cut:])
    tasks = []
    original = T.build_task
    monkeypatch.setattr(T, "build_task", lambda *args: tasks.append(original(*args)) or tasks[-1])
    quiet(config)
    tokenizer = CharTokenizer.from_text(text)
    np.testing.assert_array_equal(tasks[0].ids["train"], tokenizer.encode(text[:cut]))
    np.testing.assert_array_equal(tasks[0].ids["val"], tokenizer.encode(text[cut:]))


def test_the_default_data_is_the_shakespeare_corpus(tmp_path):
    """The one test here that reads the real corpus: two steps of the tiny GPT on it."""
    train_text, val_text = load_corpus("shakespeare")
    config = T.TrainConfig(preset="tiny", iters=2, batch_size=2, eval_iters=1, final_eval_iters=1,
                           sample_tokens=0, out_dir=str(tmp_path / "run"))
    assert T.load_texts(config) == (train_text, val_text)
    metrics = quiet(config)
    _, tokenizer, _ = load_checkpoint(tmp_path / "run")
    assert tokenizer.chars == sorted(set(train_text + val_text))
    assert metrics["iters"] == 2 and abs(metrics["val_loss"] - math.log(tokenizer.vocab_size)) < 0.3


def test_language_model_task():
    ids = np.arange(40) % 7
    task = LanguageModelTask(ids, ids[:12], batch_size=3, context_length=8)
    assert task.tokens_per_batch == 24
    x, y = task.batch("train", np.random.default_rng(0))
    assert x.shape == y.shape == (3, 8)
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])  # targets are the inputs shifted by one
    model = T.build_model("gpt", dataclasses.replace(TINY_GPT, vocab_size=7), seed=0)
    metrics = task.evaluate(model, "val", iters=3, seed=4)
    rng = np.random.default_rng(4)
    with tl.no_grad():
        losses = [model(*task.batch("val", rng))[1].item() for _ in range(3)]
    assert metrics["loss"] == pytest.approx(np.mean(losses), rel=1e-12)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]), rel=1e-12)
    with pytest.raises(ValueError,
                       match=r"the val text has 9 tokens, fewer than context_length \+ 2 = 10"):
        LanguageModelTask(ids, ids[:9], batch_size=3, context_length=8)


# ==================================================================================================
# Errors
# ==================================================================================================


def test_checkpoint_errors(text_file, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at .*nowhere"):
        load_checkpoint(tmp_path / "nowhere")
    quiet(gpt_config(text_file, tmp_path / "run", iters=2))
    data = (tmp_path / "run" / CHECKPOINT_NAME).read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated"):
        load_checkpoint(truncated)
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"only 0 bytes"):
        load_checkpoint(tmp_path / "empty.safetensors")
    other = tmp_path / "other.safetensors"
    save_safetensors(other, {"w": np.zeros(3, dtype=np.float32)}, {"note": "not ours"})
    with pytest.raises(CheckpointError,
                       match=r"not a tinyllm training checkpoint.*checkpoint\.safetensors"):
        load_checkpoint(other)
    weights_only = tmp_path / "weights.safetensors"
    save_model(weights_only, load_checkpoint(tmp_path / "run")[0])  # weights without the metadata
    with pytest.raises(CheckpointError, match=r"not a tinyllm training checkpoint"):
        load_checkpoint(weights_only)

    # a run of tinyllm 0.1 (config fields n_embd, block_size, ...) is refused by name, for sample
    # and for resume
    arrays, metadata = load_safetensors(tmp_path / "run" / CHECKPOINT_NAME)
    old_config = {"vocab_size": 40, "block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 16}
    old = tmp_path / "old"
    save_safetensors(old / CHECKPOINT_NAME, arrays, {**metadata, "format": "tinyllm-checkpoint-1",
                                                       "model_config": json.dumps(old_config)})
    for read in (load_checkpoint, T.saved_train_config):
        with pytest.raises(CheckpointError,
                           match=r"written by tinyllm 0\.1 .*n_embd.*train the model again"):
            read(old)


def test_resume_errors(text_file, tmp_path):
    config = gpt_config(text_file, tmp_path / "run", iters=2)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at .*run"):
        quiet(config, resume=True)
    quiet(config)
    with pytest.raises(ValueError, match=r"cannot resume .*checkpoint\.safetensors "
                                         r"with different settings: lr$"):
        quiet(dataclasses.replace(config, iters=4, lr=2e-3), resume=True)
    with pytest.raises(ValueError, match=r"different settings: batch_size, seed"):
        quiet(dataclasses.replace(config, batch_size=3, seed=1), resume=True)
    # iters, the output folder, the device and the evaluation/checkpoint intervals may change
    moved = tmp_path / "moved"
    (tmp_path / "run").rename(moved)
    metrics = quiet(dataclasses.replace(config, iters=3, eval_interval=7, checkpoint_interval=9,
                                        out_dir=str(moved)), resume=True)
    assert metrics["iters"] == 3


def test_bad_settings_are_clear_errors(text_file, tmp_path):
    with pytest.raises(ValueError, match=r"unknown gpt preset 'nope'; choose one of \["):
        quiet(gpt_config(text_file, tmp_path / "a", preset="nope"))
    with pytest.raises(ValueError, match=r"unknown tokenizer 'words'; expected 'char' or 'bpe'"):
        quiet(gpt_config(text_file, tmp_path / "b", tokenizer="words"))
    with pytest.raises(FileNotFoundError, match=r"text file not found: .*missing\.txt"):
        quiet(gpt_config(tmp_path / "missing.txt", tmp_path / "c"))
    short = tmp_path / "short.txt"
    short.write_text("to be or not to be, that is the question\n" * 2)
    with pytest.raises(ValueError, match=r"fewer than context_length \+ 2"):
        quiet(gpt_config(short, tmp_path / "d"))
