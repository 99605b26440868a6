"""Chapter 10: tokenization. Round trips, the first merges worked by hand, the incremental
trainer against a from-scratch recount, special tokens, saving, and the errors."""

import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyllm.corpus import load_corpus
from tinyllm.tokenizers import (
    PRETOKENIZE,
    BPETokenizer,
    CharTokenizer,
    TokenizerError,
    load_tokenizer,
)

pytestmark = pytest.mark.ch10

SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "<|endoftext|>"]
ALPHABET_TEXT = "To be, or not to be: that is the question.\n\tÉté, naïve 漢字 🙂!"


@pytest.fixture(scope="module")
def train_text() -> str:
    return load_corpus()[0]


@pytest.fixture(scope="module")
def bpe(train_text) -> BPETokenizer:
    """500 merges on the training text, with the BERT and GPT special tokens."""
    return BPETokenizer.train(train_text, vocab_size=256 + 500 + len(SPECIALS),
                              special_tokens=SPECIALS)


def naive_train(text: str, num_merges: int) -> list[tuple[int, int]]:
    """BPE the slow way: recount every pair of every word before each merge."""
    words = [list(word.encode("utf-8")) for word in PRETOKENIZE.findall(text)]
    merges = []
    for step in range(num_merges):
        counts = Counter(pair for ids in words for pair in zip(ids, ids[1:]))
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))  # most frequent, then smallest
        merges.append(best)
        new_words = []
        for ids in words:
            out, i = [], 0
            while i < len(ids):
                if tuple(ids[i:i + 2]) == best:
                    out.append(256 + step)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            new_words.append(out)
        words = new_words
    return merges


# ----------------------------------------------------------------------------- characters

def test_char_vocabulary_is_the_sorted_alphabet():
    tok = CharTokenizer.from_text("hello")
    assert tok.chars == ["e", "h", "l", "o"]
    assert tok.vocab_size == 4
    assert tok.encode("hole") == [1, 3, 2, 0]
    assert tok.decode([1, 0, 2, 2, 3]) == "hello"


@settings(max_examples=200)
@given(st.text(alphabet=sorted(set(ALPHABET_TEXT))))
def test_char_round_trip(text):
    # eq. 10.1: decode(encode(s)) = s
    tok = CharTokenizer.from_text(ALPHABET_TEXT)
    assert tok.decode(tok.encode(text)) == text


def test_char_unknown_character_is_named_with_its_position():
    tok = CharTokenizer.from_text("abc ")
    with pytest.raises(TokenizerError, match=r"'z' at position 3, 'Q' at position 4"):
        tok.encode("ab zQ")


def test_char_decode_rejects_ids_outside_the_vocabulary():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(TokenizerError, match=r"token id 3 at position 1 .*\[0, 3\)"):
        tok.decode([0, 3])


def test_char_save_load_round_trip(tmp_path, train_text):
    tok = CharTokenizer.from_text(train_text)
    tok.save(tmp_path / "char.json")
    loaded = CharTokenizer.load(tmp_path / "char.json")
    assert loaded.chars == tok.chars
    assert loaded.encode(train_text[:5000]) == tok.encode(train_text[:5000])
    assert isinstance(load_tokenizer(tmp_path / "char.json"), CharTokenizer)


# ----------------------------------------------------------------------------- BPE by hand

def test_first_merges_worked_by_hand():
    # "aaabdaaabac" is one word. Pair counts: aa 4, ab 2, bd 1, da 1, ba 1, ac 1.
    #   merge 0: (a, a) -> 256:        [256 a b d 256 a b a c]; now (256, a) 2 and (a, b) 2 tie,
    #   merge 1: (a, b) -> 257:        the tie goes to the smaller pair, (97, 98) < (256, 97);
    #                                  [256 257 d 256 257 a c]
    #   merge 2: (256, 257) -> 258:    "aaab" twice; the rest occur once.
    tok = BPETokenizer.train("aaabdaaabac", vocab_size=256 + 3)
    assert tok.merges == [(97, 97), (97, 98), (256, 257)]
    assert tok.vocab[258] == b"aaab"
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]


def test_ties_go_to_the_smallest_pair():
    # "abcd": ab, bc, cd once each -> (a, b) first; then (256, c) and (c, d) tie -> (c, d).
    tok = BPETokenizer.train("abcd", vocab_size=256 + 3)
    assert tok.merges == [(97, 98), (99, 100), (256, 257)]


def test_training_stops_when_no_pair_is_left():
    tok = BPETokenizer.train("ab", vocab_size=256 + 10)
    assert tok.merges == [(97, 98)]
    assert tok.vocab_size == 257


def test_incremental_training_matches_recounting(train_text):
    text = train_text[:20_000]
    tok = BPETokenizer.train(text, vocab_size=256 + 80)
    assert tok.merges == naive_train(text, 80)


