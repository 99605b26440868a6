"""Whole runs on "cuda" without a GPU (issue 13, item 4): training, exact resume, checkpoints
across devices, the commands with ``--device cuda``, and the encoder-decoder's searches.

Each test installs the strict CuPy stand-in (``strict_device``, tests/fake_cupy.py): device arrays
that refuse implicit conversion to NumPy and NumPy's functions, so a run that finishes touched the
device only through CuPy's own API. The stand-in computes with NumPy, so a "cuda" run without
dropout must equal the "cpu" run bit for bit: that is what these tests assert. Dropout is the one
exception by design: on a device its masks come from a counter-based generator keyed by the host
generator (``tinyllm.creation.uniform``), not from ``rng.random``, so runs with dropout are
compared with runs on the same device (exact resume). On a real GPU the numbers would differ in
the last bits (cuBLAS and atomic adds reorder sums); what is proved here is dispatch and host/device
hygiene, not CUDA numerics, speed or memory.
"""

import contextlib
import dataclasses
import functools
import io
import json
import signal

import numpy as np
import pytest
from synthetic import synthetic_play

import tinyllm.train as T
from tinyllm.backend import device_of
from tinyllm.checkpoint import load_checkpoint
from tinyllm.cli import main
from tinyllm.decoding import beam_search, greedy_search
from tinyllm.models import (
    BERT_PRESETS,
    GPT,
    GPT_PRESETS,
    LSTM_PRESETS,
    BERTConfig,
    GPTConfig,
    LSTMConfig,
    LSTMLanguageModel,
    Seq2Seq,
    Seq2SeqConfig,
)
from tinyllm.models.seq2seq import pad_sequences
from tinyllm.recipe import TRAINING_KINDS

pytestmark = pytest.mark.gpu

SHAPES = {  # vocab_size: the tokenizer's
    "gpt": GPTConfig(vocab_size=1, context_length=8, num_layers=2, num_heads=2, d_model=16),
    "bert": BERTConfig(vocab_size=1, context_length=16, num_layers=2, num_heads=2, d_model=16,
                       d_ff=32),  # dropout 0.1: the device's dropout masks are under test too
    "lstm": LSTMConfig(vocab_size=1, context_length=8, num_layers=2, d_model=16, hidden_size=16,
                       dropout=0.1),
}
RECIPES = {  # grad_accum 2 for the GPT: the micro-batch losses add up on the device
    "gpt": dict(preset="tiny-gpt", grad_accum=2),
    "bert": dict(model="bert", preset="tiny-bert", tokenizer="bpe", bpe_vocab_size=300, lr=5e-4,
                 weight_decay=0.01, beta2=0.999),
    "lstm": dict(model="lstm", preset="tiny-lstm", lr=3e-3, state_reset_interval=4),
}
KINDS = list(RECIPES)


@pytest.fixture(autouse=True)
def tiny_presets(monkeypatch):
    """The tiny shapes as presets, and `tinyllm train --model KIND` starting from them."""
    for kind, presets in (("gpt", GPT_PRESETS), ("bert", BERT_PRESETS), ("lstm", LSTM_PRESETS)):
        monkeypatch.setitem(presets, f"tiny-{kind}", SHAPES[kind])
        monkeypatch.setitem(presets, f"tiny-{kind}-0", dataclasses.replace(SHAPES[kind],
                                                                           dropout=0.0))
    for name, kind in (("shakespeare-char", "gpt"), ("shakespeare-bert", "bert"),
                       ("shakespeare-lstm", "lstm")):
        monkeypatch.setitem(T.TRAIN_PRESETS, name, dataclasses.replace(
            T.TRAIN_PRESETS[name], preset=f"tiny-{kind}-0", iters=6, batch_size=4, warmup_iters=2,
            eval_interval=100, eval_iters=2, final_eval_iters=2, checkpoint_interval=100,
            bpe_vocab_size=300))


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "play.txt"
    path.write_text(synthetic_play(), encoding="utf-8")
    return path


def recipe(kind: str, text_file, out, **changes) -> T.TrainConfig:
    config = T.TrainConfig(data=str(text_file), iters=6, batch_size=4, warmup_iters=2,
                           eval_interval=3, eval_iters=2, final_eval_iters=2,
                           checkpoint_interval=100, sample_tokens=0, out_dir=str(out),
                           **RECIPES[kind])
    return dataclasses.replace(config, **changes)


