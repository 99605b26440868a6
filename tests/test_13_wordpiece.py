"""WordPiece from scratch (tinyllm/wordpiece.py, wordpiece_merges.py) against Hugging Face's
``tokenizers`` (BertWordPieceTokenizer, the oracle) on the same vocab.txt.

Two vocabularies: one the oracle trains on the corpus (3,000 tokens), one made by hand. Ids,
segment ids, truncation and decoding must equal the oracle's on tricky strings and on
hypothesis text; the likelihood-score trainer must equal the literal algorithm.
"""

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyllm.corpus import load_corpus
from tinyllm.models.bert import BERT, BERTConfig
from tinyllm.tokenizers import WordPieceError, WordPieceTokenizer, tokenizer_from_dict
from tinyllm.wordpiece import normalize, pre_tokenize
from tinyllm.wordpiece_merges import initial_units, learn_wordpiece, merged_unit

tokenizers = pytest.importorskip("tokenizers")
pytestmark = pytest.mark.ch13

HAND_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "aff",
              "##a", "a", "b", "##b", "the", "##s", "king", "##dom", ",", ".", "!", "'", "t",
              "don", "1", "##2", "3", "é", "日", "本", "x", "##x"]
TRICKY = ["", " ", "   \t\n ", "Héllo, Wörld!", "naïve café façade", "ΟΔΟΣ Σ", "İstanbul",
          "日本語のテキスト 中文", "don't stop-believing... ok?!", "3.14159 1,000,000 $5",
          "<tag> a|b ~x ^y `z` @me #1", "a" * 100, "a" * 101, "unaffable kingdoms",
          "x\x00y\ufffdz\x0bw\x85v\u200bu\x7f", "tab\there\nnew\rline\u2028sep\u3000ideo\xa0nb",
          "[MASK] to be [SEP] or not", "[mask] lower", "x[MASK]y", "ＡＢＣ ｆｕｌｌ",
          "e\u0301 combining \u0300 lone", "Straße ǅ ﬁ", "emoji 😀🎉 ok", "¿Qué? ¡Sí!",
          "«quotes» “curly” ‘single’", "§ ¶ † ‡ • … ‰", "1234567890 12 123", "The KING'S men."]
ALPHABET = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.;:!?'\"-()[]$+<=>^`|~"
            "\t\n\r\x00\x0b\x85\u200b\u2028\u3000\xa0éèêëàâäôöüçñÉÀÖßΣσςΩ日本語中文テ한ー…“”‘’«»"
            "\u0301\u0300")


def oracle_for(vocab_file, lowercase=True):
    return tokenizers.BertWordPieceTokenizer(str(vocab_file), lowercase=lowercase)


@pytest.fixture(scope="module")
def vocab_files(tmp_path_factory):
    """{"corpus": the oracle's vocab trained on the corpus, "hand": HAND_VOCAB} as vocab.txt."""
    folder = tmp_path_factory.mktemp("wordpiece")
    train = folder / "train.txt"
    train.write_text(load_corpus()[0], encoding="utf-8")
    trainer = tokenizers.BertWordPieceTokenizer(lowercase=True)
    trainer.train([str(train)], vocab_size=3000, show_progress=False)
    trainer.save_model(str(folder), "corpus")
    (folder / "hand-vocab.txt").write_text("".join(t + "\n" for t in HAND_VOCAB), "utf-8")
    return {"corpus": folder / "corpus-vocab.txt", "hand": folder / "hand-vocab.txt"}


@pytest.mark.parametrize("which", ["corpus", "hand"])
@pytest.mark.parametrize("lowercase", [True, False])
def test_ids_and_decoding_equal_the_oracle_on_tricky_strings(vocab_files, which, lowercase):
    ours = WordPieceTokenizer.from_vocab(vocab_files[which], lowercase=lowercase)
    oracle = oracle_for(vocab_files[which], lowercase)
    for text in TRICKY:
        encoding = oracle.encode(text)
        assert ours.encode(text) == encoding.ids, text
        assert ours.tokenize(text) == encoding.tokens[1:-1], text
        assert ours.encode(text, add_special_tokens=False) == \
            oracle.encode(text, add_special_tokens=False).ids
        assert ours.decode(encoding.ids) == oracle.decode(encoding.ids), text
        assert ours.decode(encoding.ids, False) == oracle.decode(encoding.ids, False), text


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=60), st.text(alphabet=ALPHABET, max_size=30))
def test_hypothesis_text_and_pairs_equal_the_oracle(vocab_files, text, other):
    for which in ("corpus", "hand"):
        ours = WordPieceTokenizer.from_vocab(vocab_files[which])
        oracle = oracle_for(vocab_files[which])
        encoding = oracle.encode(text, other)
        assert ours.encode_with_segments(text, other) == (encoding.ids, encoding.type_ids)
        assert ours.decode(encoding.ids) == oracle.decode(encoding.ids)


