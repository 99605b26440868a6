"""Chapter 10 (and 11's sampler): BPE in linear time gives exactly the merges and ids it gave
before, and sampling never turns a bad number into silent garbage.

- ``tinyllm/bpe.py`` against the merges and encodings the previous (quadratic) trainer wrote to
  ``tests/bpe_reference.json``, and against the literal algorithms (recount every pair before each
  merge; replay every merge in order) on hypothesis-generated texts with long runs without spaces;
- ``tinyllm/sampling.py`` and ``GPT.generate``/``generate_stream``: NaN, infinite and negative
  temperatures are refused, a tiny temperature is greedy decoding (no overflow, no NaN), and the
  streamed tokens are the generated ones.

No test here times anything: ``benchmarks/bench_bpe.py`` shows the curve.
"""

import codecs
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic import synthetic_play

from tinyllm.bpe import apply_merges, learn_merges
from tinyllm.corpus import load_corpus
from tinyllm.models import GPT, GPTConfig
from tinyllm.sampling import check_sampling, sample_next
from tinyllm.tokenizers import PRETOKENIZE, BPETokenizer

pytestmark = pytest.mark.ch10

REFERENCE = Path(__file__).parent / "bpe_reference.json"


def literal_merges(text: str, num_merges: int) -> list[tuple[int, int]]:
    """BPE by its definition: recount every pair of every word, merge the most frequent (ties:
    the smallest pair), left to right in each word; repeat."""
    words = [list(word.encode("utf-8")) for word in PRETOKENIZE.findall(text)]
    merges = []
    for step in range(num_merges):
        counts = Counter(pair for ids in words for pair in zip(ids, ids[1:]))
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        words = [replay(ids, [best], first_id=256 + step) for ids in words]
    return merges


def replay(ids: list[int], merges, first_id: int = 256) -> list[int]:
    """Apply ``merges`` in order, each over the whole sequence left to right (eq. 10.9)."""
    for offset, pair in enumerate(merges):
        merged, i = [], 0
        while i < len(ids):
            if tuple(ids[i:i + 2]) == pair:
                merged.append(first_id + offset)
                i += 2
            else:
                merged.append(ids[i])
                i += 1
        ids = merged
    return ids


# ----------------------------------------------------------------------------- the old output

@pytest.fixture(scope="module")
def reference_texts() -> dict[str, str]:
    train, val = load_corpus()
    letters = "".join(c for c in train[:20_000] if c.isalpha())  # one 15,000-byte word
    return {"corpus_train": train, "synthetic_play": synthetic_play(), "letters_only": letters,
            "corpus_val_first_4000": val[:4000], "letters_only_first_3000": letters[:3000]}


def test_the_reference_was_made_from_these_texts(reference_texts):
    recorded = json.loads(REFERENCE.read_text())["_sha256_of_texts"]
    assert recorded == {name: hashlib.sha256(text.encode()).hexdigest()
                        for name, text in reference_texts.items()}


@pytest.mark.parametrize("case", ["corpus_train_1000_merges_specials", "synthetic_play_300",
                                  "letters_only_first_20000_of_train_200"])
def test_merges_and_encodings_equal_the_previous_trainer(case, reference_texts):
    expected = json.loads(REFERENCE.read_text())[case]
    tok = BPETokenizer.train(reference_texts[expected["text"]], expected["vocab_size"],
                             expected["special_tokens"])
    assert [list(pair) for pair in tok.merges] == expected["merges"]
    assert tok.encode(reference_texts[expected["encode"]]) == expected["encoded_ids"]


# ----------------------------------------------------------------------- the literal algorithms

# Texts over a few letters, with spaces rare or absent: long words, many ties and self-pairs (aa).
runs = st.text(alphabet="aab", min_size=0, max_size=300)
texts = st.text(alphabet=st.sampled_from("aabc \n.é"), max_size=200) | runs


@settings(max_examples=150)
@given(text=texts, num_merges=st.integers(0, 40))
def test_training_equals_recounting(text, num_merges):
    assert BPETokenizer.train(text, 256 + num_merges).merges == literal_merges(text, num_merges)


@settings(max_examples=150)
@given(train=texts, word=st.text(alphabet="aabc", max_size=120), num_merges=st.integers(0, 30))
def test_encoding_equals_replaying_every_merge(train, word, num_merges):
    tok = BPETokenizer.train(train, 256 + num_merges)
    ids = list(word.encode("utf-8"))
    assert apply_merges(ids, tok._ranks) == replay(ids, tok.merges)
    assert tok.decode(tok.encode(word)) == word


def test_a_long_run_without_spaces_equals_recounting():
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("aaabbc"), 3000))  # one 3,000-byte word
    merges = BPETokenizer.train(text, 256 + 60).merges
    assert merges == literal_merges(text, 60)
    tok = BPETokenizer(merges)
    assert tok.encode(text) == replay(list(text.encode()), merges)
    assert tok.decode(tok.encode(text)) == text


def test_self_pairs_merge_left_to_right():
    # "aaaaa" with (a, a) is Z Z a, as one left-to-right pass gives: then (Z, Z) and (Z, a) tie
    # at one occurrence each, and the smaller pair (256, 97) goes first.
    assert learn_merges([b"aaaaa"], [1], 3) == [(97, 97), (256, 97), (256, 257)]
    assert literal_merges("aaaaa", 3) == [(97, 97), (256, 97), (256, 257)]
    assert apply_merges(list(b"aaaaa"), {(97, 97): 0}) == [256, 256, 97]


def test_word_frequencies_weight_the_counts():
    # "ab" seen 3 times beats "cd" seen twice, although both are one word.
    assert learn_merges([b"cd", b"ab"], [2, 3], 2) == [(97, 98), (99, 100)]
    assert learn_merges([b"", b"x"], [5, 1], 4) == []  # nothing to merge


