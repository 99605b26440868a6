"""Reference solutions of exercises/14_finetuning.py. Try the exercises first."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from tinyllm.backend import get_array_module
from tinyllm.finetune.bow import WORD
from tinyllm.metrics.classification import AVERAGES, _check_pair, _labels_1d


def confusion_matrix(y_true, y_pred, labels=None):
    """C[i, j] = #{true label i, predicted label j} (section 14.3)."""
    y_true, y_pred = _check_pair(y_true, y_pred)
    if labels is None:
        labels = np.union1d(y_true, y_pred)  # (K,) sorted
    else:
        labels = _labels_1d(labels, "labels")
        if len(labels) == 0 or len(np.unique(labels)) != len(labels):
            raise ValueError(f"labels must be distinct and not empty, got {labels.tolist()}")
        if not np.isin(y_true, labels).any():
            raise ValueError("no label of y_true is among labels: at least one must be")
    row_of = {label: k for k, label in enumerate(labels.tolist())}
    C = np.zeros((len(labels), len(labels)), dtype=np.int64)  # (K, K)
    for t, p in zip(y_true.tolist(), y_pred.tolist()):
        if t in row_of and p in row_of:  # examples outside ``labels`` are left out
            C[row_of[t], row_of[p]] += 1
    return C


def _divide(numerator, denominator, zero_division):
    """numerator / denominator elementwise, ``zero_division`` where the denominator is 0."""
    safe = np.where(denominator == 0, 1, denominator)
    return np.where(denominator == 0, zero_division, numerator / safe)


def _mean(scores, weights):
    """The mean of the scores that are not nan, weighted by ``weights`` unless they sum to 0."""
    kept = ~np.isnan(scores)
    if not kept.any():
        return math.nan
    if weights is None or weights[kept].sum() == 0:
        return float(scores[kept].mean())
    return float(np.average(scores[kept], weights=weights[kept]))


def precision_recall_f1(y_true, y_pred, average="binary", labels=None, pos_label=1,
                        zero_division=0.0):
    """Per-class TP / pred, TP / true and 2 TP / (true + pred), then averaged (eqs. 14.2-14.4)."""
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {list(AVERAGES)}, got {average!r}")
    if not (zero_division in (0.0, 1.0) or (isinstance(zero_division, float)
                                            and math.isnan(zero_division))):
        raise ValueError(f"zero_division must be 0.0, 1.0 or nan, got {zero_division!r}")
    y_true, y_pred = _check_pair(y_true, y_pred)
    present = np.union1d(y_true, y_pred)
    if average == "binary":
        if len(present) > 2:
            raise ValueError(f"average='binary' needs at most 2 labels, found {len(present)}")
        if len(present) == 2 and pos_label not in present.tolist():
            raise ValueError(f"pos_label={pos_label!r} is not one of {present.tolist()}")
        labels = [pos_label]
    elif labels is None:
        labels = present.tolist()
    else:
        labels = _labels_1d(labels, "labels").tolist()
    true_count = Counter(y_true.tolist())
    pred_count = Counter(y_pred.tolist())
    hit_count = Counter(t for t, p in zip(y_true.tolist(), y_pred.tolist()) if t == p)
    tp = np.array([hit_count[k] for k in labels], dtype=np.int64)  # (K,)
    true = np.array([true_count[k] for k in labels], dtype=np.int64)  # (K,)
    pred = np.array([pred_count[k] for k in labels], dtype=np.int64)  # (K,)
    if average == "micro":  # pool the counts before dividing
        tp, true, pred = tp.sum(keepdims=True), true.sum(keepdims=True), pred.sum(keepdims=True)
    precision = _divide(tp, pred, zero_division)  # (K,)  eq. 14.2
    recall = _divide(tp, true, zero_division)  # (K,)  eq. 14.2
    f1 = _divide(2 * tp, true + pred, zero_division)  # (K,)  eq. 14.3
    if average is None:
        return precision, recall, f1
    weights = true if average == "weighted" else None
    return _mean(precision, weights), _mean(recall, weights), _mean(f1, weights)  # eq. 14.4


def pool(self, h, attention_mask):
    """The pooler's tanh(h_0 W_p + b_p), h_0 itself, or the masked mean (eq. 14.6)."""
    if self.pooling == "pooler":
        return self.bert.pooler(h[:, 0, :]).tanh()  # (B, T, C) -> (B, C)
    if self.pooling == "cls":
        return h[:, 0, :]  # (B, T, C) -> (B, C)
    xp = get_array_module(h.data)
    m = xp.asarray(attention_mask).astype(h.dtype)[:, :, None]  # (B, T, 1)
    return (h * m).sum(axis=1) / xp.maximum(m.sum(axis=1), 1.0)  # (B, C)


def bag_of_words_fit(self, texts):
    """The vocabulary (df >= min_df, the max_features most frequent) and its idf (eq. 14.7)."""
    words_of = [WORD.findall(text.lower()) for text in texts]
    df = Counter(word for words in words_of for word in set(words))  # texts holding each word
    total = Counter(word for words in words_of for word in words)  # occurrences of each word
    kept = sorted(word for word in df if df[word] >= self.min_df)
    kept = sorted(kept, key=lambda word: -total[word])[:self.max_features]  # stable: ties a-z
    if not kept:
        raise ValueError(f"no word occurs in {self.min_df} or more training texts: lower "
                         "min_df, or give more text")
    self.vocabulary = np.array(sorted(kept), dtype=str)  # (V,)
    df_kept = np.array([df[word] for word in self.vocabulary], dtype=np.float64)  # (V,)
    self.idf = (np.log((1 + len(texts)) / (1 + df_kept)) + 1).astype(np.float32)  # (V,)
    return self


def warmup_linear(step, max_lr, warmup_steps, total_steps):
    """eq. 14.8: a linear warm-up, then a linear decay that reaches 0 at total_steps."""
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    return max_lr * max(0.0, (total_steps - step) / max(total_steps - warmup_steps, 1))
