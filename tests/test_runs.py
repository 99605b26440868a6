"""Chapter 11, "Training": saved work is never destroyed (``tinyllm/runs.py``, ``tinyllm/train.py``,
``tinyllm train``).

Under test, each with the case that would have caught the old behaviour:

- a folder that holds a run is refused before anything is trained, unless ``--resume`` or
  ``--overwrite`` (which keeps the old checkpoint until the new run saves its first);
- ``--out`` is checked before training (a file, a folder that cannot be created or written);
- the run folder is locked: a second trainer gets a clear error (in-process, and two real
  processes); a trainer killed with kill -9 leaves no stale lock;
- SIGTERM and SIGHUP save like Ctrl-C (in-process, and a real SIGTERM to ``python -m tinyllm``);
- kill -9 during a save leaves the previous checkpoint loadable;
- a non-finite loss, gradient norm or weight stops the run before anything is saved, and the files
  already on disk keep their bytes;
- metrics.json is strict JSON (no NaN);
- ``--resume`` refuses a training text whose size or SHA-256 changed, unless
  ``--allow-changed-data``.

Training uses the tiny presets of ``tests/test_cli.py`` (a 2-layer, 16-wide GPT, 6 steps); the real
processes use the default preset with batches of 2 and one BLAS thread.
"""

import dataclasses
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from synthetic import synthetic_play

import tinyllm.train as T
from tinyllm import optim, runs
from tinyllm.checkpoint import CHECKPOINT_NAME, load_checkpoint, load_safetensors, save_safetensors
from tinyllm.cli import main
from tinyllm.models import GPT_PRESETS, GPTConfig
from tinyllm.objectives import LanguageModelTask

pytestmark = pytest.mark.ch11