def quiet(config: T.TrainConfig, resume: bool = False, log=None) -> dict:
    return T.train(config, resume=resume, progress=False, log=log or (lambda message: None))


def interrupted_at(config: T.TrainConfig, step: int) -> dict:
    """Run ``config``, sending this process SIGINT (Ctrl-C) at step ``step``'s validation line."""
    def log(message: str) -> None:
        if message.startswith(f"step {step}:"):
            signal.raise_signal(signal.SIGINT)
    return T.train(config, progress=False, log=log)


def saved(out) -> tuple[dict, dict]:
    """(weights, history) of the checkpoint in ``out``, loaded on the cpu."""
    model, _, info = load_checkpoint(out)
    return model.state_dict(), info["history"]


def assert_same_run(out_a, out_b) -> None:
    (weights_a, history_a), (weights_b, history_b) = saved(out_a), saved(out_b)
    assert history_a == history_b  # losses, rates, validation estimates, bit for bit
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert type(weights_a[name]) is np.ndarray  # a checkpoint loads on the host
        np.testing.assert_array_equal(weights_a[name], weights_b[name], err_msg=name)


@pytest.fixture
def steps_seen(strict_device, monkeypatch) -> list[tuple[str, int]]:
    """(device of the model, device->host transfers) of every step the trainer runs
    (tinyllm.train.train_step, recorded)."""
    seen, original = [], T.train_step

    def recording(model, *args, **kwargs):
        strict_device.reset()
        loss = original(model, *args, **kwargs)
        seen.append((device_of(model.parameters()[0].data), strict_device.TRANSFERS["to_host"]))
        return loss
    monkeypatch.setattr(T, "train_step", recording)
    return seen


# --- training ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_training_on_cuda_equals_training_on_the_cpu(kind, strict_device, steps_seen,
                                                     text_file, tmp_path):
    """The same losses, validation estimates, metrics and weights (bit for bit on the stand-in;
    without dropout, whose device masks are drawn differently); every step of the trainer's loop
    on "cuda" makes one device->host transfer."""
    on_cpu = quiet(recipe(kind, text_file, tmp_path / "cpu", preset=f"tiny-{kind}-0"))
    on_cuda = quiet(recipe(kind, text_file, tmp_path / "cuda", preset=f"tiny-{kind}-0",
                           device="cuda"))
    assert steps_seen == [("cpu", 0)] * 6 + [("cuda", 1)] * 6
    for key in ("val_loss", "train_loss", "val_perplexity", "iters", "parameters"):
        assert on_cuda[key] == on_cpu[key], key
    assert_same_run(tmp_path / "cuda", tmp_path / "cpu")


@pytest.mark.parametrize("kind", KINDS)
def test_ctrl_c_then_resume_on_cuda_equals_an_uninterrupted_run(kind, strict_device, text_file,
                                                                tmp_path):
    """Stopped at step 3 of 6 and resumed on "cuda": the run that was never stopped (the
    optimizer's moments, the dropout generators and, for the LSTM, the carried state all cross
    the checkpoint)."""
    once = recipe(kind, text_file, tmp_path / "once", device="cuda")
    quiet(once)
    twice = dataclasses.replace(once, out_dir=str(tmp_path / "twice"))
    assert interrupted_at(twice, 3) == {"interrupted": True, "iters": 3}
    quiet(twice, resume=True)
    assert_same_run(tmp_path / "twice", tmp_path / "once")


@pytest.mark.parametrize("first, then", [("cpu", "cuda"), ("cuda", "cpu")])
@pytest.mark.parametrize("kind", ["gpt", "lstm"])
def test_a_checkpoint_resumes_on_the_other_device(kind, first, then, strict_device, text_file,
                                                  tmp_path):
    """A run saved on one device and resumed on the other (``--device`` may change on resume)
    equals the run that stayed on the cpu (without dropout: see the module docstring)."""
    quiet(recipe(kind, text_file, tmp_path / "cpu", preset=f"tiny-{kind}-0"))
    moved = recipe(kind, text_file, tmp_path / "moved", preset=f"tiny-{kind}-0", device=first)
    interrupted_at(moved, 3)
    _, _, info = load_checkpoint(tmp_path / "moved")
    assert info["step"] == 3
    quiet(dataclasses.replace(moved, device=then), resume=True)
    assert_same_run(tmp_path / "moved", tmp_path / "cpu")


