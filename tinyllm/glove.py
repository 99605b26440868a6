"""GloVe word vectors (Pennington, Socher & Manning 2014): weighted least squares on co-occurrences.

GloVe fits the logarithm of the co-occurrence counts X with dot products. X_ij adds 1/d for every
time word j appears d <= window positions before or after word i (paper, sec. 4.2: "word pairs
that are d words apart contribute 1/d to the total count"). Two tables of vectors w (as a word)
and w~ (as a context), and two of biases b and b~, minimise

    J = sum_{i,j: X_ij > 0} f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2     (paper, eq. 8)
    f(x) = (x / x_max)^alpha if x < x_max, else 1;  x_max = 100, alpha = 3/4     (paper, eq. 9)

whose gradient, with the residual e_ij = w_i . w~_j + b_i + b~_j - log X_ij, is

    dJ/dw_i = sum_j 2 f(X_ij) e_ij w~_j,   dJ/db_i = sum_j 2 f(X_ij) e_ij      (and so for w~, b~)

Here autograd derives it: the four tables are ``nn.Embedding`` lookups, so their gradients are
the scatter-adds of chapter 04. Training is AdaGrad at lr 0.05 (paper, sec. 4.2) over shuffled
mini-batches of the non-zero X_ij; the word vectors are W + W~ (sec. 4.2). Words are compared by
cosine similarity; an analogy "a - b + c" is the word nearest to u_a - u_b + u_c (unit vectors).

    rows, cols, values = cooccurrence(ids, vocab_size=V, window=10)
    model, losses = train_glove(rows, cols, values, V, d_model=50, epochs=10)
    vectors = model.vectors(); nearest(vectors, index["king"])
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from tinyllm.creation import default_rng
from tinyllm.nn.embedding import Embedding
from tinyllm.nn.module import Module
from tinyllm.optim.adagrad import Adagrad
from tinyllm.tensor import DEFAULT_DTYPE, Tensor

X_MAX, ALPHA_GLOVE = 100.0, 0.75  # the weighting function's cut-off and power (paper, eq. 9)


def word_ids(words: Sequence[str], vocab_size: int) -> tuple[np.ndarray, list[str]]:
    """Ids of ``words`` in a vocabulary of its ``vocab_size`` most frequent words (-1: others).

    Returns (ids (N,), vocabulary most frequent first, ties alphabetical). Counted with one
    ``np.unique``; out-of-vocabulary words keep their place, so distances stay those of the text.
    """
    distinct, inverse, counts = np.unique(np.asarray(words, dtype=str), return_inverse=True,
                                          return_counts=True)
    order = np.argsort(-counts, kind="stable")[:vocab_size]  # most frequent first
    new_id = np.full(distinct.size, -1, dtype=np.int64)
    new_id[order] = np.arange(order.size)
    return new_id[inverse.reshape(-1)], [str(distinct[i]) for i in order]


def cooccurrence(ids, vocab_size: int, window: int = 10,
                 symmetric: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sparse co-occurrence matrix X as (rows, cols, values), sorted by (row, col).

    X[i, j] = sum over pairs (word i at position t, word j at t + d or, if ``symmetric``, t - d),
    1 <= d <= window, of 1/d. Ids of -1 (out of vocabulary) pair with nothing but keep their
    position. One pass per distance d, each over every position at once.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if window < 1:
        raise ValueError(f"the co-occurrence window must be >= 1 word, got {window}")
    if ids.size and ids.max() >= vocab_size:
        raise ValueError(f"word id {int(ids.max())} is outside the vocabulary 0..{vocab_size - 1}")
    codes, weights = [], []
    for d in range(1, window + 1):
        left, right = ids[:-d], ids[d:]  # pairs d words apart, (N - d,) each
        keep = (left >= 0) & (right >= 0)
        left, right = left[keep], right[keep]
        codes.append(left * vocab_size + right)  # word i = left, context j = right (after it)
        if symmetric:
            codes.append(right * vocab_size + left)  # and the context before
        weights += [np.full(left.size, 1.0 / d)] * (2 if symmetric else 1)
    codes, weights = np.concatenate(codes), np.concatenate(weights)
    unique, inverse = np.unique(codes, return_inverse=True)
    values = np.bincount(inverse.reshape(-1), weights=weights, minlength=unique.size)
    return unique // vocab_size, unique % vocab_size, values


def weighting(x, x_max: float = X_MAX, alpha: float = ALPHA_GLOVE) -> np.ndarray:
    """f(x) = (x / x_max)^alpha for x < x_max, else 1 (paper, eq. 9): rare pairs count less."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x < x_max, (x / x_max) ** alpha, 1.0)


