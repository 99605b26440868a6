"""tinyllm.metrics.classification against scikit-learn (the oracle), on random labels.

Hypothesis draws labels with absent classes, a single class, and a ``labels`` argument that
names classes never seen or leaves seen ones out; every average and zero_division value.
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyllm.metrics import (
    accuracy,
    confusion_matrix,
    f1_score,
    perplexity,
    precision,
    precision_recall_f1,
    recall,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics")
pytestmark = pytest.mark.ch14


@st.composite
def labelled(draw):
    """(y_true, y_pred, labels or None): N in 1..30, classes 0..K-1, some of them absent."""
    n = draw(st.integers(1, 30))
    k = draw(st.integers(1, 5))
    y_true = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    y_pred = draw(st.lists(st.integers(0, k), min_size=n, max_size=n))
    labels = draw(st.none() | st.lists(st.integers(0, 6), min_size=1, max_size=5, unique=True))
    return np.array(y_true), np.array(y_pred), labels


def outcome(fn):
    """The value, or the ValueError's type, so errors are compared too."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn()
        except ValueError:
            return ValueError


def assert_same(ours, reference, single=False):
    if reference is ValueError or ours is ValueError:
        assert ours is reference
        return
    ours, reference = ([ours], [reference]) if single else (ours, reference)
    for a, b in zip(ours, reference, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, equal_nan=True)


@settings(max_examples=120, deadline=None)
@given(labelled(), st.sampled_from(["binary", "micro", "macro", "weighted", None]),
       st.sampled_from([0.0, 1.0, math.nan]))
def test_precision_recall_f1_equal_sklearn(data, average, zero_division):
    y_true, y_pred, labels = data
    ours = outcome(lambda: precision_recall_f1(y_true, y_pred, average, labels,
                                               zero_division=zero_division))
    reference = outcome(lambda: sklearn_metrics.precision_recall_fscore_support(
        y_true, y_pred, average=average, labels=labels, zero_division=zero_division)[:3])
    assert_same(ours, reference)


@settings(max_examples=80, deadline=None)
@given(labelled())
def test_accuracy_confusion_matrix_and_the_single_metrics_equal_sklearn(data):
    y_true, y_pred, labels = data
    assert accuracy(y_true, y_pred) == sklearn_metrics.accuracy_score(y_true, y_pred)
    assert_same(outcome(lambda: confusion_matrix(y_true, y_pred, labels)),
                outcome(lambda: sklearn_metrics.confusion_matrix(y_true, y_pred, labels=labels)),
                single=True)
    for ours, theirs in [(precision, sklearn_metrics.precision_score),
                         (recall, sklearn_metrics.recall_score),
                         (f1_score, sklearn_metrics.f1_score)]:
        assert_same(outcome(lambda: ours(y_true, y_pred, "macro", labels)),
                    outcome(lambda: theirs(y_true, y_pred, average="macro", labels=labels,
                                           zero_division=0.0)), single=True)


def test_a_worked_example_by_hand():
    """3 classes; C = [[2, 1, 0], [0, 1, 1], [0, 0, 1]] (rows true, columns predicted)."""
    y_true = ["cat", "cat", "cat", "dog", "dog", "emu"]
    y_pred = ["cat", "cat", "dog", "dog", "emu", "emu"]
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred),
                                  [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    p, r, f = precision_recall_f1(y_true, y_pred, average=None)
    np.testing.assert_allclose(p, [1, 1 / 2, 1 / 2])  # TP / column sums
    np.testing.assert_allclose(r, [2 / 3, 1 / 2, 1])  # TP / row sums
    np.testing.assert_allclose(f, [4 / 5, 1 / 2, 2 / 3])  # 2 TP / (row + column)
    assert accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    assert precision(y_true, y_pred, "micro") == pytest.approx(4 / 6)  # micro = accuracy
    assert f1_score(y_true, y_pred, "macro") == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)
    weighted = (3 * 4 / 5 + 2 * 1 / 2 + 1 * 2 / 3) / 6
    assert f1_score(y_true, y_pred, "weighted") == pytest.approx(weighted)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, labels=["emu", "cat"]),
                                  [[1, 0], [0, 2]])


def test_zero_division_conventions():
    """A class never predicted: precision is zero_division; a class that never occurs: recall
    is; F1 only where the class is neither true nor predicted."""
    y_true, y_pred = [0, 0, 1], [0, 0, 0]
    p, r, f = precision_recall_f1(y_true, y_pred, average=None, zero_division=math.nan)
    assert np.isnan(p[1]) and r[1] == 0 and f[1] == 0
    assert precision(y_true, y_pred, "macro", zero_division=math.nan) == pytest.approx(2 / 3)
    assert precision(y_true, y_pred, "macro", zero_division=1.0) == pytest.approx(5 / 6)
    assert recall([0, 0], [0, 0]) == 0.0  # binary, pos_label 1 absent everywhere: 0 / 0


def test_perplexity():
    assert perplexity(math.log(70)) == pytest.approx(70)  # uniform over 70 characters
    nll = np.array([0.5, 1.0, 2.0])
    assert perplexity(nll) == pytest.approx(math.exp(nll.mean()))
    with pytest.raises(ValueError, match="finite"):
        perplexity([1.0, math.inf])
    with pytest.raises(ValueError, match="finite"):
        perplexity([])


@pytest.mark.parametrize("call, message", [
    (lambda: accuracy([0, 1], [0]), "one prediction per example"),
    (lambda: accuracy([], []), "at least one example"),
    (lambda: accuracy([[0, 1]], [[0, 1]]), r"1-D array .* shape \(1, 2\)"),
    (lambda: accuracy([0.5, 1.0], [0, 1]), "non-integer floats"),
    (lambda: f1_score([0, 1, 2], [0, 1, 2]), "needs at most 2 labels"),
    (lambda: f1_score([0, 2], [0, 2]), "pos_label=1 is not one of the labels"),
    (lambda: f1_score([0, 1], [0, 1], average="mean"), "average must be one of"),
    (lambda: f1_score([0, 1], [0, 1], zero_division=2), "zero_division must be"),
    (lambda: confusion_matrix([0, 1], [0, 1], labels=[5]), "at least one must be"),
    (lambda: confusion_matrix([0, 1], [0, 1], labels=[0, 0]), "distinct"),
])
def test_errors_name_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()
