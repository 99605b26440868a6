"""Chapter 17, "Scale": data-parallel training over MPI ranks (``tinyllm/distributed.py``).

The end-to-end tests start ``mpiexec -n 2`` on ``tests/mpi_train.py`` (``tinyllm train`` with tiny
GPT shapes) in a subprocess and compare with one process: W = 2 ranks with ``grad_accum`` k see the
batches of one process with ``grad_accum`` 2k (eq. 17.1), so their losses and weights agree up to
the order of the float32 additions of the micro-batches' gradients; a run stopped and resumed under
MPI equals an uninterrupted one exactly, dropout included. The unit tests check the one-process
fallback and the error for ``mpiexec`` without mpi4py (simulated with the launcher's variables).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinyllm.train as T
from tinyllm import distributed
from tinyllm.checkpoint import load_checkpoint

pytestmark = pytest.mark.ch17

HELPER = Path(__file__).with_name("mpi_train.py")
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
try:
    import mpi4py  # noqa: F401
    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False
needs_mpi = pytest.mark.skipif(not HAVE_MPI4PY or MPIEXEC is None,
                               reason='needs mpi4py and mpiexec: pip install -e ".[distributed]"')
# a few steps of the warm-up: its rate does not depend on --iters, so a run can be extended
COMMON = ("--data", "text.txt", "--batch-size", "4", "--eval-interval", "3", "--sample-tokens",
          "0", "--threads", "1", "--no-progress", "--seed", "3")
# float32 gradients summed in another order differ by a few units in the last place (~6e-8
# relative) per step; after a few AdamW steps losses agree to 1e-5 and weights to 1e-5.
LOSS_RTOL, WEIGHT_ATOL = 1e-5, 1e-5


def clean_environment() -> dict:
    """The environment without any MPI launcher's variables (this test may run under one)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PMI_", "OMPI_", "MV2_", "HYDRA_", "PMIX_", "MPI_"))}


def tinyllm_train(folder: Path, *args: str, ranks: int = 1) -> subprocess.CompletedProcess:
    command = [sys.executable, str(HELPER), "train", *COMMON, *args]
    if ranks > 1:
        command = [MPIEXEC, "-n", str(ranks), *command]
    env = {**clean_environment(), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                            timeout=300)  # an MPI run that hangs fails instead of waiting forever
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def folder(tmp_path) -> Path:
    text = (Path(T.__file__).parents[1] / "data" / "shakespeare" / "train.txt").read_text()
    (tmp_path / "text.txt").write_text(text[:20000])
    return tmp_path


def saved(run: Path):
    model, _, info = load_checkpoint(run)
    return model.state_dict(), info


@needs_mpi
@pytest.mark.parametrize("mpi_args, one_args, same_bits", [
    (("--grad-accum", "1"), ("--grad-accum", "2"), True),
    (("--grad-accum", "2"), ("--grad-accum", "4"), False),
    (("--batch-size", "2"), ("--batch-size", "4"), None),  # the preset's batch, split in two
], ids=["k1-vs-k2", "k2-vs-k4", "B2-vs-B4"])
def test_two_ranks_equal_one_process_with_twice_the_batch(folder, mpi_args, one_args,
                                                          same_bits):
    """2 ranks x k micro-batches == 1 process x 2k micro-batches (eq. 17.1), up to rounding.

    With k = 1 the two orders of addition are the same (g0 + g1 = g1 + g0 exactly) and the runs
    agree bit for bit; with k = 2 one process adds ((g0 + g1) + g2) + g3, MPI (g0 + g2) + (g1 + g3).
    Two ranks of B = 2 draw the 4 windows one process of B = 4 draws (one generator, the same
    integers), so they agree too, up to the order of the sums over the batch.
    """
    steps = ("--preset", "tiny", "--iters", "6")
    printed = tinyllm_train(folder, *steps, *mpi_args, "--out", "mpi", ranks=2).stdout
    tinyllm_train(folder, *steps, *one_args, "--out", "one")
    assert printed.count('"val_loss"') == 1 and printed.count("step 3: train loss") == 1  # rank 0
    (mpi_weights, mpi), (one_weights, one) = saved(folder / "mpi"), saved(folder / "one")
    assert mpi["ranks"]["size"] == 2 and one["ranks"] == {"size": 1}
    mpi_losses = np.array(mpi["history"]["train_loss"])
    one_losses = np.array(one["history"]["train_loss"])
    assert len(mpi_losses) == 6
    np.testing.assert_allclose(mpi_losses, one_losses, rtol=LOSS_RTOL, atol=0)
    for name, weight in one_weights.items():
        np.testing.assert_allclose(mpi_weights[name], weight, rtol=0, atol=WEIGHT_ATOL)
    if same_bits:
        np.testing.assert_array_equal(mpi_losses, one_losses)
    elif same_bits is False:  # another order of addition: not the same bits (else: no proof)
        assert any(not np.array_equal(mpi_weights[n], w) for n, w in one_weights.items())
    assert '"ranks": 2' in (folder / "mpi" / "metrics.json").read_text()


