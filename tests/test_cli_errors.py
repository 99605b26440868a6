"""Every bad argument of every ``tinyllm`` command, as one table: exit code 2, a one-line message
that names the problem, no traceback, nothing trained (issue 8, item 3).

Each row is (argv, expected exit code, a piece of the expected message). The commands run
in-process through ``tinyllm.cli.main(argv)``; ``{play}``, ``{gpt}``, ``{out}``... in a row are
files and folders made by the fixtures below: a short synthetic play, a tiny GPT and a tiny BERT
trained by ``tinyllm train`` on it (the presets of ``tests/test_cli.py``: 2 layers, width 16, 6
steps). Every row fails before any training. Then the sensible behaviours: a text without
newlines, ``--threads`` above the core count (capped, with a warning), and ``tinyllm sample``
printing tokens as they come, with the same text as ``generate_text``.
"""

import contextlib
import dataclasses
import io
import re
import subprocess
import sys

import pytest
from synthetic import synthetic_play
from threadpoolctl import threadpool_limits

import tinyllm as tl
import tinyllm.cli as cli
import tinyllm.train as T
from tinyllm.cli import generate_text, main
from tinyllm.models import BERT_PRESETS, GPT_PRESETS, BERTConfig, GPTConfig
from tinyllm.runtime import available_cores, blas_threads, limit_blas_threads

pytestmark = pytest.mark.ch11


@pytest.fixture(scope="module", autouse=True)
def tiny_presets():
    """The default recipes of `tinyllm train`, shrunk: tiny shapes, 6 steps, 2-batch evaluations."""
    tiny = dict(iters=6, batch_size=4, warmup_iters=2, eval_interval=100, eval_iters=2,
                final_eval_iters=2, checkpoint_interval=100)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(GPT_PRESETS, "tiny", GPTConfig(vocab_size=1, context_length=8, num_layers=2,
                                                     num_heads=2, d_model=16))
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


def quiet_main(argv) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, str]:
    """The files and folders the table names, and two trained runs."""
    root = tmp_path_factory.mktemp("cli_errors")
    files = {
        "play": synthetic_play(),
        "empty": "",
        "blank": "\n\n   \n\t\n",
        "tiny": "ab\n",
        "oneline": "the king my lord sweet prince " * 40,  # no newline at all
        "multibyte": "naïve café 🙂 — été, déjà vu\n\n" * 40,
    }
    found = {}
    for name, text in files.items():
        (root / f"{name}.txt").write_text(text, encoding="utf-8")
        found[name] = str(root / f"{name}.txt")
    (root / "latin1.txt").write_bytes("hello café\n".encode("latin-1") * 20)
    (root / "garbage.safetensors").write_bytes(b"\x00\x01not a checkpoint at all" * 10)
    (root / "folder").mkdir()
    found.update(latin1=root / "latin1.txt", garbage=root / "garbage.safetensors",
                 folder=root / "folder", missing=root / "missing.txt")
    for run, argv in {"gpt": [], "bert": ["--model", "bert"]}.items():
        code = quiet_main(["train", *argv, "--data", found["play"], "--out", root / run,
                           "--no-progress", "--sample-tokens", "0"])
        assert code == 0
        found[run] = root / run
    return {name: str(path) for name, path in found.items()}


