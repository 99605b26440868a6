"""Data-parallel training over MPI ranks (chapter 17, "Scale").

``mpiexec -n W tinyllm train ...`` starts W copies of the trainer, the *ranks*. Each holds the whole
model; a step splits its micro-batches between them and averages the gradients:

    g = (1 / (W k)) sum_{j=0}^{W k - 1} grad L_j                                       (eq. 17.1)

over the W k micro-batches of a step (k = ``grad_accum`` per rank). Rank r computes the terms with
j mod W = r, scaled by 1 / (W k) before its backward (eq. 9.14), and one ``Allreduce`` (sum) of a
single flat buffer of all gradients gives every rank the same g. Every rank then clips and steps
identically, so the weights stay identical: :meth:`MPIWorld.check_identical` compares a hash of
them across ranks every ``CHECK_INTERVAL`` steps and stops the run if they ever differ.

The batches are the same by construction: every rank draws *all* W k micro-batches of a step from
one generator seeded with the run's seed (drawing a batch costs next to nothing) and keeps its own.
So W ranks with ``grad_accum`` k see exactly the batches of one process with ``grad_accum`` W k,
and the batch generator's state is the same on every rank (rank 0 saves it). The only difference
is the order of the additions in g: one process adds micro-batch j's gradient into the sum of the
first j, MPI adds the ranks' partial sums, so float32 results differ in the last bits (~1e-7
relative per step; the tests bound it). Dropout generators differ per rank (rank r > 0 derives its
own from (seed, r)); their states are gathered into the checkpoint, so a resume is exact.

Only rank 0 locks the run folder, writes checkpoints, logs, plots and draws the progress bar, and
evaluates; an error on any rank stops all of them (``MPI_Abort``), never leaving one waiting.
mpi4py is imported only when an MPI launcher started this process (``launched_size`` reads the
launcher's environment: MPICH/Intel ``PMI_SIZE``, Open MPI ``OMPI_COMM_WORLD_SIZE``, MVAPICH
``MV2_COMM_WORLD_SIZE``); otherwise :class:`SingleProcess` has the same methods and does nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from typing import Any, Iterator

import numpy as np

from tinyllm.backend import get_array_module, to_numpy
from tinyllm.tensor import Tensor

CHECK_INTERVAL = 100  # steps between checks that every rank holds the same weights
INSTALL = 'pip install "tinyllm[distributed]"'  # mpi4py and the mpich wheel (its own mpiexec)
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class DistributedError(ValueError):
    """An MPI run that cannot go on: mpi4py missing, ranks out of step, a resume on other ranks
    (a ValueError, as every error a user can fix: the command prints it as one line)."""


def launched_size(environ=os.environ) -> int:
    """The number of ranks an MPI launcher started (from its environment variables), else 1."""
    for name in SIZE_VARIABLES:
        value = environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def world(environ=os.environ):
    """The ranks of this run: an :class:`MPIWorld` under ``mpiexec -n W`` with W > 1, else the
    :class:`SingleProcess` fallback. Under a launcher without mpi4py: a DistributedError that
    says what to install (W processes that each trained alone would overwrite each other)."""
    size = launched_size(environ)
    if size <= 1:
        return SingleProcess()
    try:
        from mpi4py import MPI
    except ImportError:
        raise DistributedError(f"this process was started by an MPI launcher as one of {size} "
                               f"ranks, but mpi4py is not installed: {INSTALL} (or run "
                               "`tinyllm train` without mpiexec)") from None
    return MPIWorld(MPI)


def model_generators(model) -> dict[str, dict]:
    """The states of the model's own generators (dropout), by module name, as in checkpoints."""
    return {f"{name}.rng" if name else "rng": module.rng.bit_generator.state
            for name, module in model.named_modules()
            if isinstance(getattr(module, "rng", None), np.random.Generator)}