@needs_mpi
def test_resume_under_mpi_equals_an_uninterrupted_run(folder):
    """Stop after 3 steps, resume to 6, on 2 ranks with dropout: each rank's dropout generators
    are in the checkpoint, so the losses and weights are exactly those of one 6-step run."""
    model = ("--preset", "tiny-dropout")
    tinyllm_train(folder, *model, "--iters", "6", "--out", "once", ranks=2)
    tinyllm_train(folder, *model, "--iters", "3", "--out", "twice", ranks=2)
    tinyllm_train(folder, "--resume", "--iters", "6", "--out", "twice", ranks=2)
    (once_weights, once), (twice_weights, twice) = saved(folder / "once"), saved(folder / "twice")
    assert twice["step"] == 6
    np.testing.assert_array_equal(twice["history"]["train_loss"], once["history"]["train_loss"])
    for name, weight in once_weights.items():
        np.testing.assert_array_equal(twice_weights[name], weight)
    rank_states = once["ranks"]["generators"]
    assert len(rank_states) == 2 and rank_states[0] != rank_states[1]  # masks of their own


@needs_mpi
def test_resume_on_another_number_of_ranks_is_refused(folder):
    tinyllm_train(folder, "--preset", "tiny", "--iters", "2", "--out", "run", ranks=2)
    command = [sys.executable, str(HELPER), "train", "--resume", "--out", "run"]
    result = subprocess.run(command, cwd=folder, env=clean_environment(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2
    assert "trained on 2 rank(s), this is 1" in result.stderr
    assert "mpiexec -n 2 tinyllm train --resume" in result.stderr


@needs_mpi
def test_an_error_on_rank_0_stops_every_rank(folder):
    """A folder that holds a run is refused by rank 0, which holds the folder; rank 1, waiting
    for it, must not hang: MPI_Abort ends both, with the error's one line."""
    tinyllm_train(folder, "--preset", "tiny", "--iters", "1", "--out", "run", ranks=2)
    command = [MPIEXEC, "-n", "2", sys.executable, str(HELPER), "train", *COMMON, "--preset",
               "tiny", "--iters", "1", "--out", "run"]
    result = subprocess.run(command, cwd=folder, env=clean_environment(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "error on rank 0 of 2" in result.stderr and "already holds a run" in result.stderr


def test_the_launchers_variables_give_the_number_of_ranks():
    assert distributed.launched_size({}) == 1
    assert distributed.launched_size({"PMI_SIZE": "4", "PMI_RANK": "1"}) == 4
    assert distributed.launched_size({"OMPI_COMM_WORLD_SIZE": "2"}) == 2
    assert distributed.launched_size({"PMI_SIZE": "not a number"}) == 1
    assert isinstance(distributed.world({}), distributed.SingleProcess)
    assert isinstance(distributed.world({"PMI_SIZE": "1"}), distributed.SingleProcess)


def test_mpiexec_without_mpi4py_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    with pytest.raises(distributed.DistributedError, match=r"tinyllm\[distributed\]"):
        distributed.world({"PMI_SIZE": "2", "PMI_RANK": "0"})


def test_the_command_under_a_launcher_without_mpi4py_says_what_to_install(folder):
    """`tinyllm train` started by a launcher (its variables) where mpi4py cannot be imported."""
    (folder / "no_mpi4py").mkdir()
    (folder / "no_mpi4py" / "mpi4py.py").write_text("raise ImportError('simulated')\n")
    env = {**clean_environment(), "PMI_SIZE": "2", "PMI_RANK": "0",
           "PYTHONPATH": str(folder / "no_mpi4py")}
    result = subprocess.run([sys.executable, "-m", "tinyllm", "train", *COMMON, "--iters", "1",
                             "--out", "run"], cwd=folder, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2
    assert "mpi4py is not installed" in result.stderr and "tinyllm[distributed]" in result.stderr
    assert not (folder / "run" / "checkpoint.safetensors").exists()


def test_single_process_fallback_changes_nothing():
    one = distributed.SingleProcess()
    loss = np.float64(1.25)
    assert (one.rank, one.size, one.is_root) == (0, 1, True)
    assert one.reduce_gradients(None, loss) is loss
    assert one.any(True) and not one.any(False)
    assert one.checkpoint_state(None) == {"size": 1}
    one.resume(None, None, "run")  # a file from before chapter 17: one process
    one.resume({"size": 1}, None, "run")
    with pytest.raises(distributed.DistributedError, match="mpiexec -n 2 tinyllm train"):
        one.resume({"size": 2, "generators": [{}, {}]}, None, "run/checkpoint.safetensors")
    with pytest.raises(distributed.DistributedError, match="positive integer"):
        one.resume({"size": "2"}, None, "run")
    with pytest.raises(ValueError, match="boom"), one.fail_together():
        raise ValueError("boom")  # one process: the error passes through to the command


class TwinRanksMPI:
    """A stand-in for mpi4py's MPI module: rank 0 of 2 whose partner holds the same numbers, so
    an Allreduce sum doubles the buffer and MIN / MAX leave it (no mpi4py needed)."""

    IN_PLACE, SUM, MIN, MAX = object(), "sum", "min", "max"

    class COMM_WORLD:
        calls: list[str] = []

        @staticmethod
        def Get_rank():
            return 0

        @staticmethod
        def Get_size():
            return 2

        @classmethod
        def Allreduce(cls, send, buffer, op):
            assert send is TwinRanksMPI.IN_PLACE and isinstance(buffer, np.ndarray)
            cls.calls.append(op)
            if op == "sum":
                buffer *= 2


def test_gradients_are_summed_in_one_flat_buffer(device):
    """reduce_gradients: one Allreduce for the float32 gradients (+ one for the float64 loss);
    each gradient comes back summed, on the model's device; an unused parameter stays None."""
    from tinyllm.backend import device_of, to_numpy
    from tinyllm.models import GPT, GPTConfig
    from tinyllm.objectives.language_model import next_token_loss

    model = GPT(GPTConfig(vocab_size=11, context_length=8, num_layers=1, num_heads=2, d_model=8),
                rng=np.random.default_rng(0)).to(device)
    ids = np.random.default_rng(1).integers(0, 11, (2, 8))
    loss = next_token_loss(model(ids), ids)  # logits (B, T, V)
    loss.backward()
    params = model.parameters()
    params[-1].grad = None  # as if no rank had used it
    before = [None if p.grad is None else to_numpy(p.grad.data).copy() for p in params]
    TwinRanksMPI.COMM_WORLD.calls = []
    world = distributed.MPIWorld(TwinRanksMPI)
    total = world.reduce_gradients(model, loss.data.astype(np.float64))
    assert TwinRanksMPI.COMM_WORLD.calls == ["sum", "sum"]
    assert float(to_numpy(total)) == pytest.approx(2 * float(to_numpy(loss.data)))
    assert params[-1].grad is None
    for p, grad in zip(params[:-1], before[:-1]):
        assert device_of(p.grad.data) == device
        np.testing.assert_array_equal(to_numpy(p.grad.data), 2 * grad)
    world.check_identical(model, 1)  # MIN == MAX: the same weights


def test_weights_that_differ_between_ranks_stop_the_run():
    """check_identical: a rank whose weights hash differently (here: MAX sees another value)."""
    from tinyllm.models import GPT, GPTConfig

    class SplitRanksMPI(TwinRanksMPI):
        class COMM_WORLD(TwinRanksMPI.COMM_WORLD):
            @classmethod
            def Allreduce(cls, send, buffer, op):
                if op == "max":
                    buffer += np.uint64(1)  # the other rank's hash is larger

    model = GPT(GPTConfig(vocab_size=11, context_length=8, num_layers=1, num_heads=2, d_model=8),
                rng=np.random.default_rng(0))
    with pytest.raises(distributed.DistributedError, match="after step 7 the weights differ"):
        distributed.MPIWorld(SplitRanksMPI).check_identical(model, 7)