def test_a_text_without_spaces_round_trips_with_its_own_tokenizer():
    text = "".join(c for c in load_corpus()[1] if c.isalpha())[:30_000]
    tok = BPETokenizer.train(text, 256 + 300)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert len(ids) < 0.5 * len(text)  # 300 merges on one long word: 0.47 ids per byte


# ----------------------------------------------------------------------------- decoding a stream

MULTIBYTE = BPETokenizer.train("naïve café 漢字 🙂 " * 3, 256 + 40)  # tokens end mid-character


@settings(max_examples=100)
@given(ids=st.lists(st.integers(0, MULTIBYTE.vocab_size - 1), max_size=60))
def test_incremental_decoding_of_token_bytes_equals_decode(ids):
    # Token by token through an incremental UTF-8 decoder (what `tinyllm sample` prints) gives
    # decode(ids), also when a token ends inside a character or the bytes are not UTF-8.
    tok = MULTIBYTE
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces = [decoder.decode(tok.decode_bytes([i])) for i in ids]
    pieces.append(decoder.decode(b"", final=True))
    assert "".join(pieces) == tok.decode(ids)


# ------------------------------------------------------------------------- sampling (chapter 11)

@pytest.mark.ch11
@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), -float("inf"), -1.0, -1e-9,
                                         "0.5", None, True])
def test_bad_temperatures_are_refused(temperature):
    logits = np.zeros((1, 5))
    with pytest.raises(ValueError, match="temperature must be >= 0, got .*0 means greedy"):
        sample_next(logits, np.random.default_rng(0), temperature=temperature)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        check_sampling(temperature)


@pytest.mark.ch11
@pytest.mark.parametrize("top_p", [float("nan"), 0.0, 1.0000001, -0.5, "0.9"])
def test_bad_top_p_is_refused(top_p):
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        check_sampling(1.0, top_p=top_p)


@pytest.mark.ch11
@settings(max_examples=100)
@given(seed=st.integers(0, 2**16), scale=st.sampled_from([1.0, 30.0, 1e4]),
       temperature=st.sampled_from([1e-30, 1e-200, 5e-324, 1e-45]),
       top_k=st.sampled_from([None, 1, 3]), top_p=st.sampled_from([None, 0.5, 1.0]))
def test_a_tiny_temperature_is_greedy_decoding(seed, scale, temperature, top_k, top_p):
    # (z - max z) / T: every value <= 0, exp underflows to 0 for all but the maximum; no NaN.
    logits = (scale * np.random.default_rng(seed).standard_normal((4, 11))).astype(np.float32)
    draws = sample_next(logits, np.random.default_rng(seed), temperature, top_k, top_p)
    np.testing.assert_array_equal(draws, logits.argmax(axis=-1))


@pytest.mark.ch11
def test_tied_maxima_at_a_tiny_temperature_are_drawn_evenly():
    logits = np.array([[3.0, 1.0, 3.0, -2.0]] * 4000)
    draws = sample_next(logits, np.random.default_rng(0), temperature=1e-30)
    assert set(draws.tolist()) == {0, 2}
    assert abs((draws == 0).mean() - 0.5) < 0.03


@pytest.mark.ch11
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_logits_are_a_clear_error_not_token_0(bad):
    logits = np.zeros((2, 4))
    logits[1, 2] = bad
    for temperature in (0.0, 1.0):
        with pytest.raises(ValueError, match="logits of row 1 are NaN, \\+inf or all -inf"):
            sample_next(logits, np.random.default_rng(0), temperature)


def tiny_gpt() -> GPT:
    config = GPTConfig(vocab_size=11, context_length=8, num_layers=1, num_heads=2, d_model=8)
    return GPT(config, rng=np.random.default_rng(0))


@pytest.mark.ch11
@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("temperature", [0.0, 1e-30, 0.9])
def test_generate_stream_yields_what_generate_returns(use_cache, temperature):
    model, prompt = tiny_gpt(), np.array([[1, 2, 3], [4, 5, 6]])
    whole = model.generate(prompt, 12, temperature, rng=np.random.default_rng(3),
                           use_cache=use_cache)
    stream = model.generate_stream(prompt, 12, temperature, rng=np.random.default_rng(3),
                                   use_cache=use_cache)
    columns = [next(stream)]  # (B,) one column at a time
    assert model.training is False  # generating: eval mode ...
    columns += list(stream)
    assert model.training is True  # ... restored when the stream ends
    np.testing.assert_array_equal(np.concatenate([prompt, np.stack(columns, axis=1)], 1), whole)
    if temperature < 1e-3:  # 0 and 1e-30: greedy decoding
        greedy = model.generate(prompt, 12, 0.0, use_cache=use_cache)
        np.testing.assert_array_equal(whole, greedy)


@pytest.mark.ch11
@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=float("nan")), "temperature must be >= 0, got nan"),
    (dict(temperature=float("inf")), "temperature must be >= 0, got inf"),
    (dict(top_k=0), "top_k must be a positive integer"),
    (dict(top_p=2.0), r"top_p must be in \(0, 1\]"),
    (dict(max_new_tokens=-1), "max_new_tokens must be an integer >= 0, got -1"),
    (dict(max_new_tokens=2.5), "max_new_tokens must be an integer >= 0, got 2.5"),
])
def test_generate_checks_its_arguments_before_generating(kwargs, message):
    model = tiny_gpt()
    kwargs = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        model.generate_stream(np.array([[1]]), **kwargs)  # at the call, not at the first next()
    with pytest.raises(ValueError, match=message):
        model.generate(np.array([[1]]), **kwargs)
    assert model.training
