"""Chapter 18, training the LSTM language model with ``tinyllm train --model lstm``: the same loop,
checkpoints, metrics and exact resume as the GPT, with truncated BPTT's stream position and
carried state in the checkpoint; ``tinyllm sample`` on an LSTM checkpoint.

Under test: ``tinyllm/recipe.py`` (the "lstm" kind), ``tinyllm/train.py``,
``tinyllm/checkpoint/training.py`` and ``validate.py`` (the task state, the LSTM's config checks),
``tinyllm/cli.py``.
"""

import contextlib
import dataclasses
import io
import json
import signal

import numpy as np
import pytest
from synthetic import synthetic_play

import tinyllm.train as T
from tinyllm.checkpoint import CheckpointError, load_checkpoint, save_safetensors
from tinyllm.checkpoint.safetensors import load_safetensors
from tinyllm.cli import main
from tinyllm.models import LSTM_PRESETS, LSTMConfig, LSTMLanguageModel

pytestmark = pytest.mark.ch18

TINY_LSTM = LSTMConfig(vocab_size=1, context_length=8, num_layers=2, d_model=16, hidden_size=16,
                       dropout=0.1)  # vocab_size: the tokenizer's


@pytest.fixture(autouse=True)
def tiny_presets(monkeypatch):
    monkeypatch.setitem(LSTM_PRESETS, "tiny-lstm", TINY_LSTM)
    monkeypatch.setitem(T.TRAIN_PRESETS, "shakespeare-lstm", dataclasses.replace(
        T.TRAIN_PRESETS["shakespeare-lstm"], preset="tiny-lstm", iters=6, batch_size=4,
        warmup_iters=2, eval_interval=100, eval_iters=2, final_eval_iters=2,
        checkpoint_interval=100))


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "play.txt"
    path.write_text(synthetic_play(), encoding="utf-8")
    return path


def lstm_config(text_file, out, **changes) -> T.TrainConfig:
    config = T.TrainConfig(model="lstm", preset="tiny-lstm", data=str(text_file), iters=8,
                           batch_size=4, lr=3e-3, warmup_iters=2, eval_interval=100, eval_iters=2,
                           final_eval_iters=2, checkpoint_interval=100, sample_tokens=0,
                           state_reset_interval=3, out_dir=str(out))  # resets in every test
    return dataclasses.replace(config, **changes)


def quiet(config, resume=False, log=None) -> dict:
    return T.train(config, resume=resume, progress=False, log=log or (lambda message: None))


def test_a_run_writes_metrics_and_a_checkpoint_with_the_stream_state(text_file, tmp_path):
    metrics = quiet(lstm_config(text_file, tmp_path, iters=30))
    assert metrics["model"] == "lstm" and metrics["iters"] == 30
    assert metrics == json.loads((tmp_path / "metrics.json").read_text())
    assert (tmp_path / "loss.png").stat().st_size > 1000
    model, tokenizer, info = load_checkpoint(tmp_path)
    assert isinstance(model, LSTMLanguageModel) and metrics["parameters"] == model.num_parameters()
    task = info["task_state"]
    # the text has ~3,960 training characters: 4 streams of 984 = 123 batches of 8, one epoch
    assert int(task["position"]) == 30 * 8
    assert sorted(task) == ["position", "state.0.0", "state.0.1", "state.1.0", "state.1.1"]
    assert task["state.1.0"].shape == (4, 16) and np.abs(task["state.1.0"]).max() > 0
    history = info["history"]["train_loss"]
    assert np.mean(history[-5:]) < np.mean(history[:5])  # it learns
    assert metrics["val_loss"] < np.log(tokenizer.vocab_size)  # better than uniform


def test_reported_validation_loss_is_an_evaluation_of_the_saved_model(text_file, tmp_path):
    config = lstm_config(text_file, tmp_path, iters=10, final_eval_iters=1000)
    metrics = quiet(config)
    model, tokenizer, info = load_checkpoint(tmp_path)
    task = T.build_task(config, tokenizer, info["shape"], *T.load_texts(config))
    assert metrics["val_loss"] == round(task.evaluate(model, "val", 1000)["loss"], 4)


def test_resuming_a_finished_run_equals_one_longer_run(text_file, tmp_path):
    settings = dict(lr=2e-3, min_lr=2e-3, warmup_iters=0)
    once = lstm_config(text_file, tmp_path / "once", **settings)
    quiet(once)
    short = lstm_config(text_file, tmp_path / "twice", **settings, iters=4)
    quiet(short)
    quiet(dataclasses.replace(short, iters=8), resume=True)
    model_once, _, info_once = load_checkpoint(tmp_path / "once")
    model_twice, _, info_twice = load_checkpoint(tmp_path / "twice")
    assert info_twice["history"]["train_loss"] == info_once["history"]["train_loss"]
    for name, value in model_once.state_dict().items():
        np.testing.assert_array_equal(model_twice.state_dict()[name], value, err_msg=name)
    for name, value in info_once["task_state"].items():
        np.testing.assert_array_equal(info_twice["task_state"][name], value, err_msg=name)


