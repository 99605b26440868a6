"""Chapter 15, metrics: BLEU, chrF, ROUGE, CER and WER written from scratch.

Under test: ``tinyllm/metrics/`` (``bleu.py``, ``chrf.py``, ``rouge.py``, ``cer.py``,
``sequences.py``, ``alignment.py``). The oracles are ``sacrebleu`` (corpus_bleu, sentence_bleu,
corpus_chrf, sentence_chrf and its 13a tokeniser) and ``rouge_score`` (RougeScorer), from the
test extra; the edit distance is also checked against ``nltk.edit_distance`` (installed with
rouge-score) and a plain double loop written here. Each oracle test skips cleanly when its
library is missing. Inputs come from hypothesis (words with punctuation, numbers, hyphens,
entities, line breaks, empty sentences, identical pairs, one-word sentences, several
references) and from the Shakespeare corpus with edits; plus examples worked by hand.
"""

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyllm.metrics import (
    character_error_rate,
    corpus_bleu,
    corpus_chrf,
    edit_distances,
    levenshtein,
    rouge_scores,
    sentence_bleu,
    sentence_bleu_scores,
    sentence_chrf,
    sentence_rouge,
    tokenize_13a,
    word_error_rate,
)

pytestmark = pytest.mark.ch15

TOL = 1e-6
WORDS = ["the", "The", "cat", "sat", "on", "mat", "a", "vpon", "upon", ",", ".", "!", "?", ";",
         "3", "3.14", "1,000", "well-known", "-", "x-1", "9-", "it's", "(hi)", '"', "&amp;",
         "&lt;", "&quot;", "<skipped>", "über", "naïve", "--", "...", "e.g.", "'", "50%", "$5",
         "O!", "thee,", "[a]", "1.", ".5", "a.b", "2-3"]
SEPARATORS = [" ", " ", " ", "", "  ", "\t", "\n", "-\n"]

sentences = st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS)),
                     max_size=12).map(lambda parts: "".join(w + s for w, s in parts))


@st.composite
def corpora(draw, allow_missing=True):
    """(hypotheses (N,), reference streams (K, N)); some references copy the hypothesis,
    some are missing (None) where the sentence keeps another reference."""
    N, K = draw(st.integers(1, 6)), draw(st.integers(1, 3))
    hyps = [draw(sentences) for _ in range(N)]
    streams = [[draw(st.one_of(sentences, st.just(h), st.sampled_from(["", "cat", "."])))
                for h in hyps] for _ in range(K)]
    if allow_missing and K > 1:
        for i in range(N):
            for k in range(1, K):
                if draw(st.booleans()) and draw(st.booleans()):
                    streams[k][i] = None
    return hyps, streams


def refs_of(streams, i):
    return [stream[i] for stream in streams if stream[i] is not None]


def assert_bleu_equal(ours, theirs):
    assert ours.score == pytest.approx(theirs.score, abs=TOL)
    assert list(ours.counts) == list(theirs.counts)
    assert list(ours.totals) == list(theirs.totals)
    np.testing.assert_allclose(ours.precisions, theirs.precisions, atol=TOL)
    assert ours.bp == pytest.approx(theirs.bp, abs=TOL)
    assert (ours.sys_len, ours.ref_len) == (theirs.sys_len, theirs.ref_len)
    assert ours.ratio == pytest.approx(theirs.ratio, abs=TOL)


def shakespeare_pairs(count=400, seed=0):
    """Lines of the validation play with edits a model might make: a word dropped, two words
    swapped, a Folio spelling (u -> v, than -> then), punctuation lost, a word doubled."""
    from tinyllm.corpus import load_corpus

    _, val_text = load_corpus("shakespeare")
    lines = [line for line in val_text.splitlines() if line.strip()][:count]
    rng = random.Random(seed)
    hyps = []
    for line in lines:
        words = line.split()
        edit = rng.randrange(6)
        if edit == 0 and len(words) > 1:
            del words[rng.randrange(len(words))]
        elif edit == 1 and len(words) > 1:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        elif edit == 2:
            words = [w.replace("u", "v").replace("than", "then") for w in words]
        elif edit == 3:
            words = [w.strip(",.;:!?") for w in words]
        elif edit == 4:
            words.insert(rng.randrange(len(words) + 1), rng.choice(words))
        hyps.append(" ".join(words))
    return hyps, lines