def _set_generators(model, states: dict[str, dict]) -> None:
    for name, module in model.named_modules():
        if isinstance(getattr(module, "rng", None), np.random.Generator):
            module.rng.bit_generator.state = states[f"{name}.rng" if name else "rng"]


class SingleProcess:
    """One process, no MPI: the same interface as :class:`MPIWorld`, every method trivial."""

    rank, size, is_root = 0, 1, True
    command = "tinyllm train"  # how to start this run again (the resume hint)

    def check_supported(self, config) -> None:
        pass

    def start(self, model, seed: int) -> None:
        pass

    def reduce_gradients(self, model, loss_sum):
        return loss_sum

    def any(self, flag: bool) -> bool:
        return bool(flag)

    def barrier(self) -> None:
        pass

    def check_identical(self, model, step: int) -> None:
        pass

    def checkpoint_state(self, model) -> dict[str, Any]:
        return {"size": 1}

    def resume(self, saved: dict | None, model, checkpoint) -> None:
        check_ranks(saved, self.size, checkpoint)

    @contextlib.contextmanager
    def fail_together(self) -> Iterator[None]:
        yield


SINGLE_PROCESS = SingleProcess()  # the default of train_step: no MPI


def check_ranks(saved: dict | None, size: int, checkpoint) -> None:
    """A run resumes on the number of ranks it was trained on (a file without the field: 1).

    Another number would change the global batch (W k micro-batches a step) and the dropout
    generators, so the continuation would not be the run's own."""
    saved_size = 1 if saved is None else saved.get("size")
    if isinstance(saved_size, bool) or not isinstance(saved_size, int) or saved_size < 1:
        raise DistributedError(f"{checkpoint}: field 'ranks.size' must be a positive integer, "
                               f"got {saved_size!r}")
    if saved_size != size:
        command = "tinyllm train" if saved_size == 1 else f"mpiexec -n {saved_size} tinyllm train"
        raise DistributedError(f"{checkpoint} was trained on {saved_size} rank(s), this is "
                               f"{size}: the global batch would change; resume it with "
                               f"`{command} --resume ...`")


