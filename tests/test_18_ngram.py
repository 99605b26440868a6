"""Chapter 18, language models before attention: n-gram models (add-k, Kneser-Ney, stupid backoff).

Under test: ``tinyllm/ngram.py``. The counts are checked against a slow reference built from
``collections.Counter`` (a dict per n-gram, which the library avoids); the distributions sum to
one for every kind of history; Kneser-Ney against a computation by hand; the vectorised scoring
against a loop over positions.
"""

import collections
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyllm.ngram import (
    FALLBACK_DISCOUNTS,
    AddK,
    KneserNey,
    MaximumLikelihood,
    NGramCounts,
    StupidBackoff,
    modified_kneser_ney_discounts,
)

pytestmark = pytest.mark.ch18

A, B, C = 0, 1, 2
TINY = [A, B, A, B, C, A, B]  # "a b a b c a b": bigrams ab x3, ba, bc, ca


def gram_counts(ids, k) -> collections.Counter:
    """The slow reference: a Counter of k-gram tuples."""
    return collections.Counter(tuple(ids[i:i + k]) for i in range(len(ids) - k + 1))


def row_count(counts: NGramCounts, gram) -> int:
    """c(gram) read from the sorted arrays (0 if unseen)."""
    rows = counts.stream_rows(np.array(gram, dtype=np.int64))
    row = rows[len(gram)][0]
    return 0 if row < 0 else int(counts.counts[len(gram)][row])


def corpora(max_vocab=5, max_len=40):
    return st.integers(2, max_vocab).flatmap(lambda V: st.tuples(
        st.just(V), st.lists(st.integers(0, V - 1), min_size=0, max_size=max_len)))


# --------------------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------------------


@given(corpora(), st.integers(1, 4))
def test_counts_and_continuation_counts_equal_a_counter(corpus, order):
    V, ids = corpus
    counts = NGramCounts(ids, V, order)
    for k in range(1, order + 1):
        reference = gram_counts(ids, k)
        assert len(counts.codes[k]) == len(reference)
        assert np.all(np.diff(counts.codes[k]) > 0)  # sorted and unique
        for gram, c in reference.items():
            assert row_count(counts, gram) == c
        if k < order:  # N1+(. g): distinct tokens seen right before g
            left = collections.Counter(g[1:] for g in gram_counts(ids, k + 1))
            rows = {gram: counts.stream_rows(np.array(gram))[k][0] for gram in reference}
            for gram, row in rows.items():
                assert counts.continuation[k][row] == left.get(gram, 0)


def test_unseen_grams_are_not_found():
    counts = NGramCounts(TINY, 3, 3)
    assert row_count(counts, (C, C)) == 0 and row_count(counts, (B, B, B)) == 0
    assert row_count(counts, (A, B)) == 3 and row_count(counts, (A, B, C)) == 1


# --------------------------------------------------------------------------------------------------
# Maximum likelihood and add-k
# --------------------------------------------------------------------------------------------------


@given(corpora(), st.integers(1, 4))
def test_mle_is_counts_over_history_counts(corpus, order):
    # eq. 18.1: p_ML(w | h) = c(hw) / c(h .)
    V, ids = corpus
    model = MaximumLikelihood(NGramCounts(ids, V, order))
    grams = gram_counts(ids, order)
    histories = collections.Counter()
    for gram, c in grams.items():
        histories[gram[:-1]] += c  # c(h .) = sum_w c(h w)
    for history, total in histories.items():
        expected = np.array([grams.get(history + (w,), 0) / total for w in range(V)])
        np.testing.assert_allclose(model.distribution(list(history)), expected, rtol=1e-12)


def test_mle_is_undefined_after_an_unseen_history_and_cannot_generate():
    counts = NGramCounts([A, B, A, B], 3, 2)  # C is never a history
    assert np.all(np.isnan(MaximumLikelihood(counts).distribution([C])))
    with pytest.raises(ValueError, match="never seen"):
        MaximumLikelihood(counts).generate([C], 3, seed=0)