# ----------------------------------------------------------------------------- 13a tokeniser

@pytest.mark.parametrize("line, tokens", [
    ('He said: "No."', 'He said : " No . "'),
    ("3.14 and 1,000, then 9-5 or x-1.", "3.14 and 1,000 , then 9 - 5 or x-1 ."),
    ("well-known &amp;lt; &quot;hi&quot;", 'well-known < " hi "'),   # &amp; first, then &lt;
    ("hy-\nphen<skipped> line\nbreak", "hyphen line break"),
    ("it's (fine)!", "it's ( fine ) !"),
])
def test_13a_by_hand(line, tokens):
    assert tokenize_13a(line) == tokens


@given(line=sentences)
def test_13a_equals_sacrebleu(line):
    tokenizer_13a = pytest.importorskip("sacrebleu.tokenizers.tokenizer_13a")
    assert tokenize_13a(line) == tokenizer_13a.Tokenizer13a()(line)


# ----------------------------------------------------------------------------- BLEU by hand

def test_sentence_bleu_by_hand():
    # hyp "the cat sat on the mat", ref "the cat is on the mat", 6 tokens each (BP = 1):
    #   1-grams: the x2, cat, on, mat match          p1 = 5/6
    #   2-grams: "the cat", "on the", "the mat"        p2 = 3/5
    #   3-grams: "on the mat"                          p3 = 1/4
    #   4-grams: none of 3; exp smoothing, 1st miss    p4 = 1 / (2 * 3) = 1/6
    #   BLEU = 100 * (5/6 * 3/5 * 1/4 * 1/6) ** (1/4) = 100 * 48 ** -0.25 = 37.99
    score = sentence_bleu("the cat sat on the mat", ["the cat is on the mat"])
    assert score.score == pytest.approx(100 * 48 ** -0.25, abs=1e-9)
    assert score.counts == (5, 3, 1, 0) and score.totals == (6, 5, 4, 3)
    assert score.precisions == pytest.approx((500 / 6, 60, 25, 100 / 6))
    # the corpus of this one sentence: the same statistics, the same exp smoothing by default
    assert corpus_bleu(["the cat sat on the mat"], [["the cat is on the mat"]]).score == \
        pytest.approx(score.score)
    # without smoothing a missing order makes BLEU 0 (Papineni et al.)
    assert corpus_bleu(["the cat sat on the mat"], [["the cat is on the mat"]],
                       smooth="none").score == 0.0


def test_brevity_penalty_by_hand():
    # c = 2 < r = 6: BP = exp(1 - 6/2) = e^-2; the effective order has p1 = p2 = 1
    short = sentence_bleu("the cat", ["the cat sat on the mat"])
    assert short.bp == pytest.approx(math.exp(-2)) and short.score == pytest.approx(
        100 * math.exp(-2))
    assert short.ratio == pytest.approx(2 / 6)
    # longer than the reference: no penalty; empty hypothesis: BP = 0, BLEU = 0
    assert sentence_bleu("the cat sat on the mat mat", ["the cat sat on the mat"]).bp == 1.0
    assert sentence_bleu("", ["the cat"]).bp == 0.0 and sentence_bleu("", ["a"]).score == 0.0
    # the reference length is the *closest* one (c = 4: 5 is closer than 2) ...
    assert sentence_bleu("a b c d", ["a b c d e", "a b"]).ref_len == 5
    assert sentence_bleu("a b c d", ["a b c d e", "a b"]).bp == pytest.approx(math.exp(1 - 5 / 4))
    # ... and on a tie (|4 - 6| = |4 - 2|) the shorter
    assert sentence_bleu("a b c d", ["a b c d e f", "a b"]).ref_len == 2


