"""N-gram language models over token ids: add-k, Kneser-Ney, stupid backoff (issue 16).

An order-n model predicts token w from the n - 1 tokens before it, its history h. The maximum-
likelihood estimate is the relative count

    p_ML(w | h) = c(h w) / c(h .),      c(h .) = sum_w' c(h w')                            (eq. 1)

It gives zero to every n-gram the training text lacks and is undefined (0/0) after a history it
never saw; smoothing moves probability to those cases:

- add-k (Lidstone):  p(w | h) = (c(h w) + k) / (c(h .) + k V)                              (eq. 2)
- interpolated modified Kneser-Ney (Chen & Goodman 1998, eqs. 17 and 26), recursing down to the
  uniform distribution p_0(w) = 1/V:

      p_k(w | h) = max(a(h w) - D(a(h w)), 0) / a(h .) + gamma(h) p_{k-1}(w | h')           (eq. 3)
      gamma(h)   = (D1 N1(h .) + D2 N2(h .) + D3+ N3+(h .)) / a(h .)                        (eq. 4)

  where h' drops the oldest token of h, N_r(h .) counts the tokens w with a(h w) = r (r >= 3 for
  N3+), a = c at the highest order and, below it, the continuation count a(g) = N1+(. g), the
  number of distinct tokens seen before g (eq. 5). A history with a(h .) = 0 uses p_{k-1} alone.
- stupid backoff (Brants et al. 2007): S(w | h) = c(h w) / c(h .) if c(h w) > 0, else
  0.4 S(w | h'); S(w) = c(w) / N. A *score*: it does not sum to one, so exp(-mean log S) is no
  perplexity (:class:`StupidBackoff` refuses ``log_prob``).

Counts live in sorted integer arrays, one level per order k = 1..n, never a dict per n-gram: a
k-gram gets the code  row(prefix) * V + last token, where row(prefix) is the position of its first
k - 1 tokens in level k - 1 (level 0 is the empty gram, row 0). Counting is ``np.unique`` on the
codes of all positions at once; a lookup is ``np.searchsorted``; scoring a sequence runs over the
n levels, each vectorised over every position. A position with fewer than n - 1 tokens before it
(the start of a sequence) is scored with the longest history it has, by the same recursion.

    counts = NGramCounts(train_ids, vocab_size=V, order=6)
    model = KneserNey(counts, order=4)
    model.perplexity(val_ids); model.distribution([12, 7, 3]); model.generate([12], 100, seed=0)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

ALPHA_STUPID_BACKOFF = 0.4  # Brants et al. 2007: the back-off factor they used
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # KenLM's --discount_fallback, when eq. 26 cannot be used


def _as_ids(ids, vocab_size: int, name: str = "token ids") -> np.ndarray:
    """``ids`` as a 1-D int64 array (T,), checked to lie in [0, vocab_size)."""
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of token ids (T,), got shape "
                         f"{ids.shape}; flatten it with ids.reshape(-1)")
    if ids.size == 0:
        return ids.astype(np.int64)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"{name}: token ids must be integers, got dtype {ids.dtype}; convert them "
                        "with np.asarray(ids, dtype=np.int64)")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{name}: token id {low if low < 0 else high} is outside the vocabulary "
                         f"0..{vocab_size - 1}; count with vocab_size=tokenizer.vocab_size")
    return ids.astype(np.int64)


def _take(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """values[rows], and 0 where rows == -1 (an n-gram or history never seen)."""
    if values.size == 0:
        return np.zeros(rows.shape, dtype=values.dtype)
    return np.where(rows >= 0, values[np.maximum(rows, 0)], 0)


class NGramCounts:
    """Every k-gram (k = 1..order) of a token stream and its count, in sorted integer arrays.

    Level k holds ``codes[k]`` (sorted, unique: row(prefix) * V + last token), ``counts[k]`` (c of
    each), ``prefix[k]`` (the row of its first k - 1 tokens in level k - 1) and, for k < order,
    ``continuation[k]`` = N1+(. g), the number of distinct tokens seen right before it (eq. 5).
    Level 0 is the empty gram: one row, counted N times.
    """

    def __init__(self, ids, vocab_size: int, order: int):
        if order < 1 or vocab_size < 1:
            raise ValueError(f"NGramCounts needs order >= 1 and vocab_size >= 1, got order={order}"
                             f", vocab_size={vocab_size}")
        ids = _as_ids(ids, vocab_size)
        self.order, self.vocab_size, V = order, vocab_size, vocab_size
        self.codes = [np.zeros(1, dtype=np.int64)]
        self.counts = [np.array([ids.size], dtype=np.int64)]
        self.prefix = [np.zeros(1, dtype=np.int64)]
        self.continuation: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
        starts = np.zeros(ids.size, dtype=np.int64)  # row of the level-0 gram at each start, (N,)
        for k in range(1, order + 1):
            n_k = max(ids.size - k + 1, 0)  # how many k-grams start in the stream
            code = starts[:n_k] * V + ids[k - 1:k - 1 + n_k]  # (N - k + 1,)
            codes, first, inverse, counts = np.unique(code, return_index=True,
                                                      return_inverse=True, return_counts=True)
            if k >= 2:  # the suffix of the k-gram starting at j is the (k-1)-gram starting at j+1
                suffix = starts[first + 1]  # one occurrence per distinct k-gram
                self.continuation.append(np.bincount(suffix, minlength=len(self.codes[k - 1])))
            self.codes.append(codes)
            self.counts.append(counts.astype(np.int64))
            self.prefix.append(codes // V)
            starts = inverse.reshape(-1).astype(np.int64)  # row of the k-gram at each start

    def find(self, level: int, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Row in ``level`` of the gram (prefix ``rows``, last token ``tokens``); -1 where unseen.

        A prefix row of -1 (unseen history) gives -1. Vectorised: one ``np.searchsorted``.
        """
        codes = self.codes[level]
        if codes.size == 0:
            return np.full(np.shape(tokens), -1, dtype=np.int64)
        code = rows * self.vocab_size + tokens
        position = np.searchsorted(codes, code)
        clipped = np.minimum(position, codes.size - 1)
        found = (rows >= 0) & (codes[clipped] == code)
        return np.where(found, clipped, -1)

    def stream_rows(self, ids: np.ndarray) -> list[np.ndarray]:
        """rows[k][j]: the row of the k-gram ids[j : j + k] in level k (-1 if unseen), k = 0..n."""
        rows = [np.zeros(ids.size, dtype=np.int64)]
        for k in range(1, self.order + 1):
            n_k = max(ids.size - k + 1, 0)
            rows.append(self.find(k, rows[k - 1][:n_k], ids[k - 1:k - 1 + n_k]))  # (T - k + 1,)
        return rows

    def per_history(self, level: int, values: np.ndarray) -> np.ndarray:
        """Sum of ``values`` (one per gram of ``level``) over the grams of each history."""
        return np.bincount(self.prefix[level], weights=values, minlength=len(self.codes[level - 1]))