def test_seq2seq_training_on_cuda_equals_the_cpu(strict_device, steps_seen, monkeypatch, tmp_path):
    """The encoder-decoder kind (`tinyllm train --model seq2seq`, on its parallel corpus) too."""
    kind = TRAINING_KINDS["seq2seq"]
    shape = dataclasses.replace(kind.presets[T.TRAIN_PRESETS[kind.train_preset].preset],
                                context_length=48, num_encoder_layers=1, num_decoder_layers=1,
                                num_heads=2, d_model=16, d_ff=32, dropout=0.0)
    monkeypatch.setitem(kind.presets, "tiny-seq2seq", shape)
    base = dataclasses.replace(T.TRAIN_PRESETS[kind.train_preset], preset="tiny-seq2seq",
                               iters=4, batch_size=4, warmup_iters=1, eval_interval=2,
                               eval_iters=1, final_eval_iters=1)
    metrics = [quiet(dataclasses.replace(base, device=device, out_dir=str(tmp_path / device)))
               for device in ("cpu", "cuda")]
    assert steps_seen == [("cpu", 0)] * 4 + [("cuda", 1)] * 4
    assert metrics[1]["val_loss"] == metrics[0]["val_loss"]
    assert_same_run(tmp_path / "cuda", tmp_path / "cpu")


# --- the commands ---------------------------------------------------------------------------------
def run_main(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def sample_devices(monkeypatch) -> list[str]:
    """The device of the model each time a GPT or an LSTM starts to generate text."""
    devices = []
    for model_class in (GPT, LSTMLanguageModel):
        original = model_class.generate_stream

        def recording(self, *args, _original=original, **kwargs):
            devices.append(device_of(self.wte.weight.data))
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(model_class, "generate_stream", recording)
    return devices


@pytest.mark.parametrize("model", ["gpt", "lstm"])
def test_tinyllm_train_and_sample_on_cuda(model, strict_device, sample_devices, text_file,
                                          tmp_path, capsys):
    """`tinyllm train --device cuda` samples at the end on the device; `tinyllm sample --device
    cuda`, with and without the cache, prints the text the cpu prints."""
    runs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        code, printed, err = run_main(["train", "--model", model, "--data", text_file, "--out",
                                       out, "--no-progress", "--sample-tokens", "30",
                                       "--device", device], capsys)
        assert code == 0, err
        runs[device] = printed.split("--- sample (temperature 0.8) ---")[1]
    assert sample_devices == ["cpu", "cuda"]
    assert runs["cuda"] == runs["cpu"] and len(runs["cpu"].strip()) >= 30
    for flags in ([], ["--no-cache"], ["--temperature", "0"], ["--top-k", "3", "--top-p", "0.9"]):
        texts = []
        for device in ("cpu", "cuda"):
            code, printed, err = run_main(["sample", "--checkpoint", tmp_path / device,
                                           "--prompt", "SPEAKER1:", "--tokens", "25", "--seed",
                                           "4", "--device", device, *flags], capsys)
            assert code == 0 and err == "", err
            texts.append(printed)
        assert texts[0] == texts[1] and texts[0].startswith("SPEAKER1:"), flags
    assert sample_devices[2:] == ["cpu", "cuda"] * 4


def test_tinyllm_fill_on_cuda_equals_the_cpu(strict_device, text_file, tmp_path, capsys):
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "--model", "bert", "--data", str(text_file), "--out",
                     str(tmp_path / "bert"), "--no-progress", "--device", "cuda"]) == 0
    printed = {}
    for device in ("cpu", "cuda"):
        code, printed[device], err = run_main(["fill", "--checkpoint", tmp_path / "bert",
                                               "--text", "the [MASK] my lord [MASK]", "--top",
                                               "4", "--device", device], capsys)
        assert code == 0 and err == "", err
    lines = printed["cpu"].splitlines()
    assert len(lines) == 2 and all(line.startswith("[MASK] at token") for line in lines)
    assert printed["cuda"] == printed["cpu"]