def test_bleu_extremes():
    text = ["the cat sat on the mat .", "a dog barked at the moon"]
    assert corpus_bleu(text, [text]).score == pytest.approx(100.0)
    assert corpus_bleu(["x y z w"], [["a b c d"]]).score == 0.0    # no match at all
    scores = sentence_bleu_scores(text + ["x"], [text + ["y"]])
    np.testing.assert_allclose(scores, [100.0, 100.0, 0.0])


# ----------------------------------------------------------------------------- BLEU oracle

@settings(max_examples=80)
@given(corpus=corpora())
def test_bleu_equals_sacrebleu(corpus):
    sacrebleu = pytest.importorskip("sacrebleu")
    hyps, streams = corpus
    assert_bleu_equal(corpus_bleu(hyps, streams), sacrebleu.corpus_bleu(hyps, streams))
    assert_bleu_equal(corpus_bleu(hyps, streams, smooth="none", lowercase=True),
                      sacrebleu.corpus_bleu(hyps, streams, smooth_method="none", lowercase=True))
    assert_bleu_equal(corpus_bleu(hyps, streams, tokenize="none", effective_order=True),
                      sacrebleu.corpus_bleu(hyps, streams, tokenize="none",
                                            use_effective_order=True))
    expected = []
    for i, hyp in enumerate(hyps):
        theirs = sacrebleu.sentence_bleu(hyp, refs_of(streams, i))
        assert_bleu_equal(sentence_bleu(hyp, refs_of(streams, i)), theirs)
        expected.append(theirs.score)
    np.testing.assert_allclose(sentence_bleu_scores(hyps, streams), expected, atol=TOL)


def test_bleu_equals_sacrebleu_on_shakespeare():
    sacrebleu = pytest.importorskip("sacrebleu")
    hyps, refs = shakespeare_pairs()
    assert_bleu_equal(corpus_bleu(hyps, [refs]), sacrebleu.corpus_bleu(hyps, [refs]))
    other = [" ".join(reversed(line.split())) for line in refs]         # a second reference
    assert_bleu_equal(corpus_bleu(hyps, [refs, other]),
                      sacrebleu.corpus_bleu(hyps, [refs, other]))
    expected = [sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(hyps, refs)]
    np.testing.assert_allclose(sentence_bleu_scores(hyps, [refs]), expected, atol=TOL)


# ----------------------------------------------------------------------------- chrF

def test_chrf_by_hand():
    # hyp "ab", ref "a b c" (whitespace removed: "abc"); beta = 2, so beta^2 = 4:
    #   n = 1: a, b of a, b, c      P = 2/2, R = 2/3
    #   n = 2: ab of ab, bc         P = 1/1, R = 1/2
    #   n = 3: the hypothesis has no 3-gram: not an effective order (nor n = 4..6)
    #   mean P = 1, mean R = (2/3 + 1/2) / 2 = 7/12
    #   chrF2 = 100 * 5 * 1 * 7/12 / (4 * 1 + 7/12) = 100 * 35/55 = 63.64
    # eqs. 15.9, 15.10
    assert sentence_chrf("ab", ["a b c"]).score == pytest.approx(100 * 7 / 11, abs=1e-9)
    assert sentence_chrf("abc", ["abc"]).score == pytest.approx(100.0)
    assert sentence_chrf("", ["abc"]).score == 0.0
    # the corpus sums the statistics first, not the mean of the sentence scores (100 and 0):
    #   n = 1: m = 3 + 0 of h = r = 3 + 1    P = R = 3/4
    #   n = 2, 3: "ab", "bc", "abc" match    P = R = 1;  n >= 4: no n-grams, not effective
    #   P = R = (3/4 + 1 + 1) / 3 = 11/12, and F_beta of P = R is that value: 91.67, not 50
    assert sentence_chrf("x", ["y"]).score == 0.0
    assert corpus_chrf(["abc", "x"], [["abc", "y"]]).score == pytest.approx(100 * 11 / 12)