class GloVe(Module):
    """Word vectors w, context vectors w~ (V, C) and biases b, b~ (V,), as four Embedding tables.

    Initialised as in the reference code: uniform in [-0.5, 0.5) / C.
    """

    def __init__(self, vocab_size: int, d_model: int, rng: np.random.Generator | None = None,
                 dtype=DEFAULT_DTYPE):
        rng = rng or default_rng()
        self.vocab_size, self.d_model = vocab_size, d_model
        self.word = Embedding(vocab_size, d_model, rng=rng, dtype=dtype)  # w, (V, C)
        self.context = Embedding(vocab_size, d_model, rng=rng, dtype=dtype)  # w~, (V, C)
        self.word_bias = Embedding(vocab_size, 1, rng=rng, dtype=dtype)  # b, (V, 1)
        self.context_bias = Embedding(vocab_size, 1, rng=rng, dtype=dtype)  # b~, (V, 1)
        for table in (self.word, self.context, self.word_bias, self.context_bias):
            table.weight.data = ((rng.random(table.weight.shape) - 0.5) / d_model).astype(dtype)

    def forward(self, rows, cols) -> Tensor:
        """w_i . w~_j + b_i + b~_j for each pair (rows[n], cols[n]), (N,)."""
        N = len(rows)
        dot = (self.word(rows) * self.context(cols)).sum(axis=-1)  # (N, C) * (N, C) -> (N,)
        return dot + self.word_bias(rows).reshape(N) + self.context_bias(cols).reshape(N)  # (N,)

    def objective(self, rows, cols, values, x_max: float = X_MAX,
                  alpha: float = ALPHA_GLOVE) -> Tensor:
        """J = sum_n f(X_n) (w_i . w~_j + b_i + b~_j - log X_n)^2 over the given entries (eq. 8)."""
        dtype = self.word.weight.dtype
        log_x = np.log(values).astype(dtype)  # (N,)
        f = weighting(values, x_max, alpha).astype(dtype)  # (N,)
        residual = self(rows, cols) - log_x  # e, (N,)
        return (residual * residual * f).sum()

    def vectors(self) -> np.ndarray:
        """The word vectors W + W~ (paper, sec. 4.2), (V, C)."""
        return self.word.weight.numpy() + self.context.weight.numpy()


def train_glove(rows, cols, values, vocab_size: int, d_model: int = 50, epochs: int = 10,
                batch_size: int = 4096, lr: float = 0.05, seed: int = 0, x_max: float = X_MAX,
                alpha: float = ALPHA_GLOVE,
                log: Callable[[str], None] | None = None) -> tuple[GloVe, list[float]]:
    """Fit GloVe by AdaGrad (lr 0.05, G starting at 1 as in the reference code) over shuffled
    mini-batches of the non-zero entries. Returns the model and J / (number of entries) per epoch.
    """
    rng = np.random.default_rng(seed)
    model = GloVe(vocab_size, d_model, rng=rng)
    optimizer = Adagrad(model.parameters(), lr=lr, initial_accumulator_value=1.0)
    rows, cols = np.asarray(rows), np.asarray(cols)
    values = np.asarray(values, dtype=np.float64)
    losses = []
    for epoch in range(epochs):
        order, total = rng.permutation(values.size), 0.0
        for start in range(0, values.size, batch_size):
            batch = order[start:start + batch_size]  # (N,) entries of X
            loss = model.objective(rows[batch], cols[batch], values[batch], x_max, alpha)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        losses.append(total / values.size)
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs}: J per entry {losses[-1]:.4f}")
    return model, losses


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)  # (V, C)


def nearest(vectors: np.ndarray, query, k: int = 5,
            exclude: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` words most cosine-similar to ``query`` (a word id or a (C,) vector).

    cos(a, b) = a . b / (|a| |b|); a word id excludes itself. Returns (ids (k,), cosines (k,)).
    """
    unit = _unit(vectors)  # (V, C)
    if np.ndim(query) == 0:
        exclude, query = tuple(exclude) + (int(query),), vectors[int(query)]
    similarity = unit @ (query / max(np.linalg.norm(query), 1e-12))  # (V,)
    similarity[list(exclude)] = -np.inf
    best = np.argsort(-similarity, kind="stable")[:k]
    return best, similarity[best]


def analogy(vectors: np.ndarray, a: int, b: int, c: int,
            k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """"a - b + c": the words nearest to u_a - u_b + u_c, u the unit vectors, other than a, b, c.

    king - man + woman ~ queen is ``analogy(vectors, king, man, woman)``.
    """
    unit = _unit(vectors)
    return nearest(vectors, unit[a] - unit[b] + unit[c], k, exclude=(a, b, c))