def test_tinyllm_bench_on_cuda(strict_device, sample_devices, monkeypatch, capsys):
    """`tinyllm bench --device cuda` (on the tiny shapes, a small peak product): the header names
    the device, the figures are printed, every timed step runs on the device with one
    device->host transfer, and generation runs on the device."""
    from test_bench import TINY_SETTINGS

    import tinyllm.bench
    import tinyllm.bench.training as bench_training

    monkeypatch.setattr(tinyllm.bench, "run_benchmarks", functools.partial(
        tinyllm.bench.run_benchmarks, settings=TINY_SETTINGS, peak_size=64, peak_repeats=2))
    steps, original = [], bench_training.train_step

    def recording(model, *args):
        strict_device.reset()
        loss = original(model, *args)
        steps.append((device_of(model.parameters()[0].data), strict_device.TRANSFERS["to_host"]))
        return loss
    monkeypatch.setattr(bench_training, "train_step", recording)
    code, printed, err = run_main(["bench", "--quick", "--steps", "2", "--device", "cuda"], capsys)
    assert code == 0 and err == "", err
    assert steps == [("cuda", 1)] * (TINY_SETTINGS[0].warmup + 2)
    assert sample_devices == ["cuda"] * 2 * TINY_SETTINGS[0].generation_repeats
    lines = printed.splitlines()
    assert lines[1].startswith("device: cuda (")
    assert ("PyTorch not installed: tinyllm only" in lines[0]
            or "PyTorch CUDA not available: tinyllm only" in lines[0])
    for field in ("CuPy", "ms/step", "tokens/s", "GFLOP/s", "KV cache", "tiny-1"):
        assert field in printed, field
    figures = json.loads(lines[-1])
    assert figures["device"] == "cuda" and figures["training"][0]["tinyllm_ms"] > 0


# --- the encoder-decoder's searches ---------------------------------------------------------------
TINY_SEQ2SEQ = Seq2SeqConfig(vocab_size=9, context_length=10, num_encoder_layers=1,
                             num_decoder_layers=2, num_heads=2, d_model=8, d_ff=12, dropout=0.0)


def seq2seq_pair() -> tuple[Seq2Seq, Seq2Seq]:
    """The same peaked float64 model twice (see tests/test_15_decoding.py), on cpu and cuda."""
    models = []
    for device in ("cpu", "cuda"):
        model = Seq2Seq(TINY_SEQ2SEQ, rng=np.random.default_rng(0)).astype(np.float64)
        model.tgt_emb.weight.data = model.tgt_emb.weight.data * 3.0
        models.append(model.to(device))
    return models[0], models[1]


def sources() -> np.ndarray:
    rng = np.random.default_rng(1)
    return pad_sequences([rng.integers(3, 9, n) for n in (3, 6, 1, 5)], 0)  # (B, S), PAD = 0


@pytest.mark.parametrize("src_on_device", [False, True])
@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_greedy_and_beam_search_on_cuda_equal_the_cpu(search, use_cache, src_on_device,
                                                      strict_device):
    cpu, cuda = seq2seq_pair()
    src = sources()
    if search == "greedy":
        decode = lambda model, s: greedy_search(model, s, 8, use_cache=use_cache)  # noqa: E731
    else:
        decode = lambda model, s: beam_search(model, s, 3, 8, alpha=0.6,  # noqa: E731
                                              use_cache=use_cache)
    expected = decode(cpu, src)
    got = decode(cuda, strict_device.asarray(src) if src_on_device else src)
    assert cuda.tgt_emb.weight.device == "cuda"
    for field in ("ids", "lengths", "scores"):
        value = getattr(got, field)
        assert type(value) is np.ndarray, field  # the search's results are on the host
        np.testing.assert_array_equal(value, getattr(expected, field), err_msg=field)
    assert (got.lengths >= 1).all()


def test_seq2seq_loss_and_gradients_on_cuda_equal_the_cpu(strict_device):
    """Teacher forcing with device ids (source, decoder input, targets): the same label-smoothed
    loss (eq. 15.2) and the same gradient of every parameter."""
    cpu, cuda = seq2seq_pair()
    src = sources()
    tgt = np.roll(src, 1, axis=1)  # (B, T) any targets; PAD positions are ignored
    tgt_in = np.where(tgt == 0, 0, np.maximum(tgt - 1, 1))  # (B, T) BOS = 1
    _, loss_cpu = cpu(src, tgt_in, targets=tgt)
    move = strict_device.asarray
    _, loss_cuda = cuda(move(src), move(tgt_in), targets=move(tgt))
    assert loss_cuda.device == "cuda" and loss_cuda.item() == loss_cpu.item()
    loss_cpu.backward()
    loss_cuda.backward()
    for (name, p), (_, q) in zip(cpu.named_parameters(), cuda.named_parameters()):
        assert q.grad.device == "cuda", name
        np.testing.assert_array_equal(q.grad.numpy(), p.grad.numpy(), err_msg=name)
