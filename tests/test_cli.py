"""The ``tinyllm`` command (``tinyllm/cli.py``, ``python -m tinyllm``): help texts, argument errors,
and a tiny train -> sample and train -> fill round trip.

The commands run in-process through ``tinyllm.cli.main(argv)`` (exit code returned, or raised by
argparse as SystemExit); one test runs ``python -m tinyllm`` as a real process. Training uses tiny
presets registered for this module (a 2-layer, 16-wide GPT and BERT, a few steps on a short text
written to a temporary folder).
"""

import contextlib
import dataclasses
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from synthetic import synthetic_play

import tinyllm as tl
import tinyllm.train as T
from tinyllm.checkpoint import load_checkpoint
from tinyllm.cli import generate_text, main
from tinyllm.models import BERT_PRESETS, GPT_PRESETS, BERTConfig, GPTConfig

pytestmark = pytest.mark.ch11




@pytest.fixture(scope="module", autouse=True)
def tiny_presets():
    """The default recipes of `tinyllm train`, shrunk: tiny shapes, 6 steps, 2-batch evaluations."""
    tiny = dict(iters=6, batch_size=4, warmup_iters=2, eval_interval=100, eval_iters=2,
                final_eval_iters=2, checkpoint_interval=100)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(GPT_PRESETS, "tiny",
                      GPTConfig(vocab_size=1, context_length=8, num_layers=2, num_heads=2,
                                d_model=16))
        patch.setitem(BERT_PRESETS, "tiny-bert",
                      BERTConfig(vocab_size=1, context_length=16, num_layers=2, num_heads=2,
                                 d_model=16, d_ff=32))
        patch.setitem(T.TRAIN_PRESETS, "shakespeare-char",
                      dataclasses.replace(T.TRAIN_PRESETS["shakespeare-char"], preset="tiny",
                                          **tiny))
        patch.setitem(T.TRAIN_PRESETS, "shakespeare-bert",
                      dataclasses.replace(T.TRAIN_PRESETS["shakespeare-bert"], preset="tiny-bert",
                                          bpe_vocab_size=300, **tiny))
        yield


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "play.txt"
    path.write_text(synthetic_play(), encoding="utf-8")
    return path


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """main(argv) -> (exit code, stdout, stderr); argparse's SystemExit becomes its code."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def gpt_run(text_file, tmp_path_factory):
    """A tiny GPT trained by `tinyllm train`; returns (out folder, the command's stdout)."""
    out = tmp_path_factory.mktemp("gpt")
    stdout = io.StringIO()  # capsys is per test; a module fixture captures by hand
    with contextlib.redirect_stdout(stdout):
        code = main(["train", "--data", str(text_file), "--out", str(out), "--no-progress",
                     "--sample-tokens", "30"])
    assert code == 0
    return out, stdout.getvalue()


@pytest.fixture(scope="module")
def bert_run(text_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("bert")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "--model", "bert", "--data", str(text_file), "--out", str(out),
                     "--no-progress"]) == 0
    return out


# ==================================================================================================
# Help texts
# ==================================================================================================


@pytest.mark.parametrize("command, expected", [
    ([], ["usage: tinyllm", "train", "sample", "fill", "bench", "tinyllm train --data my.txt"]),
    (["train"], ["usage: tinyllm train", "--model {gpt,bert,lstm,seq2seq}", "--preset", "--data",
                 "--corpus", "--tokenizer", "--iters", "--batch-size", "--grad-accum", "--lr",
                 "--eval-interval", "--sample-tokens", "--seed", "--device", "--out", "--resume",
                 "--no-progress"]),
    (["sample"], ["usage: tinyllm sample", "--checkpoint", "--prompt", "--tokens", "--temperature",
                  "--top-k", "--top-p", "--seed", "--no-cache", "--device"]),
    (["fill"], ["usage: tinyllm fill", "--checkpoint", "--text", "[MASK]", "--top"]),
    (["bench"], ["usage: tinyllm bench", "--steps", "--quick"]),
])
def test_help_texts(command, expected, capsys):
    code, out, err = run([*command, "--help"], capsys)
    assert code == 0 and err == ""
    for text in expected:
        assert text in out, text


