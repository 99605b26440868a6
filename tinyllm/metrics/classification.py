"""Classification metrics and perplexity, written from scratch (chapter 14).

With true labels y and predictions y_hat over N examples, and for each class k

    TP_k = #{y = k, y_hat = k},   predicted_k = #{y_hat = k},   true_k = #{y = k}

(the column and row sums of the confusion matrix C, C[i, j] = #{y = label i, y_hat = label j}):

    accuracy    = #{y = y_hat} / N                                                  (eq. 14.1)
    precision_k = TP_k / predicted_k,   recall_k = TP_k / true_k                    (eq. 14.2)
    F1_k        = 2 precision_k recall_k / (precision_k + recall_k)
                = 2 TP_k / (true_k + predicted_k)                                   (eq. 14.3)

averaged over the classes (eq. 14.4) as ``average`` says: "binary" (the class ``pos_label``
only), "micro" (sum TP, predicted and true over the classes first: for single-label data,
micro precision = micro recall = accuracy), "macro" (the unweighted mean over classes),
"weighted" (the mean weighted by true_k), or None (one value per class).

A ratio whose denominator is 0 (precision of a class never predicted, recall of a class that
never occurs, F1 of a class that is neither) is ``zero_division``: 0.0 (the default; what
scikit-learn's default "warn" gives, without the warning), 1.0, or nan, which the averages then
skip. These are scikit-learn's definitions and conventions, label for label
(tests/test_14_classification_metrics.py compares on random labels); the library never imports
it. Everything is whole-array NumPy: one ``bincount`` builds the confusion matrix.

    perplexity = exp(mean negative log-likelihood per token, in nats)               (eq. 14.5)
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

AVERAGES = ("binary", "micro", "macro", "weighted", None)


def _labels_1d(y, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} expected a 1-D array of N labels, got shape {y.shape}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
        raise ValueError(f"{name} holds non-integer floats; labels are integers or strings "
                         "(for probabilities, take argmax first)")
    return y


def _check_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _labels_1d(y_true, "y_true"), _labels_1d(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}: one "
                         "prediction per example")
    if len(y_true) == 0:
        raise ValueError("y_true and y_pred are empty: the metrics need at least one example")
    return y_true, y_pred


def _index_of(y: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Position of each y in ``labels`` (N,), or -1 where y is not one of them."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]  # (K,)
    at = np.clip(np.searchsorted(sorted_labels, y), 0, len(labels) - 1)  # (N,)
    return np.where(sorted_labels[at] == y, order[at], -1)


def accuracy(y_true, y_pred) -> float:
    """The fraction of examples predicted right (eq. 14.1)."""
    y_true, y_pred = _check_pair(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true, y_pred, labels: Sequence | None = None) -> np.ndarray:
    """C (K, K) int64: C[i, j] = number of examples of true label i predicted as label j.

    ``labels`` (K,) fixes the rows' and columns' order (default: the sorted union of the labels
    seen); examples whose true or predicted label is not among them are left out.
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    if labels is None:
        labels = np.union1d(y_true, y_pred)  # (K,), sorted
    else:
        labels = _labels_1d(labels, "labels")
        if len(labels) == 0 or len(np.unique(labels)) != len(labels):
            raise ValueError(f"labels must be distinct and not empty, got {labels.tolist()}")
        if not np.isin(y_true, labels).any():
            raise ValueError("no label of y_true is among labels: at least one must be")
    K = len(labels)
    t, p = _index_of(y_true, labels), _index_of(y_pred, labels)  # (N,), (N,)
    kept = (t >= 0) & (p >= 0)
    return np.bincount(t[kept] * K + p[kept], minlength=K * K).reshape(K, K)  # (K, K)


def _divide(numerator: np.ndarray, denominator: np.ndarray, zero_division: float) -> np.ndarray:
    """numerator / denominator, with ``zero_division`` where the denominator is 0."""
    safe = np.where(denominator == 0, 1, denominator)
    return np.where(denominator == 0, zero_division, numerator / safe)


def _average(scores: np.ndarray, weights: np.ndarray | None) -> float:
    """Mean of the scores that are not nan (weighted if weights are given and not all 0)."""
    kept = ~np.isnan(scores)
    if not kept.any():
        return math.nan
    if weights is None or weights[kept].sum() == 0:
        return float(scores[kept].mean())
    return float(np.average(scores[kept], weights=weights[kept]))