def test_add_k_by_hand():
    # eq. 18.3: (c(hw) + k) / (c(h .) + k V)
    model = AddK(NGramCounts(TINY, 3, 2), k=0.5)  # (c + 1/2) / (c(h .) + 3/2)
    np.testing.assert_allclose(model.distribution([A]), [0.5 / 4.5, 3.5 / 4.5, 0.5 / 4.5])
    np.testing.assert_allclose(model.distribution([C]), [1.5 / 2.5, 0.5 / 2.5, 0.5 / 2.5])
    unseen = AddK(NGramCounts([A, B, A, B], 3, 2), k=0.5).distribution([C])
    np.testing.assert_allclose(unseen, [1 / 3] * 3)  # no counts: uniform


@given(corpora(), st.integers(1, 4))
def test_add_k_tends_to_mle_where_it_is_defined(corpus, order):
    V, ids = corpus
    counts = NGramCounts(ids, V, order)
    mle, tiny_k = MaximumLikelihood(counts), AddK(counts, k=1e-10)
    for i in range(len(ids) - order + 2):
        history = ids[i:i + order - 1]
        expected = mle.distribution(history)
        if np.all(np.isfinite(expected)):
            np.testing.assert_allclose(tiny_k.distribution(history), expected, atol=1e-8)


# --------------------------------------------------------------------------------------------------
# Every distribution sums to one over the vocabulary
# --------------------------------------------------------------------------------------------------


@given(corpora(), st.integers(1, 4), st.lists(st.integers(0, 4), max_size=5),
       st.floats(0.01, 2.0))
def test_distributions_sum_to_one_for_seen_unseen_and_partly_seen_histories(corpus, order, extra,
                                                                           k):
    V, ids = corpus
    extra = [t % V for t in extra]
    counts = NGramCounts(ids, V, order)
    histories = [ids[i:i + j] for i in range(len(ids)) for j in range(order)]  # seen
    histories += [extra, extra[:order - 1]]  # most likely unseen
    histories += [extra[:1] + h for h in histories[:10]]  # an unseen oldest token, seen suffix
    for model in (AddK(counts, k=k), KneserNey(counts)):
        for history in histories:
            p = model.distribution(history)
            assert p.shape == (V,) and np.all(p > 0), (type(model).__name__, history, p)
            assert math.isclose(p.sum(), 1.0, rel_tol=1e-12), (type(model).__name__, history, p)


@given(corpora(), st.integers(1, 4))
def test_lower_orders_of_a_higher_order_count_sum_to_one_too(corpus, order):
    V, ids = corpus
    counts = NGramCounts(ids, V, 4)
    model = KneserNey(counts, order=order)
    for i in range(len(ids)):
        assert math.isclose(model.distribution(ids[i:i + 3]).sum(), 1.0, rel_tol=1e-12)


# --------------------------------------------------------------------------------------------------
# Kneser-Ney
# --------------------------------------------------------------------------------------------------


def test_discounts_by_hand():
    # n1..n4 = 100, 40, 20, 10: Y = 100 / 180 = 5/9
    # eq. 18.6: Y, D1, D2, D3+ from the counts of counts
    D1, D2, D3 = modified_kneser_ney_discounts(100, 40, 20, 10)
    assert math.isclose(D1, 1 - 2 * (5 / 9) * 40 / 100) and math.isclose(D1, 5 / 9)
    assert math.isclose(D2, 2 - 3 * (5 / 9) * 20 / 40) and math.isclose(D2, 7 / 6)
    assert math.isclose(D3, 3 - 4 * (5 / 9) * 10 / 20) and math.isclose(D3, 17 / 9)
    with pytest.raises(ValueError, match="n1, n2, n3 > 0"):
        modified_kneser_ney_discounts(5, 0, 1, 1)