def test_ctrl_c_then_resume_equals_an_uninterrupted_run(text_file, tmp_path):
    """Ctrl-C at step 4 of 10 (warm-up + cosine, dropout 0.1): the resumed run carries on with the
    saved stream position and hidden state, and its whole history equals the run never stopped."""
    config = lstm_config(text_file, tmp_path / "once", iters=10, eval_interval=4,
                         checkpoint_interval=3)
    metrics_once = quiet(config)
    stopped = dataclasses.replace(config, out_dir=str(tmp_path / "twice"))

    def log(message):
        if message.startswith("step 4:"):
            signal.raise_signal(signal.SIGINT)

    assert T.train(stopped, progress=False, log=log) == {"interrupted": True, "iters": 4}
    metrics_twice = quiet(stopped, resume=True)
    _, _, info_once = load_checkpoint(tmp_path / "once")
    _, _, info_twice = load_checkpoint(tmp_path / "twice")
    assert info_twice["history"] == info_once["history"]
    for key in ("val_loss", "train_loss", "iters"):
        assert metrics_twice[key] == metrics_once[key]


def test_the_carried_state_matters_for_an_exact_resume(text_file, tmp_path):
    """A checkpoint whose carried state was zeroed resumes to different losses: the state is
    really what the next batch starts from."""
    settings = dict(lr=2e-3, min_lr=2e-3, warmup_iters=0)
    once = lstm_config(text_file, tmp_path / "once", **settings)
    quiet(once)
    short = lstm_config(text_file, tmp_path / "twice", **settings, iters=4)
    quiet(short)
    path = tmp_path / "twice" / "checkpoint.safetensors"
    arrays, metadata = load_safetensors(path)
    arrays = {k: (np.zeros_like(v) if k.startswith("task.state.") else v)
              for k, v in arrays.items()}
    save_safetensors(path, arrays, metadata)
    quiet(dataclasses.replace(short, iters=8), resume=True)
    _, _, info_once = load_checkpoint(tmp_path / "once")
    _, _, info_twice = load_checkpoint(tmp_path / "twice")
    assert info_twice["history"]["train_loss"][:4] == info_once["history"]["train_loss"][:4]
    assert info_twice["history"]["train_loss"][4] != info_once["history"]["train_loss"][4]


def test_checkpoint_checks_the_lstm_config(text_file, tmp_path):
    quiet(lstm_config(text_file, tmp_path, iters=2))
    path = tmp_path / "checkpoint.safetensors"
    arrays, metadata = load_safetensors(path)
    for change, message in [({"hidden_size": 17, "tie_weights": False},
                             "describes a LSTM of .* parameters but the file holds"),
                            ({"cell": "gru"}, r"model_config.cell' must be one of \['lstm'"),
                            ({"hidden_size": 17}, "tie_weights' needs d_model = hidden_size")]:
        config = {**json.loads(metadata["model_config"]), **change}
        save_safetensors(tmp_path / "edited.safetensors", arrays,
                         {**metadata, "model_config": json.dumps(config)})
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(tmp_path / "edited.safetensors")


def test_tinyllm_train_model_lstm_then_sample(text_file, tmp_path, capsys):
    out = tmp_path / "run"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["train", "--model", "lstm", "--data", str(text_file), "--out", str(out),
                     "--no-progress", "--sample-tokens", "20"])
    assert code == 0
    printed = stdout.getvalue()
    assert '"model": "lstm"' in printed and "--- sample (temperature 0.8) ---" in printed
    assert json.loads((out / "metrics.json").read_text())["iters"] == 6
    code = main(["sample", "--checkpoint", str(out), "--prompt", "SPEAKER", "--tokens", "25",
                 "--seed", "3"])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == ""
    assert captured.out.startswith("SPEAKER") and len(captured.out) == len("SPEAKER") + 25 + 1
    main(["sample", "--checkpoint", str(out), "--prompt", "SPEAKER", "--tokens", "25", "--seed",
          "3", "--no-cache"])
    assert capsys.readouterr().out == captured.out  # the state is the cache: the same text
    code = main(["fill", "--checkpoint", str(out), "--text", "a [MASK]"])
    assert code == 2 and "holds a LSTMLanguageModel; `tinyllm fill` needs a BERT" in \
        capsys.readouterr().err