def test_the_whole_validation_play_equals_the_oracle(vocab_files):
    val = load_corpus()[1]
    ours = WordPieceTokenizer.from_vocab(vocab_files["corpus"])
    assert ours.encode(val) == oracle_for(vocab_files["corpus"]).encode(val).ids


@pytest.mark.parametrize("max_length", [3, 4, 5, 6, 7, 8, 10, 13, 40])
def test_truncation_longest_first_equals_the_oracle(vocab_files, max_length):
    ours = WordPieceTokenizer.from_vocab(vocab_files["corpus"])
    oracle = oracle_for(vocab_files["corpus"])
    oracle.enable_truncation(max_length)
    pairs = [("a b c d e f", "g h"), ("one two three", "four five six seven"), ("x y", "z"),
             ("to be or not", "to be"), ("", "only the second one here")]
    for a, b in pairs:
        encoding = oracle.encode(a, b)
        assert ours.encode_with_segments(a, b, max_length=max_length) == \
            (encoding.ids, encoding.type_ids)
        assert len(encoding.ids) <= max_length
        assert ours.encode(a + " " + b, max_length=max_length) == oracle.encode(a + " " + b).ids
    with pytest.raises(WordPieceError, match="no room for the 3 special tokens"):
        ours.encode("a", "b", max_length=2)


def test_greedy_longest_match_first_by_hand(vocab_files):
    # eq. 13.1
    tok = WordPieceTokenizer.from_vocab(vocab_files["hand"])
    assert tok.tokenize("unaffable") == ["un", "##aff", "##able"]  # longest prefix first
    assert tok.tokenize("Kingdoms") == ["king", "##dom", "##s"]
    assert tok.tokenize("affa aaaa") == ["aff", "##a", "a", "##a", "##a", "##a"]
    assert tok.tokenize("ab kingq") == ["a", "##b", "[UNK]"]  # no piece for "q": the whole word
    assert tok.tokenize("a" * 100) == ["a"] + ["##a"] * 99
    assert tok.tokenize("a" * 101) == ["[UNK]"]  # longer than 100 characters
    assert tok.tokenize("x日本x") == ["x", "日", "本", "x"]  # CJK ideographs stand alone
    assert tok.encode("") == [2, 3]  # [CLS] [SEP]
    assert normalize("Héllo\tWörld\x00!") == "hello world!"
    assert normalize("Héllo", lowercase=False) == "Héllo"
    assert pre_tokenize("don't stop!") == ["don", "'", "t", "stop", "!"]


def test_encode_batch_pads_with_a_mask_and_feeds_bert(vocab_files):
    tok = WordPieceTokenizer.from_vocab(vocab_files["corpus"])
    texts, pairs = ["To be, or not to be", "Ay", "What light through yonder window"], \
        ["that is the question", "me", "breaks"]
    batch = tok.encode_batch(texts, pairs)
    rows = [tok.encode_with_segments(a, b) for a, b in zip(texts, pairs)]
    T = max(len(ids) for ids, _ in rows)
    assert batch["ids"].shape == batch["segment_ids"].shape == batch["attention_mask"].shape \
        == (3, T)
    assert batch["ids"].dtype == np.int64 and batch["attention_mask"].dtype == bool
    for b, (ids, segments) in enumerate(rows):
        n = len(ids)
        assert batch["ids"][b, :n].tolist() == ids and batch["segment_ids"][b, :n].tolist() \
            == segments
        assert batch["attention_mask"][b].tolist() == [True] * n + [False] * (T - n)
        assert (batch["ids"][b, n:] == tok.special_tokens["[PAD]"]).all()
        assert (batch["segment_ids"][b, n:] == 0).all()
    config = BERTConfig(vocab_size=tok.vocab_size, context_length=T, num_layers=1, num_heads=2,
                        d_model=16, d_ff=32)
    h = BERT(config, rng=np.random.default_rng(0)).eval().encode(**batch)
    assert h.shape == (3, T, 16) and np.isfinite(h.numpy()).all()
    assert tok.encode_batch([])["ids"].shape == (0, 0)
    with pytest.raises(WordPieceError, match="one pair per text"):
        tok.encode_batch(["a", "b"], ["c"])