def modified_kneser_ney_discounts(n1: int, n2: int, n3: int, n4: int) -> tuple[float, float, float]:
    """Chen & Goodman (1998), eq. 26, from the counts of counts n_r (grams seen exactly r times):

    Y = n1 / (n1 + 2 n2),  D1 = 1 - 2 Y n2 / n1,  D2 = 2 - 3 Y n3 / n2,  D3+ = 3 - 4 Y n4 / n3
    """
    if min(n1, n2, n3) == 0:
        raise ValueError(f"modified Kneser-Ney discounts need n1, n2, n3 > 0, got n1={n1}, "
                         f"n2={n2}, n3={n3}: the text is too small for eq. 26; pass discounts=")
    Y = n1 / (n1 + 2 * n2)
    return 1 - 2 * Y * n2 / n1, 2 - 3 * Y * n3 / n2, 3 - 4 * Y * n4 / n3


class NGramModel(ABC):
    """The shared machinery: levels 1..order over :class:`NGramCounts`, vectorised scoring.

    A subclass defines ``_level(k, history_rows, gram_rows, lower)``: p_k for many queries at once
    from the level-(k-1) estimate ``lower``. Every method works on arrays of token ids.
    """

    def __init__(self, counts: NGramCounts, order: int | None = None):
        order = counts.order if order is None else order
        if not 1 <= order <= counts.order:
            raise ValueError(f"order {order} needs counts of at least that order (these have 1.."
                             f"{counts.order}); build NGramCounts(ids, vocab_size, order={order})")
        self.counts, self.order, self.vocab_size = counts, order, counts.vocab_size

    @abstractmethod
    def _level(self, k: int, history: np.ndarray, gram: np.ndarray,
               lower: np.ndarray) -> np.ndarray:
        """p_k(w | h) (M,) from the history rows, gram rows (-1: unseen) and p_{k-1} (M,)."""

    def _probabilities(self, history: list[np.ndarray], tokens: np.ndarray,
                       available: list[np.ndarray]) -> np.ndarray:
        """p(tokens | histories), (M,): levels 1..n, each history row (M,), -1 if unseen."""
        p = np.full(tokens.shape, 1.0 / self.vocab_size)  # level 0: uniform, (M,)
        for k in range(1, self.order + 1):
            gram = self.counts.find(k, history[k], tokens)  # (M,)
            p = np.where(available[k], self._level(k, history[k], gram, p), p)
        return p

    def _stream_queries(self, ids: np.ndarray):
        """Per level: the row of each position's (k-1)-token history, and where one exists."""
        T, rows = ids.size, self.counts.stream_rows(ids)
        history, available = [None], [None]
        for k in range(1, self.order + 1):
            pad = np.full(k - 1, -1, dtype=np.int64)  # the first k - 1 positions have no history
            history.append(np.concatenate([pad, rows[k - 1][:max(T - k + 1, 0)]])[:T])  # (T,)
            available.append(np.arange(T) >= k - 1)  # (T,)
        return history, available

    def log_prob(self, ids) -> np.ndarray:
        """ln p(ids[t] | ids[t-n+1 : t]) for every position t, (T,); vectorised over positions."""
        ids = _as_ids(ids, self.vocab_size)
        history, available = self._stream_queries(ids)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(self._probabilities(history, ids, available))

    def perplexity(self, ids) -> float:
        """exp(-mean_t ln p(ids[t] | history)): the exponentiated cross-entropy per token."""
        return float(np.exp(-self.log_prob(ids).mean()))

    def distribution(self, context: Sequence[int] = ()) -> np.ndarray:
        """p(w | context) for every token w, (V,); only the last n - 1 tokens of context count."""
        context = _as_ids(context, self.vocab_size, "context")
        context = context[max(context.size - self.order + 1, 0):]  # the last n - 1 tokens
        L, rows = context.size, self.counts.stream_rows(context)
        history, available = [None], [None]
        for k in range(1, self.order + 1):
            row = 0 if k == 1 else (rows[k - 1][L - k + 1] if L >= k - 1 else -1)
            history.append(np.full(self.vocab_size, row, dtype=np.int64))  # (V,)
            available.append(np.full(self.vocab_size, L >= k - 1))  # (V,)
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._probabilities(history, np.arange(self.vocab_size), available)

    def generate(self, context: Sequence[int], num_tokens: int, seed: int | None = None,
                 temperature: float = 1.0,
                 rng: np.random.Generator | None = None) -> list[int]:
        """Sample ``num_tokens`` ids, each from ``distribution`` (sharpened by 1/temperature)."""
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        rng = np.random.default_rng(seed) if rng is None else rng
        tokens = [int(t) for t in context]
        for _ in range(num_tokens):
            history = tokens[max(len(tokens) - self.order + 1, 0):]  # the last n - 1 tokens
            p = self.distribution(history)
            if not np.all(np.isfinite(p)) or p.sum() <= 0:
                raise ValueError(f"{type(self).__name__} has no distribution after the history "
                                 f"{history} (never seen): use a smoothed model")
            with np.errstate(divide="ignore"):
                logits = np.log(p) / temperature  # p^(1/temperature), in logs: no underflow
            p = np.exp(logits - logits.max())
            tokens.append(int(rng.choice(self.vocab_size, p=p / p.sum())))
        return tokens[len(context):]