def precision_recall_f1(y_true, y_pred, average: str | None = "binary",
                        labels: Sequence | None = None, pos_label=1,
                        zero_division: float = 0.0):
    """(precision, recall, F1) (eqs. 14.2-14.4): floats, or (K,) arrays for ``average=None``.

    ``labels`` chooses the classes averaged over (default: the sorted labels seen; a class that
    never occurs counts as zero-division). ``average="binary"`` needs at most two labels in
    y_true and y_pred together and scores ``pos_label`` alone.
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {list(AVERAGES)}, got {average!r}")
    if not (zero_division in (0.0, 1.0) or (isinstance(zero_division, float)
                                            and math.isnan(zero_division))):
        raise ValueError(f"zero_division must be 0.0, 1.0 or nan, got {zero_division!r}")
    y_true, y_pred = _check_pair(y_true, y_pred)
    present = np.union1d(y_true, y_pred)
    if average == "binary":
        if len(present) > 2:
            raise ValueError(f"average='binary' needs at most 2 labels, found {len(present)} "
                             f"({present.tolist()[:5]}...); use 'micro', 'macro' or "
                             "'weighted'")
        if pos_label not in present.tolist() and len(present) == 2:
            raise ValueError(f"pos_label={pos_label!r} is not one of the labels "
                             f"{present.tolist()}; pass pos_label=<the positive class>")
        labels = np.asarray([pos_label])
    else:
        labels = present if labels is None else _labels_1d(labels, "labels")
    t, p = _index_of(y_true, labels), _index_of(y_pred, labels)  # (N,), (N,)
    K = len(labels)
    true_k = np.bincount(t[t >= 0], minlength=K)  # (K,)
    predicted_k = np.bincount(p[p >= 0], minlength=K)  # (K,)
    tp_k = np.bincount(t[(t >= 0) & (t == p)], minlength=K)  # (K,)
    if average == "micro":
        tp_k, true_k, predicted_k = tp_k.sum(keepdims=True), true_k.sum(keepdims=True), \
            predicted_k.sum(keepdims=True)  # (1,) each
    precision = _divide(tp_k, predicted_k, zero_division)  # (K,)
    recall = _divide(tp_k, true_k, zero_division)  # (K,)
    f1 = _divide(2 * tp_k, true_k + predicted_k, zero_division)  # (K,), eq. 14.3
    if average is None:
        return precision, recall, f1
    weights = true_k if average == "weighted" else None
    return _average(precision, weights), _average(recall, weights), _average(f1, weights)


def precision(y_true, y_pred, average: str | None = "binary", labels: Sequence | None = None,
              pos_label=1, zero_division: float = 0.0):
    """TP / predicted (eq. 14.2), averaged as ``average`` says; see :func:`precision_recall_f1`."""
    return precision_recall_f1(y_true, y_pred, average, labels, pos_label, zero_division)[0]


def recall(y_true, y_pred, average: str | None = "binary", labels: Sequence | None = None,
           pos_label=1, zero_division: float = 0.0):
    """TP / true (eq. 14.2), averaged as ``average`` says; see :func:`precision_recall_f1`."""
    return precision_recall_f1(y_true, y_pred, average, labels, pos_label, zero_division)[1]


def f1_score(y_true, y_pred, average: str | None = "binary", labels: Sequence | None = None,
             pos_label=1, zero_division: float = 0.0):
    """2 TP / (true + predicted) (eq. 14.3), averaged; see :func:`precision_recall_f1`."""
    return precision_recall_f1(y_true, y_pred, average, labels, pos_label, zero_division)[2]


def perplexity(nll) -> float:
    """exp(mean negative log-likelihood) (eq. 14.5): ``nll`` is the mean loss in nats (a number,
    e.g. a cross-entropy), or an array of per-token losses to average first. A uniform guess
    over V tokens has nll = log V and perplexity V."""
    values = np.asarray(nll, dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"perplexity needs finite negative log-likelihoods, got "
                         f"{values.size} values{'' if values.size == 0 else ' with inf or nan'}")
    return float(np.exp(values.mean()))
