"""Chapter 09, checkpoints: Module semantics, state dicts, and safetensors files without pickle.

Under test: ``tinyllm/nn/module.py`` (parameter discovery, dotted names, tied weights, train/eval,
repr, state_dict/load_state_dict), ``tinyllm/checkpoint/states.py`` (save_model/load_model) and
``tinyllm/checkpoint/safetensors.py`` (the reader and writer: the byte layout parsed by hand,
dtypes, metadata, atomic writes, and a clear error for every kind of bad file).
"""

import json
import os
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest

import tinyllm as tl
from tinyllm.checkpoint import (
    CheckpointError,
    load_model,
    load_safetensors,
    save_model,
    save_safetensors,
)
from tinyllm.nn import Dropout, Linear, Module, Parameter

pytestmark = pytest.mark.ch09


class Block(Module):
    """x + W2 dropout(relu(x W1 + b1)): a residual MLP block."""

    def __init__(self, width: int, rng: np.random.Generator):
        self.fc = Linear(width, width, rng=rng, dtype=np.float64)
        self.drop = Dropout(0.5, rng=np.random.default_rng(0))
        self.out = Linear(width, width, bias=False, rng=rng, dtype=np.float64)

    def forward(self, x):
        return x + self.out(self.drop(self.fc(x).relu()))


class TiedHead(Module):
    """Logits from the embedding matrix itself (weight tying): x @ E^T."""

    def __init__(self, embedding: Parameter):
        self.weight = embedding  # the same Parameter object as Net.embed

    def forward(self, x):
        return x @ self.weight.T  # (B, V)


class Net(Module):
    def __init__(self, seed: int = 0, width: int = 4, vocab: int = 6, depth: int = 2):
        rng = np.random.default_rng(seed)
        self.embed = Parameter(rng.standard_normal((vocab, width)))  # (V, C)
        self.blocks = [Block(width, rng) for _ in range(depth)]
        self.gain = Parameter(np.ones(width))  # (C,)
        self.mask = tl.tensor(np.ones(width))  # a plain Tensor: not a parameter
        self.head = TiedHead(self.embed)
        self.name = "net"  # a string attribute: ignored

    def forward(self, ids):
        x = self.embed[ids]  # (B, C)
        for block in self.blocks:
            x = block(x)
        return self.head(x * self.gain)  # (B, V)


NAMES = ["embed", "gain", "blocks.0.fc.weight", "blocks.0.fc.bias", "blocks.0.out.weight",
         "blocks.1.fc.weight", "blocks.1.fc.bias", "blocks.1.out.weight"]
IDS = np.array([0, 3, 5, 1])


def write_raw(path: Path, header, data: bytes = b"", size: int | None = None) -> Path:
    """A safetensors-like file written by hand: 8-byte length, JSON header, data."""
    header_bytes = json.dumps(header).encode()
    length = len(header_bytes) if size is None else size
    path.write_bytes(struct.pack("<Q", length) + header_bytes + data)
    return path


# --------------------------------------------------------------------------------------------------
# Module semantics
# --------------------------------------------------------------------------------------------------


def test_parameters_are_found_with_dotted_names_and_tied_weights_once():
    model = Net()
    names = [name for name, _ in model.named_parameters()]
    # own parameters first, then children in attribute order; head.weight is embed
    assert names == NAMES
    assert len(model.parameters()) == 8
    assert model.head.weight is model.embed
    assert model.num_parameters() == 6 * 4 + 4 + 2 * (16 + 4 + 16)
    assert all(isinstance(p, Parameter) for p in model.parameters())
    assert [type(m).__name__ for m in model.modules()] == [
        "Net", "Block", "Linear", "Dropout", "Linear", "Block", "Linear", "Dropout", "Linear",
        "TiedHead"]
    assert [name for name, _ in model.named_children()] == ["blocks.0", "blocks.1", "head"]


def test_tied_weight_gets_both_gradients_and_one_update():
    model = Net()
    model.eval()
    model(IDS).sum().backward()
    grad_tied = model.embed.grad.numpy().copy()
    # the gradient of the tied matrix is the sum of its two uses: as the embedding and as the head
    head_only = Net().eval()
    head_only.head.weight = Parameter(head_only.embed.data.copy())  # untie: two separate matrices
    head_only(IDS).sum().backward()
    np.testing.assert_allclose(grad_tied,
                               head_only.embed.grad.numpy() + head_only.head.weight.grad.numpy(),
                               rtol=1e-12)