class AddK(NGramModel):
    """Add-k (Lidstone) smoothing: p(w | h) = (c(h w) + k) / (c(h .) + k V)   (eq. 2).

    k = 1 is Laplace's add-one; as k -> 0 it tends to the maximum-likelihood estimate (eq. 1).
    """

    def __init__(self, counts: NGramCounts, k: float = 1.0, order: int | None = None):
        super().__init__(counts, order)
        if not k > 0 and type(self) is AddK:
            raise ValueError(f"add-k needs k > 0, got k={k}; k = 0 is MaximumLikelihood")
        self.k = float(k)
        self.totals = [None] + [counts.per_history(j, counts.counts[j].astype(np.float64))
                                for j in range(1, self.order + 1)]  # c(h .) per history

    def _level(self, k, history, gram, lower):
        c = _take(self.counts.counts[k], gram)  # (M,)
        total = _take(self.totals[k], history)  # (M,)
        return (c + self.k) / (total + self.k * self.vocab_size)


class MaximumLikelihood(AddK):
    """p_ML(w | h) = c(h w) / c(h .) (eq. 1); NaN after a history never seen (0/0)."""

    def __init__(self, counts: NGramCounts, order: int | None = None):
        super().__init__(counts, k=0.0, order=order)


class KneserNey(NGramModel):
    """Interpolated modified Kneser-Ney (Chen & Goodman 1998), eqs. 3-5, down to 1/V.

    ``discounts[k]`` = (D1, D2, D3+) of level k: from eq. 26 on that level's counts of counts
    (c at the top level, continuation counts below), or ``FALLBACK_DISCOUNTS`` where eq. 26 has a
    zero n_r or gives a D_r outside [0, r]; pass ``discounts=(D1, D2, D3)`` to fix them instead.
    """

    def __init__(self, counts: NGramCounts, order: int | None = None,
                 discounts: tuple[float, float, float] | None = None):
        super().__init__(counts, order)
        self.used = [None]  # a(g) per gram of level k: counts at the top, continuation below
        self.discounts: list = [None]
        self.totals, self.n_by_count = [None], [None]
        for k in range(1, self.order + 1):
            a = counts.counts[k] if k == self.order else counts.continuation[k]
            self.used.append(a)
            self.discounts.append(discounts or self.eq26_or_fallback(a))
            self.totals.append(counts.per_history(k, a.astype(np.float64)))  # a(h .)
            self.n_by_count.append(np.stack([counts.per_history(k, (a == 1) * 1.0),  # N1(h .)
                                             counts.per_history(k, (a == 2) * 1.0),  # N2(h .)
                                             counts.per_history(k, (a >= 3) * 1.0)]))  # (3, H)

    @staticmethod
    def eq26_or_fallback(a: np.ndarray) -> tuple[float, float, float]:
        n1, n2, n3, n4 = (int(np.sum(a == r)) for r in (1, 2, 3, 4))
        if min(n1, n2, n3) > 0:
            D = modified_kneser_ney_discounts(n1, n2, n3, n4)
            if all(0 < d <= r for r, d in zip((1, 2, 3), D)):  # D = 0: no mass for unseen
                return D
        return FALLBACK_DISCOUNTS

    def _level(self, k, history, gram, lower):
        a = _take(self.used[k], gram)  # (M,)
        total = _take(self.totals[k], history)  # a(h .), (M,)
        D = np.array((0.0,) + tuple(self.discounts[k]))  # D(0) = 0, D1, D2, D3+
        N = np.stack([_take(row, history) for row in self.n_by_count[k]])  # (3, M)
        gamma_total = D[1:] @ N  # gamma(h) a(h .), (M,)
        seen = total > 0
        safe = np.where(seen, total, 1.0)
        p = (np.maximum(a - D[np.minimum(a, 3)], 0.0) + gamma_total * lower) / safe
        return np.where(seen, p, lower)


