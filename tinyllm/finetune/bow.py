"""The baseline without pretraining: tf-idf bag of words and logistic regression (chapter 14).

Words are runs of letters and apostrophes, lower-cased. With the training texts' vocabulary (the
``max_features`` most frequent words of those in at least ``min_df`` texts), document frequencies
df_j and N training documents, a text's features are

    x_j = count_j * idf_j,   idf_j = ln((1 + N) / (1 + df_j)) + 1,   x <- x / |x|    (eq. 14.7)

(scikit-learn's ``TfidfVectorizer`` defaults: smoothed idf, L2-normalised rows). Logistic
regression is one Linear layer on them, softmax(x W + b), trained with cross-entropy by the same
Trainer, optimizer and schedule as BERT. Every step is whole-array NumPy: ``np.unique`` builds the
vocabulary, ``np.searchsorted`` finds the words, ``np.add.at`` counts them. The rows stay sparse
(CSR: ``indptr``, ``indices``, ``values``) and a batch becomes dense (B, V) only when it is asked
for.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from tinyllm.backend import get_array_module
from tinyllm.creation import default_rng
from tinyllm.finetune.data import _check_labels
from tinyllm.nn import Linear, Module
from tinyllm.nn.losses import cross_entropy
from tinyllm.tensor import Tensor

WORD = re.compile(r"[a-z']+")


def _words(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(words, document index) of every word of every text, as two flat arrays (n,)."""
    lists = [WORD.findall(text.lower()) for text in texts]
    flat = [word for ws in lists for word in ws]  # the tokenizer's one pass over the words
    words = np.array(flat, dtype=str) if flat else np.array([], dtype=str)  # (n,)
    docs = np.repeat(np.arange(len(texts)), [len(ws) for ws in lists])  # (n,)
    return words, docs


class SparseRows:
    """N rows of V columns stored as CSR: row r holds ``values[indptr[r]:indptr[r + 1]]`` at the
    columns ``indices[...]``."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, width: int):
        self.indptr, self.indices, self.values, self.width = indptr, indices, values, width

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def dense(self, rows) -> np.ndarray:
        """The rows ``rows`` as a dense float32 array (B, V)."""
        rows = np.asarray(rows, dtype=np.int64)  # (B,)
        starts, stops = self.indptr[rows], self.indptr[rows + 1]  # (B,) each
        counts = stops - starts
        which = np.repeat(np.arange(len(rows)), counts)  # (n,) batch row of each entry
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        entries = np.repeat(starts, counts) + offsets  # (n,) positions in indices/values
        out = np.zeros((len(rows), self.width), dtype=np.float32)  # (B, V)
        out[which, self.indices[entries]] = self.values[entries]
        return out


class BagOfWords:
    """tf-idf features (eq. 14.7): ``fit`` on the training texts, then ``transform`` any."""

    def __init__(self, max_features: int = 20000, min_df: int = 2):
        if max_features < 1 or min_df < 1:
            raise ValueError(f"max_features and min_df must be positive, got {max_features}, "
                             f"{min_df}")
        self.max_features, self.min_df = max_features, min_df
        self.vocabulary = np.array([], dtype=str)  # (V,) sorted
        self.idf = np.array([], dtype=np.float32)  # (V,)

    def fit(self, texts: Sequence[str]) -> BagOfWords:
        words, docs = _words(texts)
        vocab, word_ids = np.unique(words, return_inverse=True)  # (all words,), (n,)
        cells = np.unique(word_ids * len(texts) + docs)  # one per (word, document) pair
        df = np.bincount(cells // len(texts), minlength=len(vocab))  # documents holding each
        kept = np.flatnonzero(df >= self.min_df)
        total = np.bincount(word_ids, minlength=len(vocab))  # (all words,) occurrences
        kept = kept[np.argsort(-total[kept], kind="stable")][:self.max_features]
        kept = np.sort(kept)  # vocab is sorted, so the kept words stay sorted
        if len(kept) == 0:
            raise ValueError(f"no word occurs in {self.min_df} or more training texts: lower "
                             "min_df, or give more text")
        self.vocabulary = vocab[kept]  # (V,)
        self.idf = (np.log((1 + len(texts)) / (1 + df[kept])) + 1).astype(np.float32)  # (V,)
        return self

    @property
    def width(self) -> int:
        return len(self.vocabulary)

    def transform(self, texts: Sequence[str]) -> SparseRows:
        """CSR rows of tf-idf values, each L2-normalised; words outside the vocabulary dropped."""
        if self.width == 0:
            raise ValueError("the bag of words has no vocabulary yet: call fit(train_texts) first")
        words, docs = _words(texts)
        column = np.minimum(np.searchsorted(self.vocabulary, words), self.width - 1)  # (n,)
        known = self.vocabulary[column] == words
        keys = docs[known] * self.width + column[known]  # (n,) one key per (document, word)
        cells, counts = np.unique(keys, return_counts=True)  # sorted by document, then word
        rows, columns = cells // self.width, cells % self.width
        values = counts * self.idf[columns]  # (nnz,)
        norms = np.zeros(len(texts), dtype=np.float64)
        np.add.at(norms, rows, values.astype(np.float64) ** 2)
        values = values / np.sqrt(norms[rows])  # each row unit length
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(texts)))])
        return SparseRows(indptr, columns, values.astype(np.float32), self.width)


class BagOfWordsDataset:
    """tf-idf rows and labels, as the Trainer wants them: ``batch(indices)`` -> "features"."""

    def __init__(self, rows: SparseRows, labels):
        self.rows, self.labels = rows, _check_labels(labels, len(rows))

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, indices) -> dict[str, np.ndarray]:
        indices = np.asarray(indices, dtype=np.int64)
        return {"features": self.rows.dense(indices), "labels": self.labels[indices]}  # (B, V)


class LogisticRegression(Module):
    """Multinomial logistic regression: logits = x W + b (B, K) on features x (B, V)."""

    def __init__(self, num_features: int, num_labels: int, rng: np.random.Generator | None = None):
        self.linear = Linear(num_features, num_labels, rng=rng or default_rng())
        self.linear.weight.data = np.zeros_like(self.linear.weight.data)  # (V, K): convex, so
        # zero is as good a start as any, and the same on every seed

    def forward(self, batch: dict) -> Tensor:
        xp = get_array_module(self.linear.weight.data)
        return self.linear(Tensor(xp.asarray(batch["features"])))  # (B, V) -> (B, K)

    def loss(self, batch: dict) -> Tensor:
        return cross_entropy(self(batch), batch["labels"])