def test_zero_grad_train_and_eval_reach_every_module():
    model = Net()
    model(IDS).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    assert model.eval() is model and not any(m.training for m in model.modules())
    assert model.blocks[1].drop.training is False
    out1, out2 = model(IDS).numpy(), model(IDS).numpy()
    np.testing.assert_array_equal(out1, out2)  # dropout is off: deterministic
    model.train()
    assert all(m.training for m in model.modules())
    assert not np.allclose(model(IDS).numpy(), out1)  # dropout is on again (p = 0.5)


def test_repr_is_the_module_tree():
    model = Net(depth=1)
    assert repr(model) == (
        "Net(\n"
        "  (blocks.0): Block(\n"
        "    (fc): Linear(in_features=4, out_features=4, bias=True)\n"
        "    (drop): Dropout(p=0.5)\n"
        "    (out): Linear(in_features=4, out_features=4, bias=False)\n"
        "  )\n"
        "  (head): TiedHead()\n"
        ")"
    )


def test_astype_casts_every_parameter():
    model = Net().astype(np.float32)
    assert {p.dtype for p in model.parameters()} == {np.dtype(np.float32)}
    assert model.head.weight is model.embed  # still tied


# --------------------------------------------------------------------------------------------------
# state_dict / load_state_dict / save_model / load_model
# --------------------------------------------------------------------------------------------------


def test_state_dict_holds_copies_named_like_the_parameters():
    model = Net()
    state = model.state_dict()
    assert list(state) == NAMES
    for name, p in model.named_parameters():
        assert isinstance(state[name], np.ndarray) and not np.shares_memory(state[name], p.data)
        np.testing.assert_array_equal(state[name], p.data)
    state["embed"][...] = 0.0
    assert not np.all(model.embed.data == 0.0)


def test_save_and_load_into_a_fresh_model_gives_identical_outputs(tmp_path):
    model, fresh = Net(seed=0).eval(), Net(seed=1).eval()
    assert not np.allclose(model(IDS).numpy(), fresh(IDS).numpy())
    save_model(tmp_path / "model.safetensors", model, metadata={"step": 100})
    assert load_model(tmp_path / "model.safetensors", fresh) is fresh
    np.testing.assert_array_equal(model(IDS).numpy(), fresh(IDS).numpy())
    assert fresh.head.weight is fresh.embed  # loading keeps the tie
    assert load_safetensors(tmp_path / "model.safetensors")[1] == {"step": "100"}
    for (name, p), (_, q) in zip(model.named_parameters(), fresh.named_parameters()):
        assert p.dtype == q.dtype and np.array_equal(p.data, q.data), name


def test_load_state_dict_keeps_the_model_dtype():
    model = Net().astype(np.float32)
    model.load_state_dict(Net(seed=3).state_dict())  # float64 arrays into a float32 model
    assert {p.dtype for p in model.parameters()} == {np.dtype(np.float32)}
    np.testing.assert_array_equal(model.embed.data, Net(seed=3).embed.data.astype(np.float32))


def test_load_state_dict_copies_the_arrays():
    state = Net(seed=3).state_dict()
    model = Net()
    model.load_state_dict(state)
    assert not np.shares_memory(model.embed.data, state["embed"])


def test_load_state_dict_errors_name_every_problem():
    model = Net()
    state = model.state_dict()
    missing = {k: v for k, v in state.items() if k != "gain"}
    with pytest.raises(KeyError, match="missing from the checkpoint: gain"):
        Net().load_state_dict(missing)
    with pytest.raises(KeyError, match="not in the model: extra.weight"):
        Net().load_state_dict({**state, "extra.weight": np.zeros(2)})
    wrong = "wrong shape: blocks.0.fc.bias: checkpoint (5,), model (4,)"
    with pytest.raises(KeyError, match=re.escape(wrong)):
        Net().load_state_dict({**state, "blocks.0.fc.bias": np.zeros(5)})
    everything = {**missing, "extra.weight": np.zeros(2), "embed": np.zeros((7, 4))}
    with pytest.raises(KeyError) as info:
        Net().load_state_dict(everything)
    message = str(info.value)
    for part in ("missing from the checkpoint: gain", "not in the model: extra.weight",
                 "wrong shape: embed: checkpoint (7, 4), model (6, 4)", "Pass strict=False"):
        assert part in message


def test_load_state_dict_not_strict_loads_what_matches_and_returns_the_rest():
    source, target = Net(seed=5), Net(seed=6)
    before = target.state_dict()
    state = {k: v for k, v in source.state_dict().items() if k != "gain"}
    state["embed"] = np.zeros((7, 4))
    state["extra"] = np.zeros(3)
    skipped = target.load_state_dict(state, strict=False)
    assert sorted(skipped) == ["embed", "extra", "gain"]
    np.testing.assert_array_equal(target.embed.data, before["embed"])  # wrong shape: kept
    np.testing.assert_array_equal(target.gain.data, before["gain"])  # missing: kept
    np.testing.assert_array_equal(target.blocks[1].fc.weight.data, source.blocks[1].fc.weight.data)
    assert target.load_state_dict(source.state_dict(), strict=False) == []