def test_kneser_ney_by_hand():
    # eq. 18.5: discounted counts plus gamma(h) times the lower order
    """"a b a b c a b", order 2, D = (0.3, 0.6, 0.9) at both levels.

    Unigram level, continuation counts N1+(. w): a is seen after b and c -> 2; b after a -> 1; c
    after b -> 1; total 4. N1 = 2 (b, c), N2 = 1 (a): gamma * total = 0.3 * 2 + 0.6 * 1 = 1.2,
    spread by the uniform 1/3:
        p1(a) = (2 - 0.6 + 1.2 / 3) / 4 = 0.45,   p1(b) = p1(c) = (1 - 0.3 + 0.4) / 4 = 0.275
    Bigram level, counts: ab 3, ba 1, bc 1, ca 1.
        h = a: total 3, N3+ = 1 -> gamma * 3 = 0.9
            p(a|a) = 0.9 * 0.45 / 3 = 0.135, p(b|a) = (3 - 0.9 + 0.9 * 0.275) / 3 = 0.7825,
            p(c|a) = 0.9 * 0.275 / 3 = 0.0825
        h = b: total 2, N1 = 2 -> gamma * 2 = 0.6
            p(a|b) = (0.7 + 0.6 * 0.45) / 2 = 0.485, p(b|b) = 0.6 * 0.275 / 2 = 0.0825,
            p(c|b) = (0.7 + 0.6 * 0.275) / 2 = 0.4325
        h = c: total 1, N1 = 1 -> gamma = 0.3
            p(a|c) = 0.7 + 0.3 * 0.45 = 0.835, p(b|c) = p(c|c) = 0.3 * 0.275 = 0.0825
    """
    counts = NGramCounts(TINY, 3, 2)
    model = KneserNey(counts, discounts=(0.3, 0.6, 0.9))
    np.testing.assert_allclose(model.distribution([]), [0.45, 0.275, 0.275], rtol=1e-12)
    np.testing.assert_allclose(model.distribution([A]), [0.135, 0.7825, 0.0825], rtol=1e-12)
    np.testing.assert_allclose(model.distribution([B]), [0.485, 0.0825, 0.4325], rtol=1e-12)
    np.testing.assert_allclose(model.distribution([C]), [0.835, 0.0825, 0.0825], rtol=1e-12)
    np.testing.assert_allclose(model.distribution([C, A]), model.distribution([A]))  # n - 1 = 1
    # the stream: the first token has no history and is scored by the unigram level
    expected = np.log([0.45, 0.7825, 0.485, 0.7825, 0.4325, 0.835, 0.7825])
    np.testing.assert_allclose(model.log_prob(TINY), expected, rtol=1e-12)
    assert math.isclose(model.perplexity(TINY), math.exp(-expected.mean()), rel_tol=1e-12)


def test_default_discounts_come_from_each_levels_counts_of_counts():
    rng = np.random.default_rng(0)
    ids = rng.choice(6, size=3000, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05])
    counts = NGramCounts(ids, 6, 3)
    model = KneserNey(counts)
    for k in (1, 2, 3):  # the top level counts c, the lower ones N1+(. g)
        grams = gram_counts(list(ids), k)
        if k == 3:
            used = list(grams.values())
        else:
            left = collections.Counter(g[1:] for g in gram_counts(list(ids), k + 1))
            used = [left.get(g, 0) for g in grams]
        n = [sum(1 for a in used if a == r) for r in (1, 2, 3, 4)]
        if min(n[:3]) > 0 and all(0 <= d <= r for r, d in
                                  zip((1, 2, 3), modified_kneser_ney_discounts(*n))):
            np.testing.assert_allclose(model.discounts[k], modified_kneser_ney_discounts(*n))
        else:
            assert model.discounts[k] == FALLBACK_DISCOUNTS
    assert model.discounts[3] != FALLBACK_DISCOUNTS  # 3000 tokens give eq. 26 at the top level


def test_kneser_ney_beats_add_k_on_held_out_text():
    rng = np.random.default_rng(1)
    transition = rng.dirichlet(np.full(8, 0.3), size=8)  # a Markov chain: order 2 is the truth
    ids = [0]
    for _ in range(6000):
        ids.append(int(rng.choice(8, p=transition[ids[-1]])))
    train, held_out = ids[:5000], ids[5000:]
    counts = NGramCounts(train, 8, 3)
    assert KneserNey(counts).perplexity(held_out) < AddK(counts, k=1.0).perplexity(held_out)
    truth = np.exp(-np.mean(np.log(transition[held_out[:-1], held_out[1:]])))
    assert KneserNey(counts, order=2).perplexity(held_out) < truth * 1.05  # close to the truth


