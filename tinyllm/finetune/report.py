"""What a fine-tuning run reports: the classification metrics and the confusion matrix (ch. 14).

:func:`classification_metrics` is the Trainer's default ``compute_metrics``: accuracy (eq. 14.1),
macro-F1 (eq. 14.4) and each class's precision, recall and F1 (eqs. 14.2-14.3), from
``tinyllm.metrics.classification``, with the confusion matrix C[i, j] = #{true i, predicted j}.
:func:`plot_confusion` draws it as a PNG (matplotlib's bare ``Figure``, no display needed).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from tinyllm import runs
from tinyllm.metrics.classification import accuracy, confusion_matrix, precision_recall_f1


def log_softmax_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy -log softmax(z_b)[y_b] of host logits (N, K), in float64 (eq. 3.8)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)  # (N, K)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # (N, K)
    return float(-log_p[np.arange(len(labels)), labels].mean())


def classification_metrics(logits: np.ndarray, labels: np.ndarray,
                           label_names: Sequence[str]) -> dict:
    """accuracy, macro_f1, precision_<name>, recall_<name>, f1_<name> and the confusion matrix
    (a list of rows, true class by predicted class) of argmax predictions."""
    labels = np.asarray(labels)
    predicted = np.asarray(logits).argmax(axis=1)  # (N,)
    classes = np.arange(len(label_names))
    p, r, f = precision_recall_f1(labels, predicted, average=None, labels=classes)  # (K,) each
    metrics = {"accuracy": accuracy(labels, predicted),
               "macro_f1": float(np.mean(f)),
               "loss": log_softmax_loss(logits, labels)}
    for k, name in enumerate(label_names):
        metrics.update({f"precision_{name}": float(p[k]), f"recall_{name}": float(r[k]),
                        f"f1_{name}": float(f[k])})
    metrics["confusion"] = confusion_matrix(labels, predicted, labels=classes).tolist()
    return metrics


def plot_confusion(confusion, label_names: Sequence[str], path: Path, title: str = "") -> None:
    """The confusion matrix as a PNG: rows the true class, columns the predicted one, counts in
    the cells. Written atomically."""
    from matplotlib.figure import Figure

    counts = np.asarray(confusion)  # (K, K)
    fig = Figure(figsize=(4.8, 4.2))
    ax = fig.subplots()
    ax.imshow(counts, cmap="Blues")
    for (i, j), n in np.ndenumerate(counts):  # K^2 labels: a handful
        ax.text(j, i, str(n), ha="center", va="center",
                color="white" if n > counts.max() / 2 else "black")
    ticks = np.arange(len(label_names))
    ax.set_xticks(ticks, labels=list(label_names))
    ax.set_yticks(ticks, labels=list(label_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    runs.write_bytes(path, png.getvalue())