# ----------------------------------------------------------------------------- BPE properties

@given(st.text())
def test_pretokenization_keeps_every_character(text):
    assert "".join(PRETOKENIZE.findall(text)) == text


@settings(max_examples=300)
@given(st.text())
def test_bpe_round_trip_on_any_unicode(bpe, text):
    # eq. 10.1: decode(encode(s)) = s for any text
    assert bpe.decode(bpe.encode(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "  leading and trailing  ",
        "tabs\tand\r\nnewlines\n\n",
        "emoji 🙂👩‍👩‍👧 and flags 🇫🇷",
        "combining e\u0301 and naïve",
        "漢字かなカナ",
        "عربى עברית",
        "snake_case_name __init__ 3.14159 1,000,000",
        "it's can't we'll I'd",
    ],
)
def test_bpe_round_trip_on_hard_strings(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


def test_merges_reduce_the_token_count(train_text):
    val_text = load_corpus()[1]
    small = BPETokenizer.train(train_text, vocab_size=256 + 100)
    large = BPETokenizer.train(train_text, vocab_size=256 + 1000)
    n_bytes = len(val_text.encode("utf-8"))
    n_small, n_large = len(small.encode(val_text)), len(large.encode(val_text))
    # Measured on the validation text: 0.625 tokens per byte after 100 merges, 0.422 after 1000.
    assert n_large < n_small < 0.65 * n_bytes
    assert n_large < 0.45 * n_bytes


def test_merges_never_cross_a_word_boundary(bpe):
    # A learned token is one pre-tokenized piece: a space may only lead it (" the"), unless
    # the token is all whitespace.
    for token in bpe.vocab[256 : 256 + len(bpe.merges)]:
        if token.strip():
            assert b" " not in token[1:], token


def test_encoding_applies_merges_to_the_training_words(bpe):
    assert bpe.encode(" the") == [bpe.vocab.index(b" the")]
    assert len(bpe.encode("To be, or not to be")) < len("To be, or not to be") / 2


# ----------------------------------------------------------------------------- special tokens


def test_special_tokens_get_the_last_ids(bpe):
    first = 256 + len(bpe.merges)
    assert bpe.special_tokens == {s: first + i for i, s in enumerate(SPECIALS)}
    assert bpe.vocab_size == first + len(SPECIALS)


def test_special_tokens_encode_to_single_ids(bpe):
    ids = bpe.encode("[CLS] to be[SEP]or not[MASK]<|endoftext|>")
    specials = [i for i in ids if i >= 256 + len(bpe.merges)]
    names = ("[CLS]", "[SEP]", "[MASK]", "<|endoftext|>")
    assert specials == [bpe.special_tokens[s] for s in names]
    assert ids[0] == bpe.special_tokens["[CLS]"]
    assert bpe.decode(ids) == "[CLS] to be[SEP]or not[MASK]<|endoftext|>"


def test_special_tokens_as_plain_text_when_not_allowed(bpe):
    text = "a [MASK] b<|endoftext|>"
    ids = bpe.encode(text, allowed_special=False)
    assert all(i < 256 + len(bpe.merges) for i in ids)
    assert bpe.decode(ids) == text


def test_training_ignores_special_tokens():
    text = "<|endoftext|>".join(["hello world"] * 50)
    tok = BPETokenizer.train(text, vocab_size=256 + 30 + 1, special_tokens=["<|endoftext|>"])
    assert all(b"|" not in t and b"<" not in t for t in tok.vocab[256 : 256 + len(tok.merges)])


# ----------------------------------------------------------------------------- saving, errors


def test_bpe_save_load_gives_identical_encodings(tmp_path, bpe, train_text):
    bpe.save(tmp_path / "bpe.json")
    loaded = BPETokenizer.load(tmp_path / "bpe.json")
    sample = train_text[:20_000] + " [SEP] 🙂"
    assert loaded.merges == bpe.merges
    assert loaded.special_tokens == bpe.special_tokens
    assert loaded.encode(sample) == bpe.encode(sample)
    assert isinstance(load_tokenizer(tmp_path / "bpe.json"), BPETokenizer)


def test_corrupt_tokenizer_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bpe.json"
    path.write_text('{"type": "bpe", "merges": [[97, 98]')  # cut off mid-file
    with pytest.raises(TokenizerError, match="not a valid tokenizer file"):
        BPETokenizer.load(path)


def test_tokenizer_file_of_the_wrong_kind_is_a_clear_error(tmp_path):
    CharTokenizer.from_text("abc").save(tmp_path / "char.json")
    with pytest.raises(TokenizerError, match="does not hold a bpe tokenizer"):
        BPETokenizer.load(tmp_path / "char.json")


def test_merge_of_an_unknown_id_is_a_clear_error(tmp_path):
    path = tmp_path / "bpe.json"
    BPETokenizer([(97, 98)]).save(path)
    obj = json.loads(path.read_text())
    obj["merges"].append([256, 300])  # 300 does not exist yet
    path.write_text(json.dumps(obj))
    with pytest.raises(TokenizerError, match="merge 1 must join two existing ids < 257"):
        BPETokenizer.load(path)


def test_missing_tokenizer_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer file not found"):
        BPETokenizer.load(tmp_path / "nope.json")


def test_bpe_decode_errors(bpe):
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        bpe.decode([bpe.vocab_size])
    assert bpe.decode([0xE2]) == "\ufffd"  # a cut-off UTF-8 sequence decodes to U+FFFD


def test_vocab_size_too_small_is_a_clear_error():
    with pytest.raises(TokenizerError, match="smaller than 256 bytes"):
        BPETokenizer.train("abc", vocab_size=257, special_tokens=["[PAD]", "[CLS]"])


# ----------------------------------------------------------------------------- the chapter's closed
# forms


def replace_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """One merge, left to right, written independently of the library's ``_merge``."""
    merged, i = [], 0
    while i < len(ids):
        if tuple(ids[i : i + 2]) == pair:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


@settings(max_examples=200)
@given(st.text(alphabet="abc", max_size=30), st.sampled_from(["ab", "ba", "aa", "cc"]))
def test_pair_count_update_occurrence_by_occurrence(word, pair_text):
    # Eq. 10.7: merging A B -> Z inside "x A B y" removes (x, A), (A, B), (B, y) and adds (x, Z),
    # (Z, y), applied left to right with the current left neighbour. The updated counts equal a
    # recount.
    a, b = pair_text.encode()
    z = 256
    merged = BPETokenizer([(a, b)]).encode(word)  # a run of letters is one pre-tokenized piece
    seq = list(word.encode())
    counts = Counter(zip(seq, seq[1:]))
    i = 0
    while i + 1 < len(seq):
        if (seq[i], seq[i + 1]) == (a, b):
            counts[(a, b)] -= 1
            if i > 0:  # x exists (it may be a Z made just before)
                counts[(seq[i - 1], a)] -= 1
                counts[(seq[i - 1], z)] += 1
            if i + 2 < len(seq):  # y exists
                counts[(b, seq[i + 2])] -= 1
                counts[(z, seq[i + 2])] += 1
            seq[i : i + 2] = [z]
        i += 1
    assert seq == merged
    assert min(counts.values(), default=0) >= 0
    assert +counts == Counter(zip(merged, merged[1:]))


def test_encoding_by_rank_replays_every_merge_in_order(train_text):
    # Eq. 10.9: encoding by lowest rank first equals applying all merges in training order.
    text = train_text[:20_000]
    tok = BPETokenizer.train(text, vocab_size=256 + 100)
    words = set(PRETOKENIZE.findall(text)) | {"Rosencrantz", " unfathomable", " naïve", "🙂🙂"}
    for word in sorted(words):
        ids = list(word.encode("utf-8"))
        for rank, pair in enumerate(tok.merges):
            ids = replace_pair(ids, pair, 256 + rank)
        assert tok.encode(word) == ids, word


def test_each_merge_saves_its_count_and_counts_never_rise(train_text):
    # Eq. 10.5: merge k shortens the text by n_k = c_k replacements if A != B (n_k <= c_k if A = B);
    # eq. 10.6: the count of the chosen pair never rises from one merge to the next.
    text = train_text[:10_000]
    num_merges = 40
    tok = BPETokenizer.train(text, vocab_size=256 + num_merges)
    word_counts = Counter(PRETOKENIZE.findall(text))
    lengths, chosen_counts = [], []
    for k in range(num_merges + 1):
        prefix = BPETokenizer(tok.merges[:k])  # the training state after k merges (eq. 10.9)
        states = {w: prefix.encode(w) for w in word_counts}
        lengths.append(sum(f * len(states[w]) for w, f in word_counts.items()))
        if k < num_merges:
            counts = Counter()
            for w, f in word_counts.items():
                for pair in zip(states[w], states[w][1:]):
                    counts[pair] += f
            assert counts[tok.merges[k]] == max(counts.values())  # eq. 10.4
            chosen_counts.append(counts[tok.merges[k]])
    assert lengths[0] == len(text.encode("utf-8")) and lengths[-1] == len(tok.encode(text))
    self_pairs = 0
    for k, (a, b) in enumerate(tok.merges):
        saved = lengths[k] - lengths[k + 1]
        if a != b:
            assert saved == chosen_counts[k]
        else:
            self_pairs += 1
            assert 0 < saved <= chosen_counts[k]
    assert self_pairs >= 1  # the A = B case is exercised ("ll")
    assert all(later <= earlier for earlier, later in zip(chosen_counts, chosen_counts[1:]))