# --------------------------------------------------------------------------------------------------
# Vectorised scoring = a loop over positions; stupid backoff; generation; errors
# --------------------------------------------------------------------------------------------------


@given(corpora(max_len=30), st.lists(st.integers(0, 4), min_size=1, max_size=15),
       st.integers(1, 4))
def test_vectorised_log_prob_equals_a_loop_over_distribution(corpus, text, order):
    V, ids = corpus
    text = [t % V for t in text]
    counts = NGramCounts(ids, V, order)
    for model in (AddK(counts, k=0.3), KneserNey(counts)):
        slow = [math.log(model.distribution(text[max(t - order + 1, 0):t])[text[t]])
                for t in range(len(text))]
        np.testing.assert_allclose(model.log_prob(text), slow, rtol=1e-12)
    backoff = StupidBackoff(counts)
    with np.errstate(divide="ignore"):
        slow = [np.log(backoff.scores(text[max(t - order + 1, 0):t])[text[t]])
                for t in range(len(text))]
    np.testing.assert_allclose(backoff.log_score(text), slow, rtol=1e-12)


def test_stupid_backoff_by_hand_and_it_is_no_probability():
    # eq. 18.7
    model = StupidBackoff(NGramCounts(TINY, 3, 2))
    # S(w | a): ab seen 3 of 3 -> 1; aa, ac unseen -> 0.4 * c(w) / N = 0.4 * 3/7, 0.4 * 1/7
    np.testing.assert_allclose(model.scores([A]), [0.4 * 3 / 7, 1.0, 0.4 * 1 / 7])
    assert model.scores([A]).sum() > 1  # a score, not a probability
    assert math.isclose(model.distribution([A]).sum(), 1.0)  # renormalised for sampling
    with pytest.raises(TypeError, match="not probabilities"):
        model.log_prob(TINY)
    with pytest.raises(TypeError, match="pseudo-perplexity"):
        model.perplexity(TINY)


def test_generation_is_reproducible_by_seed_and_follows_the_counts():
    rng = np.random.default_rng(2)
    ids = list(rng.integers(0, 6, size=400))
    counts = NGramCounts(ids, 6, 3)
    model = KneserNey(counts)
    first = model.generate([1, 2], 200, seed=7)
    assert first == model.generate([1, 2], 200, seed=7)
    assert first != model.generate([1, 2], 200, seed=8)
    assert len(first) == 200 and all(0 <= t < 6 for t in first)
    seen = set(gram_counts(ids, 3))
    mle_text = [1, 2] + MaximumLikelihood(counts).generate([1, 2], 300, seed=3)
    assert set(gram_counts(mle_text, 3)) <= seen  # MLE only ever continues with seen trigrams
    greedy = AddK(counts, k=0.01).generate([1, 2], 30, seed=0, temperature=1e-3)
    history = [1, 2] + greedy
    for t in range(2, len(history)):  # a temperature near 0 picks the most likely token
        p = AddK(counts, k=0.01).distribution(history[t - 2:t])
        assert p[history[t]] == p.max()


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="outside the vocabulary 0..2"):
        NGramCounts([0, 1, 3], 3, 2)
    with pytest.raises(ValueError, match=r"1-D sequence of token ids \(T,\)"):
        NGramCounts(np.zeros((2, 2), dtype=int), 3, 2)
    with pytest.raises(TypeError, match="must be integers"):
        NGramCounts([0.5, 1.0], 3, 2)
    counts = NGramCounts(TINY, 3, 2)
    with pytest.raises(ValueError, match="order=3"):
        KneserNey(counts, order=3)
    with pytest.raises(ValueError, match="k > 0"):
        AddK(counts, k=0)
    with pytest.raises(ValueError, match="temperature"):
        KneserNey(counts).generate([0], 2, temperature=0)