class StupidBackoff(NGramModel):
    """Stupid backoff (Brants et al. 2007): S = c(h w) / c(h .) if c(h w) > 0 else alpha S(w | h').

    S is a score, not a probability: it sums to more than one over the vocabulary, so there is no
    ``log_prob`` or ``perplexity``. ``log_score`` gives ln S per position (exp(-mean) of it is a
    *pseudo*-perplexity, lower than any true one); ``distribution`` renormalises S over the
    vocabulary for sampling.
    """

    def __init__(self, counts: NGramCounts, order: int | None = None,
                 alpha: float = ALPHA_STUPID_BACKOFF):
        super().__init__(counts, order)
        self.alpha = float(alpha)
        self.totals = [None] + [counts.per_history(j, counts.counts[j].astype(np.float64))
                                for j in range(1, self.order + 1)]

    def _level(self, k, history, gram, lower):
        c = _take(self.counts.counts[k], gram)
        total = np.maximum(_take(self.totals[k], history), 1.0)  # c > 0 implies c(h .) >= 1
        return c / total if k == 1 else np.where(c > 0, c / total, self.alpha * lower)

    def log_prob(self, ids) -> np.ndarray:
        raise TypeError("stupid backoff gives scores, not probabilities (they do not sum to one), "
                        "so it has no log_prob or perplexity; use log_score(ids) and call "
                        "exp(-mean) of it a pseudo-perplexity, or a smoothed model (KneserNey)")

    def log_score(self, ids) -> np.ndarray:
        """ln S(ids[t] | history) for every position t, (T,)."""
        return NGramModel.log_prob(self, ids)

    def scores(self, context: Sequence[int] = ()) -> np.ndarray:
        """S(w | context) for every token w, (V,), not normalised."""
        return NGramModel.distribution(self, context)

    def distribution(self, context: Sequence[int] = ()) -> np.ndarray:
        """S(w | context) / sum_w' S(w' | context): the scores renormalised, for sampling."""
        s = self.scores(context)
        return s / s.sum()