class MPIWorld:
    """MPI's COMM_WORLD for training: rank, size, the gradient Allreduce, the weight check."""

    def __init__(self, MPI):
        self.MPI, self.comm = MPI, MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.is_root = self.rank == 0
        self.command = f"mpiexec -n {self.size} tinyllm train"
        self._buffers: dict[tuple, np.ndarray] = {}  # (dtype, length) -> the flat buffer, reused

    def check_supported(self, config) -> None:
        if config.precision != "fp32":
            raise DistributedError(f"--precision {config.precision} is not supported under MPI "
                                   "(its loss scaler skips steps per rank): use fp32")
        if config.model == "lstm":
            raise DistributedError("--model lstm carries its state from one batch to the next "
                                   "(truncated BPTT), so its batches cannot be split between "
                                   "ranks: train it without mpiexec")

    def start(self, model, seed: int) -> None:
        """Rank r > 0 draws its dropout masks from generators seeded by (seed, r, module index)."""
        if self.rank == 0:
            return
        names = sorted(model_generators(model))
        _set_generators(model, {name: np.random.default_rng([seed, self.rank, i]).bit_generator
                                .state for i, name in enumerate(names)})

    def reduce_gradients(self, model, loss_sum):
        """Sum every rank's gradients (and losses) in place: one Allreduce per gradient dtype.

        The buffer holds each gradient flattened, then one count per parameter (1 where this rank
        has a gradient): a parameter no rank touched keeps ``grad = None``, as in one process.
        After the sum, each ``p.grad.data`` is a view into the buffer (no copy back).
        """
        params = model.parameters()
        xp = get_array_module(*[p.data for p in params])
        by_dtype: dict[np.dtype, list] = {}
        for p in params:
            by_dtype.setdefault(np.dtype(p.data.dtype), []).append(p)
        for dtype, group in by_dtype.items():
            sizes = [p.data.size for p in group]
            total = sum(sizes)
            flat = self._buffers.setdefault((dtype, total + len(group)),
                                            np.empty(total + len(group), dtype))  # (N + P,)
            pieces = [to_numpy(p.grad.data).reshape(-1) if p.grad is not None
                      else np.zeros(size, dtype) for p, size in zip(group, sizes)]
            np.concatenate(pieces, out=flat[:total])  # (N,)
            flat[total:] = [p.grad is not None for p in group]  # (P,)
            self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)
            offset = 0
            for p, size, count in zip(group, sizes, flat[total:]):
                if count > 0:
                    view = flat[offset:offset + size].reshape(p.data.shape)
                    if p.grad is None:
                        p.grad = Tensor(xp.asarray(view))
                    else:
                        p.grad.data = xp.asarray(view)  # numpy: the view itself
                offset += size
        loss = np.array([float(to_numpy(loss_sum))], dtype=np.float64)  # (1,)
        self.comm.Allreduce(self.MPI.IN_PLACE, loss, op=self.MPI.SUM)
        return xp.asarray(loss[0])

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any (a stop signal that reached only some)."""
        value = np.array([int(bool(flag))], dtype=np.int64)  # (1,)
        self.comm.Allreduce(self.MPI.IN_PLACE, value, op=self.MPI.MAX)
        return bool(value[0])

    def barrier(self) -> None:
        self.comm.Barrier()

    def check_identical(self, model, step: int) -> None:
        """Raise on every rank if the ranks' weights differ: BLAKE2b of all weights' bytes, its
        smallest and largest value over the ranks compared (equal iff every rank has the same)."""
        digest = hashlib.blake2b(digest_size=16)
        for _, p in sorted(model.named_parameters()):
            digest.update(np.ascontiguousarray(to_numpy(p.data)).tobytes())
        words = np.frombuffer(digest.digest(), dtype=np.uint64)  # (2,)
        low, high = words.copy(), words.copy()
        self.comm.Allreduce(self.MPI.IN_PLACE, low, op=self.MPI.MIN)
        self.comm.Allreduce(self.MPI.IN_PLACE, high, op=self.MPI.MAX)
        if not np.array_equal(low, high):
            raise DistributedError(f"after step {step} the weights differ between the "
                                   f"{self.size} ranks (a rank computed something else): stopped")

    def checkpoint_state(self, model) -> dict[str, Any]:
        """{"size": W, "generators": [rank 0's, rank 1's, ...]} on rank 0 (the dropout generator
        states, sent as JSON bytes: no pickle); {} elsewhere. Every rank must call it."""
        mine = np.frombuffer(json.dumps(model_generators(model)).encode(), dtype=np.uint8)
        lengths = np.zeros(self.size, dtype=np.int64)  # (W,)
        self.comm.Allgather(np.array([mine.size], dtype=np.int64), lengths)
        received = np.empty(int(lengths.sum()), dtype=np.uint8) if self.is_root else None
        self.comm.Gatherv(mine, [received, lengths] if self.is_root else None, root=0)
        if not self.is_root:
            return {}
        ends = np.cumsum(lengths)
        texts = [received[end - n:end].tobytes().decode() for n, end in zip(lengths, ends)]
        return {"size": self.size, "generators": [json.loads(text) for text in texts]}

    def resume(self, saved: dict | None, model, checkpoint) -> None:
        """Check the number of ranks, then give rank r its own dropout generators back."""
        check_ranks(saved, self.size, checkpoint)
        _set_generators(model, saved["generators"][self.rank])

    @contextlib.contextmanager
    def fail_together(self) -> Iterator[None]:
        """An exception on one rank stops all: its message on stderr, then ``MPI_Abort``."""
        try:
            yield
        except Exception as error:
            print(f"tinyllm train: error on rank {self.rank} of {self.size}: {error}",
                  file=sys.stderr, flush=True)
            self.comm.Abort(2)  # ends every rank; should it return, the error goes on
            raise