def test_round_trips_to_dict_vocab_file_and_decode(vocab_files, tmp_path):
    tok = WordPieceTokenizer.from_vocab(vocab_files["corpus"])
    again = tokenizer_from_dict(tok.to_dict())  # what a checkpoint stores
    assert isinstance(again, WordPieceTokenizer) and again.vocab == tok.vocab
    assert again.lowercase is True and again.encode("Hello, there!") == tok.encode("Hello, there!")
    tok.save(tmp_path / "vocab.txt")
    assert (tmp_path / "vocab.txt").read_bytes() == vocab_files["corpus"].read_bytes()
    text = "to be, or not to be. that is the question!"
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode("Héllo WORLD")) == "hello world"  # lowercasing is not undone


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(WordPieceError, match=r"no \[UNK\] token"):
        WordPieceTokenizer(["a", "b"])
    with pytest.raises(FileNotFoundError, match="not found"):
        WordPieceTokenizer.from_vocab(tmp_path / "missing.txt")
    (tmp_path / "bad.txt").write_bytes(b"[UNK]\n\xff\n")
    with pytest.raises(WordPieceError, match="not UTF-8"):
        WordPieceTokenizer.from_vocab(tmp_path / "bad.txt")
    tok = WordPieceTokenizer(["[UNK]", "a", "##a"])
    with pytest.raises(WordPieceError, match=r"no \[CLS\] token.*add_special_tokens=False"):
        tok.encode("a")
    assert tok.encode("aa b", add_special_tokens=False) == [1, 2, 0]
    with pytest.raises(WordPieceError, match=r"token id 7 at position 1 .*\[0, 3\)"):
        tok.decode([1, 7])
    with pytest.raises(WordPieceError, match="'vocab' as a list"):
        WordPieceTokenizer.from_dict({"type": "wordpiece", "vocab": "abc", "lowercase": True})


# ----------------------------------------------------------------------------- training

def literal_wordpiece(word_counts: dict, num_tokens: int) -> list:
    """The algorithm as the chapter states it: recount every unit and pair, merge the best
    score (ties: the smallest pair), left to right in every word, until num_tokens."""
    splits = {w: initial_units(w) for w in word_counts}
    vocab = sorted({u for units in splits.values() for u in units})
    while len(vocab) < num_tokens:
        units, pairs = Counter(), Counter()
        for word, n in word_counts.items():
            split = splits[word]
            units.update({u: 0 for u in split})
            for u in split:
                units[u] += n
            for pair in zip(split, split[1:]):
                pairs[pair] += n
        if not pairs:
            break
        a, b = min(pairs, key=lambda p: (-pairs[p] / (units[p[0]] * units[p[1]]), p))
        z = merged_unit(a, b)
        for word, split in splits.items():
            out, i = [], 0
            while i < len(split):
                if i + 1 < len(split) and split[i] == a and split[i + 1] == b:
                    out.append(z)
                    i += 2
                else:
                    out.append(split[i])
                    i += 1
            splits[word] = out
        if z not in vocab:
            vocab.append(z)
    return vocab


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text("abc", min_size=1, max_size=7), st.integers(1, 6), min_size=1,
                       max_size=12), st.integers(1, 40))
def test_the_heap_trainer_equals_the_literal_algorithm(word_counts, num_tokens):
    words = list(word_counts)
    assert learn_wordpiece(words, [word_counts[w] for w in words], num_tokens) == \
        literal_wordpiece(word_counts, num_tokens)


def test_the_likelihood_score_by_hand():
    # eq. 13.3
    """"ab" x5, "cb" x5, "ad" x1: units a 6, c 5, ##b 10, ##d 1. Scores: (a ##b) 5 / 60,
    (c ##b) 5 / 50, (a ##d) 1 / 6: the rare pair whose parts never appear apart wins (BPE would
    take a count-5 pair). Then a = 5: (a ##b) and (c ##b) tie at 0.1; the smaller pair wins."""
    words, freqs = ["ab", "cb", "ad"], [5, 5, 1]
    assert learn_wordpiece(words, freqs, 6) == ["##b", "##d", "a", "c", "ad", "ab"]
    corpus = Counter(pre_tokenize(normalize(" ".join(load_corpus()[1].split()[:3000]))))
    words = list(corpus)
    assert learn_wordpiece(words, [corpus[w] for w in words], 400) == \
        literal_wordpiece(dict(corpus), 400)


def test_train_on_the_corpus_then_the_oracle_reads_our_vocab(tmp_path):
    train, val = load_corpus()
    tok = WordPieceTokenizer.train(train, vocab_size=2000)
    assert tok.vocab_size == 2000 and tok.vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                                        "[MASK]"]
    assert len(set(tok.vocab)) == tok.vocab_size
    ids = tok.encode(val[:20_000])
    assert tok.special_tokens["[UNK]"] not in ids[1:-1]  # every character of the play is known
    tok.save(tmp_path / "vocab.txt")
    assert oracle_for(tmp_path / "vocab.txt").encode(val[:20_000]).ids == ids
