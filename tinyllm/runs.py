"""The run folder: what ``tinyllm train`` promises about saved work (chapter 11, "Training").

A run folder (``--out``) holds ``checkpoint.safetensors``, ``metrics.json`` and ``loss.png``.
``tinyllm.train`` calls this module so that nothing in it is lost or silently wrong:

- :func:`claim_run_folder` checks ``--out`` before anything is trained (a folder, creatable,
  writable), locks it for this trainer (:func:`lock_run_folder`), and refuses a folder that holds
  a run unless the run is resumed or ``overwrite`` was asked for;
- :func:`check_settings`, :func:`data_fingerprint` and :func:`check_data`: a resume keeps the run's
  recipe, and the training text's size and SHA-256, recorded in every checkpoint, must not change;
- :class:`StopRequest`: Ctrl-C (SIGINT), SIGTERM and SIGHUP finish the current step, then the run
  saves and stops, as if it had ended there;
- :func:`check_finite` and :class:`NonFiniteGuard`: an inf or nan loss, gradient norm or weight
  stops the run before it is saved over a good checkpoint;
- :func:`write_json`, :func:`write_bytes`: strict JSON (no NaN, which most parsers reject), and
  every file written atomically through a temporary file unique to its writer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from tinyllm.backend import get_array_module
from tinyllm.checkpoint import CHECKPOINT_NAME
from tinyllm.corpus import corpus_path

try:
    import fcntl
except ImportError:  # Windows: msvcrt's byte-range lock, also released when the process ends
    fcntl = None
    import msvcrt

METRICS_NAME = "metrics.json"  # the final metrics of a finished run
LOSS_PLOT_NAME = "loss.png"  # its loss curve
LOCK_NAME = ".tinyllm-train.lock"  # locked by the trainer using the folder; holds its pid
RUN_FILES = (CHECKPOINT_NAME, METRICS_NAME)  # a folder with one of these holds a run
# settings a resume may change; any other change is refused
RESUMABLE_CHANGES = ("iters", "out_dir", "device", "checkpoint_interval", "eval_interval")
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))  # SIGHUP: not on Windows


class RunError(ValueError):
    """A run folder that cannot be used as asked: a file, locked, holding a run, changed data."""


class NonFiniteError(ValueError):
    """An inf or nan loss, gradient norm or weight: the run stops before saving it."""


# --------------------------------------------------------------------------------------------------
# The folder: checked, locked, never silently replaced
# --------------------------------------------------------------------------------------------------


def check_out_dir(out_dir: Path, create: bool = True) -> None:
    """Refuse an ``out_dir`` that is a file, cannot be created, or cannot be written to."""
    if out_dir.exists() and not out_dir.is_dir():
        raise RunError(f"--out {out_dir} is a file, not a folder: give a folder for the run's "
                       "checkpoint, loss curve and metrics")
    if not create and not out_dir.exists():
        return
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # a real file, created and removed: os.access is wrong for root and some network drives
        probe, probe_path = tempfile.mkstemp(dir=out_dir, prefix=".tinyllm-write-test-")
        os.close(probe)
        os.unlink(probe_path)
    except OSError as error:
        raise RunError(f"cannot write to the output folder {out_dir} "
                       f"({error.strerror or error}): choose another --out") from None


def _try_lock(fd: int, path: Path) -> bool:
    """Take the exclusive lock on the open file ``fd`` without waiting; False if it is held."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except (BlockingIOError, PermissionError):
        return False
    except OSError as error:  # e.g. a network file system without locks
        raise RunError(f"cannot lock {path} ({error.strerror or error}): put --out on a local "
                       "disk") from None
    return True


def _holder(path: Path) -> str:
    """'process 1234' from the lock file's pid, or 'another process' if it cannot be read."""
    with contextlib.suppress(OSError, ValueError):
        return f"process {int(path.read_text().strip())}"
    return "another process"