def run(argv, capsys) -> tuple[int, str, str]:
    """main(argv) -> (exit code, stdout, stderr); argparse's SystemExit becomes its code."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


TRAIN = ["train", "--data", "{play}", "--out", "{out}", "--no-progress"]
SAMPLE = ["sample", "--checkpoint", "{gpt}", "--tokens", "3"]
FILL = ["fill", "--checkpoint", "{bert}", "--text", "the [MASK]"]
QUANTIZE = ["quantize", "--checkpoint", "{gpt}", "--out", "{out}"]  # chapter 16
PRUNE = ["prune", "--checkpoint", "{gpt}", "--out", "{out}"]
TRANSLATE = ["translate", "--checkpoint", "{gpt}", "--text", "vpon"]  # chapter 15
NO_GPU = pytest.mark.skipif(tl.cuda_available(), reason="checks the message without a GPU")

CASES = [
    # ---------------------------------------------------------------- train: numbers
    (TRAIN + ["--iters", "0"], 2, "--iters must be a positive integer, got 0"),
    (TRAIN + ["--iters", "-5"], 2, "--iters must be a positive integer, got -5"),
    (TRAIN + ["--iters", "2.5"], 2, "argument --iters: invalid int value: '2.5'"),
    (TRAIN + ["--batch-size", "0"], 2, "--batch-size must be a positive integer, got 0"),
    (TRAIN + ["--batch-size", "x"], 2, "argument --batch-size: invalid int value: 'x'"),
    (TRAIN + ["--grad-accum", "0"], 2, "--grad-accum must be a positive integer, got 0"),
    (TRAIN + ["--eval-interval", "-1"], 2, "--eval-interval must be a positive integer, got -1"),
    (TRAIN + ["--lr", "nan"], 2, "--lr must be a finite number, got nan"),
    (TRAIN + ["--lr", "inf"], 2, "--lr must be a finite number, got inf"),
    (TRAIN + ["--lr", "-1"], 2, "invalid learning rate -1.0"),
    (TRAIN + ["--lr", "fast"], 2, "argument --lr: invalid float value: 'fast'"),
    (TRAIN + ["--sample-tokens", "-1"], 2, "--sample-tokens must be >= 0, got -1"),
    (TRAIN + ["--seed", "-1"], 2, "--seed must be >= 0, got -1"),
    (TRAIN + ["--seed", "1.5"], 2, "argument --seed: invalid int value: '1.5'"),
    (TRAIN + ["--threads", "0"], 2, "--threads must be a positive integer, got 0"),
    (TRAIN + ["--threads", "-2"], 2, "--threads must be a positive integer, got -2"),
    (TRAIN + ["--threads", "many"], 2, "argument --threads: invalid int value: 'many'"),
    # ---------------------------------------------------------------- train: choices, options
    (TRAIN + ["--model", "gpt2"], 2, "argument --model: invalid choice: 'gpt2'"),
    (TRAIN + ["--tokenizer", "word"], 2, "argument --tokenizer: invalid choice: 'word'"),
    (TRAIN + ["--corpus", "bible"], 2, "argument --corpus: invalid choice: 'bible'"),
    (TRAIN + ["--device", "tpu"], 2, "argument --device: invalid choice: 'tpu'"),
    (TRAIN + ["--preset", "nope"], 2, "unknown gpt preset 'nope'; choose one of"),
    (TRAIN + ["--model", "bert", "--preset", "tiny"], 2, "unknown bert preset 'tiny'"),
    (TRAIN + ["--bogus"], 2, "tinyllm: error: unrecognized arguments: --bogus"),
    pytest.param(TRAIN + ["--device", "cuda"], 2, "device 'cuda' requested but unavailable",
                 marks=NO_GPU),
    pytest.param(TRAIN + ["--model", "lstm", "--device", "cuda"], 2,
                 "device 'cuda' requested but unavailable", marks=NO_GPU),
    # ---------------------------------------------------------------- train: files
    (["train", "--data", "{missing}", "--out", "{out}"], 2, "text file not found:"),
    (["train", "--data", "{folder}", "--out", "{out}"], 2, "is a folder; give a UTF-8 text file"),
    (["train", "--data", "{empty}", "--out", "{out}"], 2, "empty.txt is empty"),
    (["train", "--data", "{blank}", "--out", "{out}"], 2, "blank.txt is empty (or only white"),
    (["train", "--data", "{latin1}", "--out", "{out}"], 2, "is not UTF-8: byte 0xe9 at offset 9"),
    (["train", "--data", "{tiny}", "--out", "{out}"], 2, "fewer than context_length + 2"),
    (["train", "--model", "bert", "--data", "{oneline}", "--out", "{out}"], 2,
     "the train text has 1 paragraphs; NSP needs at least 2: separate paragraphs by a blank"),
    (["train", "--model", "bert", "--tokenizer", "char", "--data", "{play}", "--out", "{out}"], 2,
     "special tokens ['[PAD]', '[CLS]', '[SEP]', '[MASK]']; a CharTokenizer has none: use "
     "byte-level BPE (tinyllm train --model bert --tokenizer bpe"),
    (["train", "--data", "{play}", "--out", "{play}"], 2, "is a file, not a folder"),
    (["train", "--resume", "--out", "{folder}"], 2, "no checkpoint at"),
    # ---------------------------------------------------------------- sample: numbers
    (SAMPLE[:3] + ["--tokens", "-1"], 2, "--tokens must be >= 0, got -1"),
    (SAMPLE[:3] + ["--tokens", "many"], 2, "argument --tokens: invalid int value: 'many'"),
    (SAMPLE + ["--temperature", "nan"], 2, "temperature must be >= 0, got nan"),
    (SAMPLE + ["--temperature", "inf"], 2, "temperature must be >= 0, got inf"),
    (SAMPLE + ["--temperature=-inf"], 2, "temperature must be >= 0, got -inf"),
    (SAMPLE + ["--temperature", "-0.5"], 2, "temperature must be >= 0, got -0.5"),
    (SAMPLE + ["--temperature", "hot"], 2, "argument --temperature: invalid float value: 'hot'"),
    (SAMPLE + ["--top-k", "0"], 2, "top_k must be a positive integer, got 0"),
    (SAMPLE + ["--top-k", "-3"], 2, "top_k must be a positive integer, got -3"),
    (SAMPLE + ["--top-k", "{V_gpt+1}"], 2, "is more than the V = {V_gpt} tokens of this model"),
    (SAMPLE + ["--top-k", "2.5"], 2, "argument --top-k: invalid int value: '2.5'"),
    (SAMPLE + ["--top-p", "0"], 2, "top_p must be in (0, 1], got 0.0"),
    (SAMPLE + ["--top-p", "-0.1"], 2, "top_p must be in (0, 1], got -0.1"),
    (SAMPLE + ["--top-p", "1.5"], 2, "top_p must be in (0, 1], got 1.5"),
    (SAMPLE + ["--top-p", "nan"], 2, "top_p must be in (0, 1], got nan"),
    (SAMPLE + ["--top-p", "lots"], 2, "argument --top-p: invalid float value: 'lots'"),
    (SAMPLE + ["--seed", "-1"], 2, "--seed must be >= 0, got -1"),
    (SAMPLE + ["--seed", "x"], 2, "argument --seed: invalid int value: 'x'"),
    # ---------------------------------------------------------------- sample: text, files, choices
    (SAMPLE + ["--prompt", ""], 2, "the prompt is empty"),
    (SAMPLE + ["--prompt", "Zebra@"], 2, "--prompt has 3 character(s) not in the vocabulary: "
     "'Z' at position 0, 'b' at position 2, '@' at position 5; this model knows only the"),
    (SAMPLE + ["--device", "tpu"], 2, "argument --device: invalid choice: 'tpu'"),
    pytest.param(SAMPLE + ["--device", "cuda"], 2, "device 'cuda' requested but unavailable",
                 marks=NO_GPU),
    (["sample"], 2, "the following arguments are required: --checkpoint"),
    (["sample", "--checkpoint", "{missing}"], 2, "no checkpoint at"),
    (["sample", "--checkpoint", "{folder}"], 2, "no checkpoint at {folder}/checkpoint.safetensors"),
    (["sample", "--checkpoint", "{garbage}"], 2, "garbage.safetensors is not a valid safetensors"),
    (["sample", "--checkpoint", "{play}"], 2, "play.txt is not a valid safetensors"),
    (["sample", "--checkpoint", "{bert}"], 2, "holds a BERT, which does not generate text; use "
     "`tinyllm fill`"),
    # ---------------------------------------------------------------- fill
    (FILL + ["--top", "0"], 2, "--top must be a positive integer, got 0"),
    (FILL + ["--top", "-1"], 2, "--top must be a positive integer, got -1"),
    (FILL + ["--top", "{V_bert+1}"], 2, "--top {V_bert+1} is more than the V = {V_bert} tokens"),
    (FILL + ["--top", "x"], 2, "argument --top: invalid int value: 'x'"),
    (["fill", "--checkpoint", "{bert}", "--text", "the king"], 2,
     "the text has no [MASK] token to fill"),
    (["fill", "--checkpoint", "{bert}", "--text", "the king [MASK] " * 10], 2,
     "longer than context_length = 16 of this BERT: shorten the text"),
    (["fill", "--checkpoint", "{gpt}", "--text", "the [MASK]"], 2,
     "holds a GPT; `tinyllm fill` needs a BERT checkpoint"),
    (["fill", "--checkpoint", "{missing}", "--text", "[MASK]"], 2, "no checkpoint at"),
    (["fill", "--checkpoint", "{garbage}", "--text", "[MASK]"], 2, "is not a valid safetensors"),
    (["fill", "--checkpoint", "{bert}"], 2, "the following arguments are required: --text"),
    (FILL + ["--device", "tpu"], 2, "argument --device: invalid choice: 'tpu'"),
    pytest.param(FILL + ["--device", "cuda"], 2, "device 'cuda' requested but unavailable",
                 marks=NO_GPU),
    # ---------------------------------------------------------------- bench
    (["bench", "--steps", "0"], 2, "--steps must be a positive integer, got 0"),
    (["bench", "--steps", "-2"], 2, "--steps must be a positive integer, got -2"),
    (["bench", "--steps", "x"], 2, "argument --steps: invalid int value: 'x'"),
    (["bench", "--threads", "0"], 2, "--threads must be a positive integer, got 0"),
    (["bench", "--threads", "-1"], 2, "--threads must be a positive integer, got -1"),
    (["bench", "--threads", "x"], 2, "argument --threads: invalid int value: 'x'"),
    (["bench", "--bogus"], 2, "tinyllm: error: unrecognized arguments: --bogus"),
    (["bench", "--device", "tpu"], 2, "argument --device: invalid choice: 'tpu'"),
    pytest.param(["bench", "--device", "cuda"], 2, "device 'cuda' requested but unavailable",
                 marks=NO_GPU),
    # ---------------------------------------------------------------- chapter 16
    (TRAIN + ["--precision", "fp8"], 2, "argument --precision: invalid choice: 'fp8'"),
    (QUANTIZE + ["--bits", "3"], 2, "argument --bits: invalid choice: 3"),
    (QUANTIZE + ["--group-size", "0"], 2, "--group-size must be a positive integer, got 0"),
    (QUANTIZE + ["--group-size", "7"], 2, "group_size 7 must divide the input width K = 16"),
    (QUANTIZE + ["--bits", "4", "--matmul", "int8"], 2, "--matmul int8 multiplies int8 levels"),
    (QUANTIZE[:3] + ["--out", "{folder}"], 2, "is a folder: give the file to write"),
    (QUANTIZE[:3] + ["--out", "{play}"], 2, "exists: choose another file, or pass --overwrite"),
    (["quantize", "--checkpoint", "{missing}", "--out", "{out}"], 2, "no checkpoint at"),
    (["quantize", "--checkpoint", "{garbage}", "--out", "{out}"], 2, "is not a valid safetens"),
    (["quantize", "--checkpoint", "{gpt}"], 2, "the following arguments are required: --out"),
    (PRUNE + ["--sparsity", "1.5"], 2, "--sparsity is the fraction of weights to prune, in [0,"),
    (PRUNE + ["--sparsity", "nan"], 2, "--sparsity is the fraction of weights to prune, in [0,"),
    (PRUNE + ["--sparsity", "half"], 2, "argument --sparsity: invalid float value: 'half'"),
    (PRUNE[:3] + ["--sparsity", "0.5", "--out", "{bert}"], 2, "already holds a run"),
    (PRUNE[:3] + ["--sparsity", "0.5", "--out", "{gpt}"], 2, "is the run being pruned"),
    (["prune", "--checkpoint", "{missing}", "--sparsity", "0.5", "--out", "{out}"], 2,
     "no checkpoint at"),
    # ---------------------------------------------------------------- translate (chapter 15)
    (["train", "--model", "seq2seq", "--data", "{play}", "--out", "{out}"], 2,
     "seq2seq trains on the bundled parallel corpus (data/shakespeare-folio); --data is for"),
    (["train", "--model", "seq2seq", "--tokenizer", "bpe", "--out", "{out}"], 2,
     "--model seq2seq trains on its own corpus with its own character tokenizer"),
    (["train", "--model", "seq2seq", "--corpus", "shakespeare-all", "--out", "{out}"], 2,
     "drop --corpus and --tokenizer"),
    (TRANSLATE + ["--beam", "0"], 2, "--beam must be a positive integer, got 0"),
    (TRANSLATE + ["--beam", "x"], 2, "argument --beam: invalid int value: 'x'"),
    (TRANSLATE + ["--length-penalty", "-1"], 2, "--length-penalty must be a finite number >= 0"),
    (TRANSLATE + ["--length-penalty", "nan"], 2, "--length-penalty must be a finite number"),
    (TRANSLATE + ["--limit", "5"], 2, "--limit takes a positive number of pairs, and only with"),
    (TRANSLATE[:3] + ["--evaluate", "test", "--limit", "0"], 2, "--limit takes a positive"),
    (TRANSLATE[:3] + ["--evaluate", "dev"], 2, "argument --evaluate: invalid choice: 'dev'"),
    (TRANSLATE[:3] + ["--text", " "], 2, "--text is empty: give some Folio text"),
    (TRANSLATE[:3] + ["--file", "{missing}"], 2, "--file not found (or not a file)"),
    (TRANSLATE[:3], 2, "one of the arguments --text --file --evaluate is required"),
    (TRANSLATE + ["--file", "{play}"], 2, "argument --file: not allowed with argument --text"),
    (TRANSLATE + ["--device", "tpu"], 2, "argument --device: invalid choice: 'tpu'"),
    (TRANSLATE + ["--threads", "0"], 2, "--threads must be a positive integer, got 0"),
    (TRANSLATE, 2, "holds a GPT; `tinyllm translate` needs a seq2seq checkpoint"),
    (["translate", "--checkpoint", "{missing}", "--text", "vpon"], 2, "no checkpoint at"),
    (["translate", "--text", "vpon"], 2, "the following arguments are required: --checkpoint"),
    # ---------------------------------------------------------------- no command
    ([], 2, "the following arguments are required: COMMAND"),
    (["fly"], 2, "argument COMMAND: invalid choice: 'fly'"),
]


def fill_in(text: str, paths: dict, out: str) -> str:
    from tinyllm.checkpoint import load_checkpoint

    names = dict(paths, out=out)
    for run in ("gpt", "bert"):
        if f"V_{run}" in text:
            vocab_size = load_checkpoint(paths[run])[1].vocab_size
            names[f"V_{run}"], names[f"V_{run}+1"] = str(vocab_size), str(vocab_size + 1)
    for name, value in names.items():
        text = text.replace("{" + name + "}", value)
    return text


@pytest.mark.parametrize("argv, code, message", CASES)
def test_every_bad_argument_is_one_clear_line(argv, code, message, paths, tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = [fill_in(a, paths, out) for a in argv]
    got, stdout, err = run(argv, capsys)
    lines = err.strip().splitlines()
    assert got == code, (argv, err)
    assert "Traceback" not in err
    assert lines and re.match(r"tinyllm( \w+)?: error: ", lines[-1]), err  # argparse: last line
    assert fill_in(message, paths, out) in lines[-1], err
    if "usage:" not in err:  # not an argparse error: the message is the whole of stderr
        assert len(lines) == 1, err
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()  # nothing was trained
    if argv[:1] == ["sample"]:
        assert stdout == ""  # nothing printed before the error


# ----------------------------------------------------------------------------- sensible behaviour

def test_a_text_without_newlines_trains_a_gpt(paths, tmp_path, capsys):
    code, out, err = run(["train", "--data", paths["oneline"], "--out", tmp_path / "run",
                          "--no-progress", "--sample-tokens", "5"], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert (tmp_path / "run" / "checkpoint.safetensors").is_file()
    assert "--- sample (temperature 0.8) ---" in out  # the default prompt, "\n", is unknown:
    code, out, err = run(["sample", "--checkpoint", tmp_path / "run", "--tokens", "5"], capsys)
    assert code == 0 and err == ""
    assert out.startswith(" ") and len(out) == 1 + 5 + 1  # so it starts at its first character


def test_too_many_threads_are_capped_with_a_warning(paths, tmp_path, capsys):
    cores = available_cores()
    with threadpool_limits(limits=1):  # restored afterwards for the other tests of this worker
        assert limit_blas_threads(100_000) == cores
        code, _, err = run(["train", "--data", paths["play"], "--out", tmp_path / "run",
                            "--no-progress", "--sample-tokens", "0", "--threads", "100000"],
                           capsys)
        threads = blas_threads()
    assert code == 0
    assert err.strip() == (f"tinyllm train: warning: --threads 100000 is more than the {cores} "
                           f"core(s) this process may use; using {cores}")
    assert threads is None or threads <= cores  # OpenBLAS had taken 64, which only spin


def test_ctrl_c_while_sampling_exits_130_without_a_traceback(paths, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "generate_text", interrupted)
    code, _, err = run(SAMPLE[:2] + [paths["gpt"]], capsys)
    assert code == 130 and err.strip() == "tinyllm sample: interrupted"


# ----------------------------------------------------------------------------- streaming

@pytest.mark.parametrize("use_cache", [True, False])
def test_sample_streams_the_text_generate_text_returns(paths, use_cache, capsys):
    pieces = []
    text = generate_text(paths["gpt"], "the ", 40, temperature=0.9, seed=7, use_cache=use_cache,
                         on_text=pieces.append)
    assert len(pieces) == 1 + 40  # the prompt, then each token as it is drawn
    assert "".join(pieces) == text
    assert text == generate_text(paths["gpt"], "the ", 40, temperature=0.9, seed=7,
                                 use_cache=not use_cache)  # the cache changes nothing
    argv = ["sample", "--checkpoint", paths["gpt"], "--prompt", "the ", "--tokens", "40",
            "--temperature", "0.9", "--seed", "7"] + ([] if use_cache else ["--no-cache"])
    code, out, err = run(argv, capsys)
    assert code == 0 and err == ""
    assert out == text + "\n"


def test_streaming_a_byte_level_gpt_never_cuts_a_character(paths, tmp_path):
    assert quiet_main(["train", "--data", paths["multibyte"], "--out", tmp_path / "bpe",
                       "--tokenizer", "bpe", "--no-progress", "--sample-tokens", "0"]) == 0
    for seed in range(3):
        pieces = []
        text = generate_text(tmp_path / "bpe", "café", 60, temperature=1.5, seed=seed,
                             on_text=pieces.append)
        assert "".join(pieces) == text and text.startswith("café")


def test_temperature_zero_and_a_tiny_one_are_greedy(paths):
    greedy = generate_text(paths["gpt"], "the ", 30, temperature=0.0)
    assert generate_text(paths["gpt"], "the ", 30, temperature=1e-30, seed=3) == greedy
    assert generate_text(paths["gpt"], "the ", 30, temperature=0.0, top_k=2, seed=9) == greedy


def test_a_closed_pipe_ends_sample_quietly(paths):
    """`tinyllm sample | head -c 20`: the reader leaves early; no BrokenPipeError traceback."""
    process = subprocess.Popen([sys.executable, "-m", "tinyllm", "sample", "--checkpoint",
                                paths["gpt"], "--tokens", "100000"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    first = process.stdout.read(20)
    process.stdout.close()  # the reader goes away mid-stream
    _, err = process.communicate(timeout=120)
    assert len(first) == 20
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
    assert process.returncode == 141