@settings(max_examples=80)
@given(corpus=corpora(), word_order=st.sampled_from([0, 2]))
def test_chrf_equals_sacrebleu(corpus, word_order):
    sacrebleu = pytest.importorskip("sacrebleu")
    hyps, streams = corpus
    ours = corpus_chrf(hyps, streams, word_order=word_order)
    assert ours.score == pytest.approx(
        sacrebleu.corpus_chrf(hyps, streams, word_order=word_order).score, abs=TOL)
    for i, hyp in enumerate(hyps):
        theirs = sacrebleu.sentence_chrf(hyp, refs_of(streams, i), word_order=word_order)
        assert sentence_chrf(hyp, refs_of(streams, i), word_order=word_order).score == \
            pytest.approx(theirs.score, abs=TOL)


def test_chrf_equals_sacrebleu_on_shakespeare():
    sacrebleu = pytest.importorskip("sacrebleu")
    hyps, refs = shakespeare_pairs()
    other = [line.upper() for line in refs]
    for streams in ([refs], [refs, other]):
        for word_order in (0, 2):
            assert corpus_chrf(hyps, streams, word_order=word_order).score == pytest.approx(
                sacrebleu.corpus_chrf(hyps, streams, word_order=word_order).score, abs=TOL)


# ----------------------------------------------------------------------------- ROUGE

def test_rouge_by_hand():
    # hyp "the cat sat", ref "The cat sat down!" -> words the cat sat | the cat sat down
    #   ROUGE-1: 3 matches, P = 3/3, R = 3/4, F = 2 * 3/4 / (7/4) = 6/7
    #   ROUGE-2: "the cat", "cat sat": P = 2/2, R = 2/3, F = 4/5
    #   ROUGE-L: LCS = 3 words, the same as ROUGE-1 here
    # eqs. 15.11, 15.12, 15.14 (the LCS of ROUGE-L)
    scores = sentence_rouge("the cat sat", "The cat sat down!")
    assert scores["rouge1"].fmeasure == pytest.approx(6 / 7)
    assert (scores["rouge2"].precision, scores["rouge2"].recall) == pytest.approx((1, 2 / 3))
    assert scores["rouge2"].fmeasure == pytest.approx(4 / 5)
    # order matters to ROUGE-L but not to ROUGE-1: "c b a" shares 1 word in order with "a b c"
    swapped = sentence_rouge("c b a", "a b c")
    assert swapped["rouge1"].fmeasure == pytest.approx(1.0)
    assert swapped["rougeL"].fmeasure == pytest.approx(1 / 3)
    assert sentence_rouge("", "a b")["rougeL"].fmeasure == 0.0


@settings(max_examples=80)
@given(corpus=corpora(allow_missing=False))
def test_rouge_equals_rouge_score(corpus):
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    hyps, streams = corpus
    ours = rouge_scores(hyps, streams)
    for i, hyp in enumerate(hyps):
        theirs = scorer.score_multi(refs_of(streams, i), hyp)
        for name in ("rouge1", "rouge2", "rougeL"):
            for field in ("precision", "recall", "fmeasure"):
                assert getattr(ours[name], field)[i] == pytest.approx(
                    getattr(theirs[name], field), abs=TOL), (name, field)


def test_rouge_equals_rouge_score_on_shakespeare():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    hyps, refs = shakespeare_pairs(count=300)
    ours = rouge_scores(hyps, [refs])
    for name in ("rouge1", "rouge2", "rougeL"):
        theirs = [scorer.score(r, h)[name] for h, r in zip(hyps, refs)]
        np.testing.assert_allclose(ours[name].fmeasure, [t.fmeasure for t in theirs], atol=TOL)
        np.testing.assert_allclose(ours[name].recall, [t.recall for t in theirs], atol=TOL)


# ----------------------------------------------------------------------------- edit distance

def slow_levenshtein(a, b) -> int:
    """The textbook double loop over the table (eq. 15.13)."""
    D = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            substitute = D[i - 1][j - 1] + (a[i - 1] != b[j - 1])
            D[i][j] = min(D[i - 1][j] + 1, D[i][j - 1] + 1, substitute)
    return D[len(a)][len(b)]