@contextlib.contextmanager
def lock_run_folder(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` for the ``with`` block, or raise RunError at once.

    The lock is ``fcntl.flock`` on the file LOCK_NAME in the folder, not a lock file created with
    O_EXCL: the operating system releases a flock when its process ends, however it ends, so a
    trainer killed with kill -9 (or a machine that lost power) never leaves a stale lock that would
    block the folder until someone deletes it by hand. The lock file stays in the folder (deleting
    it would let a second trainer lock a new file while the first holds the old one); it holds the
    pid of the last trainer, which the error of a second trainer names.
    """
    path = out_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    try:
        if not _try_lock(fd, path):
            raise RunError(f"{out_dir} is in use by another trainer ({_holder(path)}): wait for "
                           "it to finish or stop it, or choose another --out")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def claim_run_folder(out_dir: Path, *, resume: bool, overwrite: bool) -> Iterator[None]:
    """Check and lock ``out_dir`` for a run; refuse one that holds a run, unless resumed or
    ``overwrite`` (whose old files stay until the new run saves its first checkpoint)."""
    check_run_folder(out_dir, resume=resume, overwrite=overwrite, create=not resume)
    with lock_run_folder(out_dir):  # checked again under the lock: no race with another trainer
        check_run_folder(out_dir, resume=resume, overwrite=overwrite, create=False)
        yield


def check_run_folder(out_dir: Path, *, resume: bool, overwrite: bool, create: bool = False) -> None:
    """The refusals of :func:`claim_run_folder`, without the lock: a command that spends minutes
    before training (loading a model, a dataset) calls it first, so a bad --out fails at once."""
    if resume and overwrite:
        raise RunError("--resume continues the run in --out and --overwrite replaces it: "
                       "give one of them, not both")
    checkpoint = out_dir / CHECKPOINT_NAME
    check_out_dir(out_dir, create=create)
    if resume and not checkpoint.is_file():
        raise FileNotFoundError(f"no checkpoint at {checkpoint}: nothing to resume; check --out, "
                                "or start the run without --resume")
    found = [name for name in RUN_FILES if (out_dir / name).exists()]
    if found and not (resume or overwrite):
        raise RunError(f"{out_dir} already holds a run ({', '.join(found)}): continue it with "
                       "--resume, replace it with --overwrite, or choose another --out")


def remove_stale_results(out_dir: Path) -> None:
    """Delete the metrics and loss curve of a replaced run (once the new run has a checkpoint)."""
    for name in (METRICS_NAME, LOSS_PLOT_NAME):
        (out_dir / name).unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# Resuming: the same recipe, the same data
# --------------------------------------------------------------------------------------------------


def check_settings(saved: dict[str, Any], current: dict[str, Any], checkpoint: Path) -> None:
    """Refuse to resume with settings other than the run's own, but for RESUMABLE_CHANGES."""
    changed = [name for name in saved
               if name not in RESUMABLE_CHANGES and saved[name] != current.get(name)]
    if changed:
        raise ValueError(f"cannot resume {checkpoint} with different settings: "
                         f"{', '.join(changed)}")


def data_fingerprint(data: str | None, corpus: str) -> dict[str, Any]:
    """{"path", "size", "sha256"} of the training text: the ``data`` file, or (``data`` None) the
    bundled ``corpus``'s ``train.txt`` then ``val.txt``, hashed as one text (path: their folder)."""
    if data:
        path = Path(data).resolve()
        files = [path]
    else:
        path = corpus_path(corpus)
        files = [path / "train.txt", path / "val.txt"]
    digest, size = hashlib.sha256(), 0
    for file in files:
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):  # 1 MiB at a time
                digest.update(chunk)
                size += len(chunk)
    return {"path": str(path), "size": size, "sha256": digest.hexdigest()}


def check_data(recorded: dict | None, current: dict, allow_changed: bool,
               log: Callable[[str], None]) -> None:
    """Refuse to resume on a training text whose size or SHA-256 differs from the recorded one,
    unless ``allow_changed``; a checkpoint that recorded none resumes with a warning."""
    if not isinstance(recorded, dict):
        log(f"warning: the checkpoint records no size or SHA-256 of its training text (an older "
            f"tinyllm wrote it): resuming without checking that {current['path']} is unchanged")
        return
    if (recorded.get("size"), recorded.get("sha256")) == (current["size"], current["sha256"]):
        return
    change = (f"{recorded.get('size')} bytes, SHA-256 {str(recorded.get('sha256'))[:12]}... when "
              f"saved; {current['size']} bytes, {current['sha256'][:12]}... now")
    if allow_changed:
        log(f"warning: the training text {current['path']} changed since the checkpoint "
            f"({change}); resuming on the new text (--allow-changed-data)")
        return
    raise RunError(f"the training text {current['path']} changed since the checkpoint was written "
                   f"({change}): restore it, or pass --allow-changed-data to resume on it anyway")


# --------------------------------------------------------------------------------------------------
# Stopping: on a signal (after saving), on a non-finite number (without saving)
# --------------------------------------------------------------------------------------------------


class StopRequest:
    """The first SIGINT (Ctrl-C), SIGTERM or SIGHUP asks the loop to stop after the current step
    (then the run saves); a second one stops at once (KeyboardInterrupt).

    ``install`` sets it as the handler of those signals (in the main thread only: Python allows
    handlers nowhere else); ``uninstall`` puts the previous handlers back.
    """

    def __init__(self):
        self.requested = False
        self.signal_name: str | None = None  # "SIGTERM", ... once requested
        self._previous: dict = {}

    def __call__(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def install(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self) for s in STOP_SIGNALS}
        return self

    def uninstall(self) -> None:
        for s, handler in self._previous.items():  # None: a handler not set from Python
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        self._previous = {}


def check_finite(what: str, value: float) -> None:
    """Raise NonFiniteError if ``value`` (the training loss, the gradient norm) is inf or nan."""
    if not math.isfinite(value):
        raise NonFiniteError(f"the {what} is {value}")


class NonFiniteGuard:
    """Stops a run at an inf or nan loss, gradient norm or weight, before anything of it is saved.

    Its error names the step, what was not finite, what the checkpoint on disk still holds (the
    step last saved, ``saved_step``: None while this run has saved none) and what to change.
    """

    def __init__(self, checkpoint: Path, lr: float, saved_step: int | None):
        self.checkpoint, self.lr, self.saved_step = checkpoint, lr, saved_step

    @contextlib.contextmanager
    def at_step(self, step: int) -> Iterator[None]:
        """Turn a NonFiniteError raised in the block into the run's full error, at ``step``."""
        try:
            yield
        except NonFiniteError as error:
            if self.saved_step is not None:
                kept = f"{self.checkpoint} still holds step {self.saved_step}"
            elif self.checkpoint.exists():
                kept = f"{self.checkpoint} is unchanged"
            else:
                kept = "no checkpoint was written"
            raise NonFiniteError(f"training stopped at step {step}: {error}; nothing of it was "
                                 f"saved ({kept}); lower the learning rate (--lr, now "
                                 f"{self.lr:g})") from None

    def check_weights(self, model, step: int) -> None:
        """Stop (NonFiniteError) if a parameter of ``model`` has an inf or nan entry."""
        with self.at_step(step):
            for name, p in model.named_parameters():
                if not bool(get_array_module(p.data).isfinite(p.data).all()):
                    raise NonFiniteError(f"the weights are not finite (inf or nan), first {name}")

    def saved(self, step: int) -> bool:
        """Record that ``step`` was saved; True if it is the first checkpoint of this run."""
        first, self.saved_step = self.saved_step is None, step
        return first


# --------------------------------------------------------------------------------------------------
# Writing files: atomic, unique to the writer, strict JSON
# --------------------------------------------------------------------------------------------------


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file of this writer alone in the same
    folder (``tempfile.mkstemp``), flushed to disk, then renamed over ``path``."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o644)  # mkstemp's files are private (0o600)
        os.replace(temporary, path)  # atomic on POSIX and Windows
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def finite_or_none(value: Any) -> Any:
    """``value`` with every inf and nan float, at any depth of dicts and lists, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def write_json(path: Path, value: Any) -> Any:
    """Write ``value`` as strict JSON (inf, nan: null), atomically; returns what was written."""
    value = finite_or_none(value)
    write_bytes(path, (json.dumps(value, indent=2, allow_nan=False) + "\n").encode("utf-8"))
    return value