RUN_FILES = (CHECKPOINT_NAME, "metrics.json", "loss.png")
# one BLAS thread: on a loaded machine, multi-threaded BLAS can make a step many times slower
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module", autouse=True)
def tiny_presets():
    """`tinyllm train`'s GPT recipe, shrunk: a tiny shape, 6 steps, 2-batch evaluations."""
    tiny = dict(preset="tiny", iters=6, batch_size=4, warmup_iters=2, eval_interval=100,
                eval_iters=2, final_eval_iters=2, checkpoint_interval=100, sample_tokens=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(GPT_PRESETS, "tiny", GPTConfig(vocab_size=1, context_length=8, num_layers=2,
                                                     num_heads=2, d_model=16))
        patch.setitem(T.TRAIN_PRESETS, "shakespeare-char",
                      dataclasses.replace(T.TRAIN_PRESETS["shakespeare-char"], **tiny))
        yield


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "play.txt"
    path.write_text(synthetic_play(), encoding="utf-8")
    return path


def run(argv: list, capsys) -> tuple[int, str, str]:
    """main(argv) -> (exit code, stdout, stderr); argparse's SystemExit becomes its code."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def train_cli(text_file: Path, out: Path, *flags) -> list:
    return ["train", "--data", text_file, "--out", out, "--no-progress", *flags]


def snapshot(out: Path) -> dict[str, bytes]:
    """The bytes of the run files in ``out`` (the lock file and temporaries aside)."""
    return {name: (out / name).read_bytes() for name in RUN_FILES if (out / name).exists()}


def config_for(text_file: Path, out: Path, **changes) -> T.TrainConfig:
    config = dataclasses.replace(T.TRAIN_PRESETS["shakespeare-char"], data=str(text_file),
                                 out_dir=str(out))
    return dataclasses.replace(config, **changes)


def quiet(config: T.TrainConfig, **kwargs) -> dict:
    return T.train(config, progress=False, log=kwargs.pop("log", lambda message: None), **kwargs)


def strict_json(text: str):
    """json.loads that rejects NaN, Infinity and -Infinity, as most JSON parsers do."""
    def reject(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(text, parse_constant=reject)


@pytest.fixture
def never_trains(monkeypatch):
    """Fail the test if the run gets as far as reading its text (the first step of training)."""
    def fail(config):
        raise AssertionError("training started")
    monkeypatch.setattr(T, "load_texts", fail)


# ==================================================================================================
# An existing run is refused; --overwrite replaces it; --out is checked first
# ==================================================================================================


@pytest.mark.parametrize("holds", [CHECKPOINT_NAME, "metrics.json"])
def test_a_folder_that_holds_a_run_is_refused(holds, text_file, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert run(train_cli(text_file, out), capsys)[0] == 0
    for name in RUN_FILES:
        if name != holds:
            (out / name).unlink()
    before = snapshot(out)
    monkeypatch.setattr(T, "load_texts", lambda config: pytest.fail("training started"))
    code, stdout, err = run(train_cli(text_file, out, "--seed", "7"), capsys)
    assert code == 2 and "Traceback" not in err and stdout == ""
    assert err.strip() == (f"tinyllm train: error: {out} already holds a run ({holds}): continue "
                           "it with --resume, replace it with --overwrite, or choose another --out")
    assert snapshot(out) == before


def test_resume_and_overwrite_are_exclusive(text_file, tmp_path, capsys, never_trains):
    code, _, err = run(train_cli(text_file, tmp_path / "run", "--resume", "--overwrite"), capsys)
    assert code == 2
    assert "--resume continues the run in --out and --overwrite replaces it" in err
    code, _, err = run(train_cli(text_file, tmp_path / "run", "--allow-changed-data"), capsys)
    assert code == 2 and "--allow-changed-data only applies with --resume" in err
    with pytest.raises(runs.RunError, match="give one of them, not both"):  # the library too
        quiet(config_for(text_file, tmp_path / "run"), resume=True, overwrite=True)


def test_overwrite_keeps_the_old_run_until_the_new_one_saves(text_file, tmp_path, capsys,
                                                             monkeypatch):
    """--overwrite: at the new run's first save the old files are still there, byte for byte;
    after it the new checkpoint holds the new run and the old metrics and loss curve are gone."""
    out = tmp_path / "run"
    assert run(train_cli(text_file, out, "--seed", "1"), capsys)[0] == 0
    old = snapshot(out)
    assert set(old) == set(RUN_FILES)
    seen_at_first_save = []
    original = T.save_checkpoint

    def recording_save(*args, **kwargs):
        seen_at_first_save.append(snapshot(out))
        original(*args, **kwargs)
        monkeypatch.setattr(T, "save_checkpoint", original)

    monkeypatch.setattr(T, "save_checkpoint", recording_save)
    # the new run is stopped (SIGTERM) at step 3, so it writes a checkpoint but no metrics
    config = config_for(text_file, out, seed=2, eval_interval=3)
    result = quiet(config, overwrite=True, log=signal_at(3, signal.SIGTERM))
    assert result == {"interrupted": True, "iters": 3}
    assert seen_at_first_save == [old]
    assert set(snapshot(out)) == {CHECKPOINT_NAME}  # the old run's metrics describe nothing now
    _, _, info = load_checkpoint(out)
    assert info["step"] == 3 and info["settings"]["seed"] == 2
    # a finished --overwrite run replaces everything
    assert run(train_cli(text_file, out, "--seed", "3", "--overwrite"), capsys)[0] == 0
    assert load_checkpoint(out)[2]["settings"]["seed"] == 3
    assert strict_json((out / "metrics.json").read_text())["iters"] == 6


def test_out_that_is_a_file_is_refused_before_training(text_file, tmp_path, capsys,
                                                       never_trains):
    file = tmp_path / "notes.txt"
    file.write_text("keep me")
    for flags in ([], ["--resume"], ["--overwrite"]):
        code, _, err = run(train_cli(text_file, file, *flags), capsys)
        assert code == 2 and "Traceback" not in err, err
        assert f"--out {file} is a file, not a folder" in err, err
    code, _, err = run(train_cli(text_file, file / "run"), capsys)  # cannot be created
    assert code == 2 and f"cannot write to the output folder {file / 'run'}" in err
    assert "choose another --out" in err
    assert file.read_text() == "keep me"


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX permissions")
def test_out_that_cannot_be_written_is_refused_before_training(text_file, tmp_path, capsys,
                                                               never_trains):
    """A read-only folder, and a folder that cannot be created inside one. As root (who may write
    anywhere) the command runs as the user nobody, in a folder nobody can reach."""
    if os.geteuid() != 0:
        locked = tmp_path / "read-only"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            for out in (locked, locked / "run"):
                code, _, err = run(train_cli(text_file, out), capsys)
                assert code == 2 and f"cannot write to the output folder {out} (" in err
        finally:
            locked.chmod(0o700)
        return
    base = Path(tempfile.mkdtemp())
    try:
        base.chmod(0o755)
        locked = base / "read-only"
        locked.mkdir(mode=0o555)
        # import as root, then become nobody (who may not be able to run this Python at all)
        script = ("import os, sys; import tinyllm.cli, tinyllm.train; os.setgid(65534); "
                  "os.setuid(65534); sys.exit(tinyllm.cli.main(sys.argv[1:]))")
        for out in (locked, locked / "run"):  # no --data file: training would fail differently
            result = subprocess.run(
                [sys.executable, "-c", script, "train", "--data", str(base / "missing.txt"),
                 "--out", str(out), "--no-progress"],
                cwd=base, env=ENV, capture_output=True, text=True, timeout=120)
            assert result.returncode == 2, result.stderr
            assert result.stderr.strip() == (f"tinyllm train: error: cannot write to the output "
                                             f"folder {out} (Permission denied): choose another "
                                             "--out")
    finally:
        shutil.rmtree(base)


def test_check_out_dir_probes_by_writing(tmp_path, monkeypatch):
    """The writability check creates a real file (os.access is wrong for root); a failure to
    create it is the one-line error."""
    runs.check_out_dir(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir() and not list((tmp_path / "a" / "b").iterdir())

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runs.tempfile, "mkstemp", no_space)
    with pytest.raises(runs.RunError, match=r"cannot write to the output folder .*\(No space left "
                                            r"on device\): choose another --out"):
        runs.check_out_dir(tmp_path / "a")


# ==================================================================================================
# The lock: one trainer per folder
# ==================================================================================================


def test_a_locked_folder_is_refused_and_free_again_after(text_file, tmp_path, capsys,
                                                         monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    with runs.lock_run_folder(out):
        assert (out / runs.LOCK_NAME).read_text() == f"{os.getpid()}\n"
        with monkeypatch.context() as patch:
            patch.setattr(T, "load_texts", lambda config: pytest.fail("training started"))
            code, _, err = run(train_cli(text_file, out), capsys)
        assert code == 2 and err.strip() == (
            f"tinyllm train: error: {out} is in use by another trainer (process {os.getpid()}): "
            "wait for it to finish or stop it, or choose another --out")
        with pytest.raises(runs.RunError, match="is in use by another trainer"):
            with runs.lock_run_folder(out):
                pass
    assert run(train_cli(text_file, out), capsys)[0] == 0  # released at the end of the block
    with runs.lock_run_folder(out):  # and by train() when it returns
        pass


def test_a_trainer_killed_with_kill_9_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    script = ("import sys, time; from pathlib import Path; import tinyllm.runs as r\n"
              "with r.lock_run_folder(Path(sys.argv[1])):\n"
              "    print('locked', flush=True)\n"
              "    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", script, str(out)], stdout=subprocess.PIPE,
                              text=True, env=ENV)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(runs.RunError, match=f"in use by another trainer .process {holder.pid}"):
            with runs.lock_run_folder(out):
                pass
        holder.kill()  # SIGKILL: no Python code runs in the holder any more
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    with runs.lock_run_folder(out):  # the operating system released the flock
        pass


def start_training(flags: list, cwd: Path) -> tuple[subprocess.Popen, list]:
    """Start `python -m tinyllm train FLAGS` and a thread collecting its output lines."""
    process = subprocess.Popen([sys.executable, "-m", "tinyllm", "train", *flags],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               cwd=cwd, env=ENV)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
    return process, lines


def wait_for_training(process: subprocess.Popen, lines: list, timeout: float = 120) -> None:
    """Until the process prints its parameter count, just before the first step."""
    deadline = time.monotonic() + timeout
    while not any("parameters" in line for line in lines):
        assert process.poll() is None, "".join(lines)
        assert time.monotonic() < deadline, "no parameter-count line: " + "".join(lines)
        time.sleep(0.05)


def real_flags(text_file: Path, out: Path, iters: int) -> list:
    """The default 0.8M-parameter preset, batches of 2, no evaluation or sample on the way."""
    return ["--data", str(text_file), "--out", str(out), "--iters", str(iters), "--no-progress",
            "--eval-interval", "100000", "--batch-size", "2", "--sample-tokens", "0"]


def test_two_trainers_on_one_folder(text_file, tmp_path, capsys):
    """A second `tinyllm train` on a folder a first one is training in fails at once, naming the
    folder and the first process; the first finishes undisturbed and its checkpoint loads."""
    out = tmp_path / "run"
    first, lines = start_training(real_flags(text_file, out, 60), tmp_path)
    try:
        wait_for_training(first, lines)
        for flags in ([], ["--overwrite"]):
            code, _, err = run(train_cli(text_file, out, *flags), capsys)
            assert code == 2, err
            assert f"{out} is in use by another trainer (process {first.pid})" in err
        assert first.poll() is None  # the lock error came while the first still trained
        assert first.wait(timeout=300) == 0, "".join(lines)
    finally:
        if first.poll() is None:
            first.kill()
    _, _, info = load_checkpoint(out)
    assert info["step"] == 60 and strict_json((out / "metrics.json").read_text())["iters"] == 60


# ==================================================================================================
# Signals save like Ctrl-C; kill -9 during a save harms nothing
# ==================================================================================================


def signal_at(step: int, signum):
    """A log function that sends this process ``signum`` at the step's validation message."""
    def log(message: str) -> None:
        if message.startswith(f"step {step}:"):
            signal.raise_signal(signum)
    return log


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_sigterm_and_sighup_save_like_ctrl_c(name, text_file, tmp_path):
    if not hasattr(signal, name):
        pytest.skip(f"{name} does not exist on this platform")
    signum = getattr(signal, name)
    before = {s: signal.getsignal(s) for s in runs.STOP_SIGNALS}
    messages = []
    config = config_for(text_file, tmp_path / "run", iters=10, eval_interval=4)
    result = quiet(config, log=lambda m: (messages.append(m), signal_at(4, signum)(m)))
    assert result == {"interrupted": True, "iters": 4}
    assert {s: signal.getsignal(s) for s in runs.STOP_SIGNALS} == before  # handlers put back
    assert messages[-1].startswith(f"interrupted at step 4: checkpoint saved to "
                                   f"{tmp_path / 'run' / CHECKPOINT_NAME}")
    assert messages[-1].endswith(f"(stopped by {name})")
    _, _, info = load_checkpoint(tmp_path / "run")
    assert info["step"] == 4 and info["history"]["step"] == [1, 2, 3, 4]
    # and the run resumes to the end
    assert quiet(config, resume=True)["iters"] == 10


def test_sigterm_to_a_real_training_process(text_file, tmp_path):
    """SIGTERM (what `timeout`, schedulers and containers send) to `python -m tinyllm train`:
    exit code 0, the checkpoint of the step reached, the printed metrics say interrupted."""
    out = tmp_path / "run"
    process, lines = start_training(real_flags(text_file, out, 100_000), tmp_path)
    try:
        wait_for_training(process, lines)
        time.sleep(1.0)  # a few steps
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
    time.sleep(0.2)  # let the reader thread take the last lines
    output = "".join(lines)
    assert "Traceback" not in output and "(stopped by SIGTERM)" in output, output
    step = int(output.split("interrupted at step ")[1].split(":")[0])
    assert strict_json(output[output.index("{"):]) == {"interrupted": True, "iters": step}
    _, _, info = load_checkpoint(out)
    assert 1 <= info["step"] == step and info["history"]["step"] == list(range(1, step + 1))


SAVE_IN_A_LOOP = """
import dataclasses, sys
import numpy as np
import tinyllm.train as T
from tinyllm.checkpoint import save_checkpoint
from tinyllm.tokenizers import CharTokenizer

config = T.TrainConfig()  # the default 0.8M-parameter GPT: a file of a few MB
tokenizer = CharTokenizer.from_text("abcdefgh\\n")
model = T.build_model("gpt", T.model_config(config, tokenizer.vocab_size), seed=0)
optimizer = T.build_optimizer(config, model)
scheduler = T.build_scheduler(config, optimizer)
first = model.parameters()[0]
for step in range(10**6):
    first.data[...] = step  # each file is told apart by its step and its first weight
    save_checkpoint(sys.argv[1], model, optimizer, scheduler, tokenizer, np.random.default_rng(0),
                    settings=dataclasses.asdict(config), step=step, history={})
    print(step, flush=True)
"""


def test_kill_9_during_saves_leaves_a_loadable_checkpoint(tmp_path):
    """A process saves checkpoints in a loop and is killed with SIGKILL at random moments, six
    times: the file on disk always loads, and is one whole save (its step matches its weights).
    (A writer that wrote the file in place failed this about once in six kills.)"""
    path = tmp_path / "run" / CHECKPOINT_NAME
    rng = random.Random(0)
    for _ in range(6):
        saver = subprocess.Popen([sys.executable, "-c", SAVE_IN_A_LOOP, str(path)],
                                 stdout=subprocess.PIPE, text=True, env=ENV)
        try:
            assert saver.stdout.readline().strip().isdigit()  # one save is complete
            time.sleep(rng.uniform(0.0, 0.3))  # a few saves later, at a random point of one
            saver.kill()
            saver.wait(timeout=30)
        finally:
            if saver.poll() is None:
                saver.kill()
        model, _, info = load_checkpoint(path)
        assert np.all(model.parameters()[0].numpy() == info["step"])


# ==================================================================================================
# A non-finite number stops the run before it is saved
# ==================================================================================================


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_a_huge_learning_rate_stops_the_run_and_keeps_the_files(text_file, tmp_path, capsys):
    """--lr 1e30 on a folder with a finished run (--overwrite): the weights blow up at step 1,
    the gradient norm is nan at step 2; the run stops with the step, what was not finite and a
    hint, and every file of the old run keeps its bytes."""
    out = tmp_path / "run"
    assert run(train_cli(text_file, out), capsys)[0] == 0
    before = snapshot(out)
    code, _, err = run(train_cli(text_file, out, "--overwrite", "--lr", "1e30"), capsys)
    assert code == 2 and "Traceback" not in err
    assert (f"tinyllm train: error: training stopped at step 2: the gradient norm is nan; nothing "
            f"of it was saved ({out / CHECKPOINT_NAME} is unchanged); lower the learning rate "
            "(--lr, now 1e+30)") in err
    assert snapshot(out) == before
    for lr in ("inf", "nan"):  # refused before anything runs
        code, _, err = run(train_cli(text_file, out, "--overwrite", "--lr", lr), capsys)
        assert code == 2 and f"--lr must be a finite number, got {lr}" in err
    assert snapshot(out) == before


@pytest.mark.filterwarnings("ignore:invalid:RuntimeWarning")
def test_non_finite_weights_are_never_saved(text_file, tmp_path):
    """lr = inf makes every weight inf or nan after step 1; with a checkpoint due at step 1, the
    save refuses them: no checkpoint is written at all."""
    config = config_for(text_file, tmp_path / "run", lr=float("inf"), checkpoint_interval=1)
    with pytest.raises(runs.NonFiniteError,
                       match=r"^training stopped at step 1: the weights are not finite \(inf or "
                             r"nan\), first wte\.weight; nothing of it was saved \(no checkpoint "
                             r"was written\); lower the learning rate \(--lr, now inf\)$"):
        quiet(config)
    assert snapshot(tmp_path / "run") == {}


@pytest.mark.parametrize("checkpoint_interval, kept", [(100, 4), (1, 5)])
def test_a_nan_loss_on_resume_keeps_the_last_checkpoint(checkpoint_interval, kept, text_file,
                                                        tmp_path, monkeypatch):
    """A loss that turns nan at step 6 of a run resumed from step 4: stopped before saving; the
    checkpoint on disk is the last good one (step 4, byte for byte, or step 5 if a checkpoint
    was due there), and the error says which."""
    out = tmp_path / "run"
    config = config_for(text_file, out, iters=4)
    quiet(config)
    before = snapshot(out)
    original = LanguageModelTask.loss
    calls = []

    def loss_turning_nan(self, model, batch):
        calls.append(1)
        loss = original(self, model, batch)
        return loss * float("nan") if len(calls) == 2 else loss

    monkeypatch.setattr(LanguageModelTask, "loss", loss_turning_nan)
    resumed = dataclasses.replace(config, iters=8, checkpoint_interval=checkpoint_interval)
    with pytest.raises(runs.NonFiniteError,
                       match=r"^training stopped at step 6: the training loss is nan; nothing of "
                             rf"it was saved \({out / CHECKPOINT_NAME} still holds step {kept}\)"):
        quiet(resumed, resume=True)
    _, _, info = load_checkpoint(out)
    assert info["step"] == kept and all(np.isfinite(info["history"]["train_loss"]))
    if kept == 4:
        assert snapshot(out) == before


def test_a_non_finite_gradient_norm_stops_before_the_update(monkeypatch):
    """train_step refuses an inf gradient norm before the optimizer step: the weights stay."""
    ids = np.arange(300) % 7
    task = LanguageModelTask(ids, ids[:20], batch_size=2, context_length=8)
    config = T.TrainConfig(iters=10, warmup_iters=2)
    model = T.build_model("gpt", GPTConfig(vocab_size=7, context_length=8, num_layers=1,
                                           num_heads=2, d_model=16), seed=0)
    before = model.state_dict()
    optimizer = T.build_optimizer(config, model)
    monkeypatch.setattr(optim, "clip_grad_norm_", lambda params, max_norm: float("inf"))
    with pytest.raises(runs.NonFiniteError, match=r"^the gradient norm is inf$"):
        T.train_step(model, task, np.random.default_rng(0), optimizer,
                     T.build_scheduler(config, optimizer), grad_clip=1.0, grad_accum=1)
    assert optimizer.step_count == 0
    after = model.state_dict()
    assert all(np.array_equal(before[name], after[name]) for name in before)


# ==================================================================================================
# metrics.json is strict JSON, written atomically
# ==================================================================================================


def test_metrics_json_is_strict_json_even_for_a_nan_loss(text_file, tmp_path, monkeypatch):
    original = LanguageModelTask.evaluate

    def evaluate_overflowing(self, model, split, iters, seed):
        result = original(self, model, split, iters, seed)
        return {**result, "loss": float("nan"), "perplexity": float("inf")}

    monkeypatch.setattr(LanguageModelTask, "evaluate", evaluate_overflowing)
    metrics = quiet(config_for(text_file, tmp_path / "run"))
    written = strict_json((tmp_path / "run" / "metrics.json").read_text())
    assert written == metrics
    assert written["val_loss"] is None and written["val_perplexity"] is None
    assert written["train_loss"] is None and written["iters"] == 6
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_write_json_replaces_every_non_finite_number(tmp_path):
    value = {"a": float("nan"), "b": [1.5, float("inf"), {"c": -float("inf")}], "d": (2, "x"),
             "e": None, "f": True}
    written = runs.write_json(tmp_path / "m.json", value)
    expected = {"a": None, "b": [1.5, None, {"c": None}], "d": [2, "x"], "e": None, "f": True}
    assert written == expected == strict_json((tmp_path / "m.json").read_text())
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temporary file left


def test_write_bytes_is_atomic_and_unique_to_its_writer(tmp_path, monkeypatch):
    """A write that fails half way leaves the old file as it was and no temporary behind; two
    writers use two different temporary files."""
    path = tmp_path / "metrics.json"
    path.write_bytes(b"old")
    used = []
    original = runs.tempfile.mkstemp

    def recording_mkstemp(**kwargs):
        used.append(original(**kwargs))
        return used[-1]

    monkeypatch.setattr(runs.tempfile, "mkstemp", recording_mkstemp)
    monkeypatch.setattr(runs.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk")))
    with pytest.raises(OSError, match="disk"):
        runs.write_bytes(path, b"new")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [path.name]
    monkeypatch.undo()
    monkeypatch.setattr(runs.tempfile, "mkstemp", recording_mkstemp)
    runs.write_bytes(path, b"one")
    runs.write_bytes(path, b"two")
    assert path.read_bytes() == b"two" and len({name for _, name in used}) == 3


# ==================================================================================================
# --resume checks the training text
# ==================================================================================================


def test_the_checkpoint_records_the_training_text(text_file, tmp_path):
    quiet(config_for(text_file, tmp_path / "run"))
    data = text_file.read_bytes()
    assert load_checkpoint(tmp_path / "run")[2]["data"] == {
        "path": str(text_file.resolve()), "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest()}


def test_the_fingerprint_of_the_bundled_corpus(tmp_path, monkeypatch):
    """Without --data the run reads the corpus's train.txt and val.txt: both, as one text."""
    (tmp_path / "train.txt").write_bytes(b"to be or ")
    (tmp_path / "val.txt").write_bytes(b"not to be")
    monkeypatch.setattr(runs, "corpus_path", lambda name: tmp_path)
    digest = hashlib.sha256(b"to be or not to be").hexdigest()
    assert runs.data_fingerprint(None, "shakespeare") == {"path": str(tmp_path), "size": 18,
                                                          "sha256": digest}


@pytest.mark.parametrize("change", ["append", "same size"])
def test_resume_refuses_a_changed_training_text(change, text_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(train_cli(text_file, out, "--iters", "3"), capsys)[0] == 0
    before = snapshot(out)
    text = text_file.read_text()
    text_file.write_text(text + "more lines\n" if change == "append" else text[::-1])
    resume = ["train", "--resume", "--iters", "5", "--out", out, "--no-progress"]
    code, _, err = run(resume, capsys)
    assert code == 2 and "Traceback" not in err
    assert f"the training text {text_file.resolve()} changed since the checkpoint was" in err
    assert "restore it, or pass --allow-changed-data to resume on it anyway" in err
    assert snapshot(out) == before
    code, stdout, err = run([*resume, "--allow-changed-data"], capsys)
    assert code == 0, err
    assert f"warning: the training text {text_file.resolve()} changed since the" in stdout
    _, _, info = load_checkpoint(out)
    assert info["step"] == 5 and info["data"]["size"] == len(text_file.read_bytes())
    text_file.write_text(text)  # restored: resumes without a word
    code, stdout, _ = run([*resume[:3], "7", *resume[4:], "--allow-changed-data"], capsys)
    assert code == 0 and "warning" in stdout  # recorded is now the changed text
    code, stdout, _ = run([*resume[:3], "8", *resume[4:]], capsys)
    assert code == 0 and "warning" not in stdout


def test_resume_of_a_checkpoint_without_a_fingerprint_warns(text_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(train_cli(text_file, out, "--iters", "3"), capsys)[0] == 0
    arrays, metadata = load_safetensors(out / CHECKPOINT_NAME)
    save_safetensors(out / CHECKPOINT_NAME, arrays, {**metadata, "data": "null"})  # an older run
    code, stdout, err = run(["train", "--resume", "--iters", "4", "--out", out, "--no-progress"],
                            capsys)
    assert code == 0, err
    assert ("warning: the checkpoint records no size or SHA-256 of its training text (an older "
            f"tinyllm wrote it): resuming without checking that {text_file.resolve()} is "
            "unchanged") in stdout
    assert load_checkpoint(out)[2]["data"]["size"] == len(text_file.read_bytes())  # recorded now