def test_load_from_a_file_with_other_names_fails_strictly(tmp_path):
    save_safetensors(tmp_path / "other.safetensors", {"weight": np.zeros((2, 2))})
    with pytest.raises(KeyError, match="not in the model: weight"):
        load_model(tmp_path / "other.safetensors", Net())


# --------------------------------------------------------------------------------------------------
# The safetensors layout, dtypes and metadata
# --------------------------------------------------------------------------------------------------


def test_file_layout_is_standard_safetensors(tmp_path):
    """[8-byte little-endian N][N bytes of JSON][data], offsets relative to the data, arrays back
    to back."""
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3),
              "b": np.array([1, -2], dtype=np.int64)}
    path = tmp_path / "x.safetensors"
    save_safetensors(path, arrays, {"format": "np"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0 and 8 + n <= len(raw)
    header = json.loads(raw[8:8 + n])
    assert header["__metadata__"] == {"format": "np"}
    assert header["a"] == {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    assert header["b"] == {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]}
    data = raw[8 + n:]
    assert len(data) == 40
    assert data[0:24] == arrays["a"].astype("<f4").tobytes()
    assert np.array_equal(np.frombuffer(data[24:40], dtype="<i8"), [1, -2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int64, np.int32, np.int8,
                                   np.uint8, np.bool_])
def test_dtypes_round_trip_exactly(dtype, tmp_path):
    rng = np.random.default_rng(0)
    values = rng.standard_normal((3, 5)) * 100
    array = (values > 0) if dtype == np.bool_ else values.astype(dtype)
    special = {"nan_inf": np.array([np.nan, np.inf, -np.inf, -0.0], dtype=np.float32),
               "empty": np.zeros((0, 3), dtype=dtype)}
    save_safetensors(tmp_path / "d.safetensors", {"x": array, **special})
    loaded, metadata = load_safetensors(tmp_path / "d.safetensors")
    assert metadata == {}
    assert loaded["x"].dtype == np.dtype(dtype) and loaded["x"].shape == (3, 5)
    np.testing.assert_array_equal(loaded["x"], array)
    assert loaded["x"].flags.writeable  # a copy we may train
    assert loaded["empty"].shape == (0, 3) and loaded["empty"].dtype == np.dtype(dtype)
    # bit for bit, -0.0 and nan included
    assert loaded["nan_inf"].tobytes() == special["nan_inf"].tobytes()


def test_big_endian_and_non_contiguous_arrays_are_saved_correctly(tmp_path):
    big_endian = np.arange(4, dtype=">f8")
    transposed = np.arange(6, dtype=np.float32).reshape(2, 3).T  # not C-contiguous
    save_safetensors(tmp_path / "e.safetensors", {"be": big_endian, "t": transposed})
    loaded, _ = load_safetensors(tmp_path / "e.safetensors")
    assert loaded["be"].dtype == np.dtype("<f8")
    np.testing.assert_array_equal(loaded["be"], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(loaded["t"], transposed)


def test_zero_dimensional_array_keeps_its_shape(tmp_path):
    save_safetensors(tmp_path / "s.safetensors", {"scale": np.array(2.5)})
    assert load_safetensors(tmp_path / "s.safetensors")[0]["scale"].shape == ()


def test_metadata_round_trip(tmp_path):
    metadata = {"step": "1200", "config": json.dumps({"width": 64, "lr": 3e-4}),
                "note": "ünïcode ✓"}
    save_safetensors(tmp_path / "m.safetensors", {"w": np.ones(2)}, metadata)
    _, loaded = load_safetensors(tmp_path / "m.safetensors")
    assert loaded == metadata
    assert json.loads(loaded["config"]) == {"width": 64, "lr": 3e-4}
    save_safetensors(tmp_path / "n.safetensors", {"w": np.ones(2)}, {"step": 7, "ok": True})
    # values as text
    assert load_safetensors(tmp_path / "n.safetensors")[1] == {"step": "7", "ok": "True"}


# --------------------------------------------------------------------------------------------------
# Bad files: every one is rejected with a clear error, and nothing is ever unpickled
# --------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError,
                       match="no checkpoint at .*nowhere.safetensors: check the path"):
        load_model(tmp_path / "nowhere.safetensors", Net())


def test_truncated_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_model(path, Net())
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])  # cut in half: the header survives, the data does not
    with pytest.raises(CheckpointError, match="the file is truncated or corrupt"):
        load_model(path, Net())
    (n,) = struct.unpack("<Q", raw[:8])
    path.write_bytes(raw[:8 + n // 2])  # cut inside the header
    with pytest.raises(CheckpointError, match=f"its header claims {n} bytes"):
        load_safetensors(path)
    path.write_bytes(raw[:5])
    with pytest.raises(CheckpointError, match="only 5 bytes"):
        load_safetensors(path)


def test_random_bytes_and_json_text_are_rejected(tmp_path):
    random_file = tmp_path / "random.safetensors"
    random_file.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="not a valid safetensors checkpoint"):
        load_safetensors(random_file)
    json_file = tmp_path / "config.json"
    json_file.write_text(json.dumps({"embed": [[0.0, 1.0]], "gain": [1.0, 1.0]}))
    with pytest.raises(CheckpointError, match="not a valid safetensors checkpoint"):
        load_model(json_file, Net())


class _TouchOnUnpickle:
    """Unpickling an instance of this calls Path.touch(marker): the kind of code pickles can run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_file_is_rejected_without_being_unpickled(tmp_path):
    proof = tmp_path / "proof"  # first show that this payload really runs code when unpickled
    pickle.loads(pickle.dumps(_TouchOnUnpickle(proof)))
    assert proof.exists()

    marker = tmp_path / "marker"
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        path = tmp_path / f"model_{protocol}.pt"
        path.write_bytes(pickle.dumps({"embed": _TouchOnUnpickle(marker)}, protocol=protocol))
        with pytest.raises(CheckpointError, match="not a valid safetensors checkpoint"):
            load_model(path, Net())
    assert not marker.exists()


def test_header_claiming_a_wrong_size(tmp_path):
    path = tmp_path / "w.safetensors"
    save_safetensors(path, {"w": np.ones(4)})
    raw = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    raw[:8] = struct.pack("<Q", len(raw))  # more than the file holds
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError,
                       match=f"its header claims {len(raw)} bytes but the file has"):
        load_safetensors(path)
    raw[:8] = struct.pack("<Q", n - 3)  # less: the JSON is cut
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="unreadable header"):
        load_safetensors(path)
    raw[:8] = struct.pack("<Q", 2**63)  # absurd
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="header claims 9223372036854775808 bytes"):
        load_safetensors(path)


def test_header_entries_that_do_not_fit_the_data(tmp_path):
    data = np.ones(4, dtype="<f4").tobytes()  # 16 bytes
    cases = [
        ({"w": {"dtype": "F32", "shape": [5], "data_offsets": [0, 20]}}, "needs bytes 0..20 of 16"),
        ({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}},
         "expected 16 bytes for shape"),
        ({"w": {"dtype": "C128", "shape": [2], "data_offsets": [0, 16]}},
         "malformed header entry for 'w'"),
        ({"w": {"dtype": "F32", "shape": [4]}}, "malformed header entry for 'w'"),
        ({"w": 5}, "malformed header entry for 'w'"),
    ]
    for header, message in cases:
        path = write_raw(tmp_path / "h.safetensors", header, data)
        with pytest.raises(CheckpointError, match=re.escape(message)):
            load_safetensors(path)


@pytest.mark.parametrize("header", [
    [1, 2],
    "text",
    {"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}},
    {"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, -4]}},
])
def test_malformed_headers_are_checkpoint_errors(header, tmp_path):
    path = write_raw(tmp_path / "bad.safetensors", header, b"\x00" * 16)
    with pytest.raises(CheckpointError):
        load_safetensors(path)


# --------------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------------


def test_failing_save_keeps_the_old_checkpoint_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_model(path, Net())
    before = path.read_bytes()
    with pytest.raises(TypeError, match="cannot save 'z': dtype complex128 is not one of"):
        save_safetensors(path, {"w": np.ones(3), "z": np.ones(2, dtype=np.complex128)})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    np.testing.assert_array_equal(load_model(path, Net(seed=9)).embed.data, Net().embed.data)


def test_save_interrupted_while_writing_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    save_model(path, Net())
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_model(path, Net(seed=1))
    assert path.read_bytes() == before  # this part holds already
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_save_creates_parent_folders_and_overwrites(tmp_path):
    path = tmp_path / "runs" / "a" / "model.safetensors"
    save_model(path, Net(seed=1))
    save_model(path, Net(seed=2))  # overwrite
    np.testing.assert_array_equal(load_model(path, Net()).embed.data, Net(seed=2).embed.data)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.safetensors"]