@pytest.mark.parametrize("a, b, distance", [
    ("kitten", "sitting", 3), ("flaw", "lawn", 2), ("intention", "execution", 5),
    ("saturday", "sunday", 3), ("", "abc", 3), ("abc", "", 3), ("", "", 0), ("vpon", "upon", 1),
])
def test_levenshtein_classic_pairs(a, b, distance):
    assert levenshtein(a, b) == levenshtein(b, a) == distance
    assert levenshtein(list(a), list(b)) == distance


@given(pairs=st.lists(st.tuples(st.text("abc ", max_size=14), st.text("abc ", max_size=14)),
                      min_size=1, max_size=40))
def test_edit_distances_match_the_double_loop(pairs):
    # eq. 15.13
    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    distances, lengths = edit_distances(hyps, refs)
    assert distances.tolist() == [slow_levenshtein(r, h) for h, r in pairs]
    assert lengths.tolist() == [len(r) for r in refs]
    words, _ = edit_distances(hyps, refs, unit="word")
    assert words.tolist() == [slow_levenshtein(r.split(), h.split()) for h, r in pairs]


def test_edit_distances_equal_nltk_on_shakespeare():
    nltk = pytest.importorskip("nltk")
    hyps, refs = shakespeare_pairs(count=200)
    distances, _ = edit_distances(hyps, refs)
    assert distances.tolist() == [nltk.edit_distance(h, r) for h, r in zip(hyps, refs)]


def test_error_rates_by_hand():
    assert character_error_rate(["vpon the"], ["upon the"]) == pytest.approx(1 / 8)
    # corpus-level: 1 edit over 1 + 4 reference characters, not the mean of 1/1 and 0/4
    assert character_error_rate(["a", "abcd"], ["b", "abcd"]) == pytest.approx(1 / 5)
    # "the cat sat" -> "a cat sat down": one substitution, one insertion, over 4 words
    assert word_error_rate(["the cat sat"], ["a cat sat down"]) == pytest.approx(2 / 4)
    assert character_error_rate(["abc"], ["abc"]) == 0.0
    assert character_error_rate(["abcdef"], ["ab"]) == pytest.approx(4 / 2)  # can pass 1


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, error, words", [
    (lambda: corpus_bleu(["a", "b"], [["a"]]), ValueError, "2 hypotheses"),
    (lambda: corpus_bleu(["a"], ["a"]), TypeError, "[refs]"),
    (lambda: corpus_bleu("a b", [["a b"]]), TypeError, "[text]"),
    (lambda: corpus_bleu([1], [["a"]]), TypeError, "decode"),
    (lambda: corpus_bleu(["a"], [[None]]), ValueError, "no reference"),
    (lambda: corpus_bleu([], [[]]), ValueError, "no hypotheses"),
    (lambda: corpus_bleu(["a"], [["a"]], tokenize="intl"), ValueError, "13a"),
    (lambda: corpus_bleu(["a"], [["a"]], smooth="add-k"), ValueError, "exp"),
    (lambda: corpus_chrf(["a", "b"], [["a"]]), ValueError, "stream 0 has 1"),
    (lambda: corpus_chrf(["a"], [[3]]), TypeError, "not a str"),
    (lambda: sentence_bleu("a", []), ValueError, "at least one reference"),
    (lambda: rouge_scores(["a"], [["a"]], ["rougeLsum"]), ValueError, "rougeLsum"),
    (lambda: character_error_rate(["a", "b"], ["a"]), ValueError, "2 hypotheses"),
    (lambda: character_error_rate([""], [""]), ValueError, "every reference is empty"),
    (lambda: word_error_rate([b"a"], ["a"]), TypeError, "not a str"),
    (lambda: levenshtein("abc", ["a"]), TypeError, "two strings"),
])
def test_bad_input_is_a_clear_error(call, error, words):
    with pytest.raises(error, match=None) as info:
        call()
    assert words in str(info.value)