def test_python_dash_m_tinyllm(tmp_path):
    """The module entry point works as a real process; no command is a usage error (exit 2)."""
    result = subprocess.run([sys.executable, "-m", "tinyllm", "--help"], capture_output=True,
                            text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0 and "usage: tinyllm" in result.stdout
    assert "sample" in result.stdout
    result = subprocess.run([sys.executable, "-m", "tinyllm"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "the following arguments are required: COMMAND" in result.stderr


# ==================================================================================================
# Argument errors: exit code 2 and one line that says what is wrong, no traceback
# ==================================================================================================


@pytest.mark.parametrize("argv, message", [
    (["--iters", "-5"], "tinyllm train: error: --iters must be a positive integer, got -5"),
    (["--iters", "0"], "--iters must be a positive integer, got 0"),
    (["--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
    (["--grad-accum", "-1"], "--grad-accum must be a positive integer, got -1"),
    (["--eval-interval", "0"], "--eval-interval must be a positive integer, got 0"),
    (["--model", "llama"], "argument --model: invalid choice: 'llama'"),
    (["--tokenizer", "words"], "argument --tokenizer: invalid choice: 'words'"),
    (["--iters", "abc"], "argument --iters: invalid int value: 'abc'"),
    (["--preset", "nope"], "unknown gpt preset 'nope'; choose one of"),
    (["--lr", "-1"], "invalid learning rate -1.0"),
])
def test_bad_train_arguments(argv, message, text_file, tmp_path, capsys):
    code, _, err = run(["train", "--data", text_file, "--out", tmp_path / "run", "--no-progress",
                        *argv], capsys)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


def test_train_file_errors(tmp_path, capsys):
    code, _, err = run(["train", "--data", tmp_path / "missing.txt", "--out", tmp_path / "run"],
                       capsys)
    assert code == 2 and "tinyllm train: error: text file not found:" in err
    assert "missing.txt" in err
    (tmp_path / "tiny.txt").write_text("too short\n")
    code, _, err = run(["train", "--data", tmp_path / "tiny.txt", "--out", tmp_path / "run"],
                       capsys)
    assert code == 2 and "fewer than context_length + 2" in err
    code, _, err = run(["train", "--resume", "--data", tmp_path / "tiny.txt", "--out",
                        tmp_path / "empty"], capsys)
    assert code == 2 and f"no checkpoint at {tmp_path / 'empty' / 'checkpoint.safetensors'}" in err


def test_sample_with_a_missing_checkpoint_names_the_path(tmp_path, capsys):
    code, out, err = run(["sample", "--checkpoint", tmp_path / "nowhere", "--prompt", "a"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("tinyllm sample: error: no checkpoint at ")
    assert str(tmp_path / "nowhere") in err


def test_sample_argument_errors(gpt_run, capsys):
    out_dir, _ = gpt_run
    cases = [
        (["--prompt", "tΩ"], "1 character(s) not in the vocabulary: 'Ω' at position 1"),
        (["--prompt", ""], "the prompt is empty"),
        (["--tokens", "-1"], "--tokens must be >= 0, got -1"),
        (["--top-k", "0"], "top_k must be a positive integer, got 0"),
        (["--top-p", "1.5"], "top_p must be in (0, 1], got 1.5"),
        (["--temperature", "-1"], "temperature must be >= 0, got -1.0"),
        (["--top-k", "two"], "argument --top-k: invalid int value: 'two'"),
    ]
    for argv, message in cases:
        code, _, err = run(["sample", "--checkpoint", out_dir, "--tokens", "3", *argv], capsys)
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)


@pytest.mark.skipif(tl.cuda_available(), reason="checks the message given when there is no GPU")
def test_sample_on_cuda_without_a_gpu(gpt_run, capsys):
    code, _, err = run(["sample", "--checkpoint", gpt_run[0], "--device", "cuda", "--tokens", "2"],
                       capsys)
    assert code == 2 and "device 'cuda' requested but unavailable" in err


def test_sample_on_a_bert_checkpoint_is_a_clear_error(bert_run, capsys):
    code, _, err = run(["sample", "--checkpoint", bert_run, "--prompt", "the"], capsys)
    assert code == 2 and "holds a BERT, which does not generate text; use `tinyllm fill`" in err


def test_fill_errors(gpt_run, bert_run, tmp_path, capsys):
    code, _, err = run(["fill", "--checkpoint", gpt_run[0], "--text", "the [MASK]"], capsys)
    assert code == 2 and "holds a GPT; `tinyllm fill` needs a BERT checkpoint" in err
    code, _, err = run(["fill", "--checkpoint", bert_run, "--text", "the king is good"], capsys)
    assert code == 2 and "the text has no [MASK] token to fill" in err
    code, _, err = run(["fill", "--checkpoint", tmp_path / "nowhere", "--text", "[MASK]"], capsys)
    assert code == 2 and "no checkpoint at" in err and str(tmp_path / "nowhere") in err
    code, _, err = run(["fill", "--checkpoint", bert_run, "--text", "the king [MASK] " * 10],
                       capsys)
    assert code == 2 and "longer than context_length = 16" in err
    code, _, err = run(["fill", "--checkpoint", bert_run], capsys)
    assert code == 2 and "the following arguments are required: --text" in err


def test_fill_rejects_a_non_positive_top(bert_run, capsys):
    code, _, err = run(["fill", "--checkpoint", bert_run, "--text", "the [MASK]", "--top", "-1"],
                       capsys)
    assert code == 2 and "--top must be a positive integer" in err


# ==================================================================================================
# Round trips: train -> sample, train -> fill
# ==================================================================================================


def test_train_prints_metrics_and_a_sample(gpt_run):
    out_dir, stdout = gpt_run
    metrics = json.loads(stdout[stdout.index("{"):stdout.index("}") + 1])
    assert metrics == json.loads((out_dir / "metrics.json").read_text())
    assert metrics["iters"] == 6 and metrics["preset"] == "tiny"
    assert f"wrote {out_dir}/checkpoint.safetensors, loss.png and metrics.json" in stdout
    sample = stdout.split("--- sample (temperature 0.8) ---\n")[1]
    # the "\n" prompt, 30 characters, print's "\n"
    assert sample.startswith("\n") and len(sample) == 1 + 30 + 1
    assert set(sample) <= set(synthetic_play())


def test_sample_continues_the_prompt(gpt_run, capsys):
    out_dir, _ = gpt_run
    prompt = "SPEAKER1:\nthe "
    code, out, err = run(["sample", "--checkpoint", out_dir, "--prompt", prompt, "--tokens", "20",
                          "--seed", "3"], capsys)
    assert code == 0 and err == ""
    assert out.startswith(prompt) and len(out) == len(prompt) + 20 + 1 and out.endswith("\n")
    assert out[:-1] == generate_text(str(out_dir), prompt, 20, temperature=0.8, seed=3)
    # the KV cache changes nothing; the seed fixes the sample; temperature 0 is deterministic
    code, no_cache, _ = run(["sample", "--checkpoint", out_dir, "--prompt", prompt, "--tokens",
                             "20", "--seed", "3", "--no-cache"], capsys)
    assert code == 0 and no_cache == out
    greedy = [run(["sample", "--checkpoint", out_dir, "--prompt", prompt, "--tokens", "12",
                   "--temperature", "0", "--seed", str(seed)], capsys)[1] for seed in (0, 1)]
    assert greedy[0] == greedy[1] and greedy[0].startswith(prompt)
    code, zero, _ = run(["sample", "--checkpoint", out_dir / "checkpoint.safetensors", "--prompt",
                         prompt, "--tokens", "0"], capsys)
    assert code == 0 and zero == prompt + "\n"
    code, filtered, _ = run(["sample", "--checkpoint", out_dir, "--prompt", prompt, "--tokens",
                             "20", "--top-k", "1"], capsys)
    assert code == 0 and filtered[:len(prompt) + 12] == greedy[0][:-1]  # top-k = 1: greedy


def test_fill_prints_candidates_for_every_mask(bert_run, capsys):
    """One line per [MASK]: the --top most likely tokens under BERT's softmax there, best first."""
    text = "the king [MASK] good night [MASK]"
    code, out, err = run(["fill", "--checkpoint", bert_run, "--text", text, "--top", "3"], capsys)
    assert code == 0 and err == ""
    model, tokenizer, _ = load_checkpoint(bert_run)
    special = tokenizer.special_tokens
    # the space before each [MASK] is part of the masked word's BPE token (" good"): fill drops it
    ids = [special["[CLS]"], *tokenizer.encode(text.replace(" [MASK]", "[MASK]")), special["[SEP]"]]
    masks = [i for i, t in enumerate(ids) if t == special["[MASK]"]]
    with tl.no_grad():
        logits = model.eval()(np.array([ids]))[0].numpy()[0]  # (T, V)
    lines = out.strip().split("\n")
    assert len(lines) == len(masks) == 2
    for line, position in zip(lines, masks):
        probs = np.exp(logits[position] - logits[position].max())  # softmax in float32, as printed
        probs /= probs.sum()
        best = np.argsort(-probs)[:3]
        assert probs[best[0]] == probs.max() >= probs[best[1]] >= probs[best[2]]  # best first
        guesses = ", ".join(f"{tokenizer.decode([int(t)])!r} {probs[t]:.2f}" for t in best)
        assert line == f"[MASK] at token {position}: {guesses}"


def test_resume_continues_with_the_runs_own_settings(text_file, tmp_path, capsys):
    """`train --resume --out DIR` needs no other flag: data, model and recipe come from the
    checkpoint; only what the command line names (here --iters, extending the run) changes."""
    flags = ["--data", text_file, "--no-progress", "--sample-tokens", "0", "--iters", "4"]
    code, _, err = run(["train", *flags, "--out", tmp_path / "a"], capsys)
    assert code == 0 and err == ""
    assert T.saved_train_config(tmp_path / "a").data == str(text_file)
    code, out, err = run(["train", "--resume", "--iters", "7", "--out", tmp_path / "a",
                          "--no-progress"], capsys)
    assert code == 0 and err == "", err
    assert json.loads(out[out.index("{"):out.index("}") + 1])["iters"] == 7
    _, _, info = load_checkpoint(tmp_path / "a")
    assert info["step"] == 7 and info["settings"]["data"] == str(text_file)
    assert info["settings"]["iters"] == 7


def test_resume_without_a_run_is_a_clear_error(tmp_path, capsys):
    code, _, err = run(["train", "--resume", "--out", tmp_path / "none", "--no-progress"], capsys)
    assert code == 2
    assert "no checkpoint at" in err and "none" in err and "--out" in err
