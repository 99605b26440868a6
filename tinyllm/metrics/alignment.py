"""Edit distance and longest common subsequence, for many pairs of texts at once (chapter 15).

Both fill a table over the prefixes of a reference r (rows i = 0..|r|) and a hypothesis y
(columns j = 0..|y|) and read the answer in the corner D[|r|][|y|]:

- Levenshtein (1966) distance, the fewest insertions, deletions and substitutions turning y
  into r (Wagner & Fischer 1974):
      D[i][j] = min(D[i-1][j] + 1, D[i][j-1] + 1, D[i-1][j-1] + [r_i != y_j])     (eq. 15.13)
- the longest common subsequence (Lin 2004, ROUGE-L):
      L[i][j] = max(L[i-1][j], L[i][j-1], L[i-1][j-1] + [r_i == y_j])            (eq. 15.14)

A cell needs the row above and its left neighbour, so a row cannot be computed cell by cell in
NumPy as it stands; but the left-neighbour term unrolls into a running minimum (maximum) along
the row, ``np.minimum.accumulate``, which is whole-array. So the Python loop runs over the rows
only, and each step fills that row of a whole chunk of tables at once (pairs sorted by reference
length and padded; padding never matches, and cells right of a pair's corner never feed it).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from tinyllm.metrics.sequences import text_of_position

PAIRS_PER_CHUNK = 512  # pairs whose DP tables are filled together (sorted by length)


def select_texts(ids: np.ndarray, lengths: np.ndarray,
                 which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Texts ``which`` (P,) of a flat corpus, concatenated in that order: (ids, lengths (P,)).
    A text may be chosen several times (one hypothesis against each of its references)."""
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)  # (S,)
    chosen = lengths[which]                                                    # (P,)
    starts = np.repeat(offsets[which], chosen)                                 # (M',)
    within = np.arange(int(chosen.sum())) - np.repeat(np.cumsum(chosen) - chosen, chosen)
    return ids[starts + within], chosen


def padded(ids: np.ndarray, lengths: np.ndarray, fill: int) -> np.ndarray:
    """Texts as rows of a matrix, padded on the right with ``fill``: (S, max length)."""
    width = int(lengths.max()) if len(lengths) else 0
    out = np.full((len(lengths), width), fill, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    rows = text_of_position(lengths)                            # (M,)
    out[rows, np.arange(len(ids)) - offsets[rows]] = ids
    return out


Row = Callable[[np.ndarray, int, np.ndarray], np.ndarray]


def levenshtein_first_row(B: int, width: int) -> np.ndarray:
    """D[0][j] = j: turning the empty prefix into j hypothesis tokens takes j insertions."""
    return np.tile(np.arange(width + 1, dtype=np.int64), (B, 1))


def levenshtein_next_row(above: np.ndarray, i: int, match: np.ndarray) -> np.ndarray:
    """Row i of D[i][j] = min(D[i-1][j] + 1, D[i][j-1] + 1, D[i-1][j-1] + [r_i != y_j]).

    With t_j = min(D[i-1][j] + 1, D[i-1][j-1] + [r_i != y_j]) and t_0 = i, unrolling the left
    term gives D[i][j] = min_{k <= j} (t_k + j - k) = j + cummin_k (t_k - k): whole-array.
    """
    j = np.arange(above.shape[1])
    t = np.empty_like(above)                                    # (B, width + 1)
    t[:, 0] = i
    t[:, 1:] = np.minimum(above[:, 1:] + 1, above[:, :-1] + ~match)
    return np.minimum.accumulate(t - j, axis=1) + j


def lcs_first_row(B: int, width: int) -> np.ndarray:
    """L[0][j] = 0: the empty prefix shares nothing."""
    return np.zeros((B, width + 1), dtype=np.int64)


def lcs_next_row(above: np.ndarray, i: int, match: np.ndarray) -> np.ndarray:
    """Row i of L[i][j] = max(L[i-1][j], L[i][j-1], L[i-1][j-1] + [r_i == y_j]).

    L is non-decreasing along a row, so the left term unrolls to a running maximum:
    L[i][j] = cummax_k max(L[i-1][k], L[i-1][k-1] + [r_i == y_k]), with L[i][0] = 0.
    """
    c = np.empty_like(above)                                    # (B, width + 1)
    c[:, 0] = 0
    c[:, 1:] = np.maximum(above[:, 1:], above[:, :-1] + match)
    return np.maximum.accumulate(c, axis=1)


def pairwise_dp(ref_ids: np.ndarray, ref_lengths: np.ndarray, hyp_ids: np.ndarray,
                hyp_lengths: np.ndarray, first_row: Callable[[int, int], np.ndarray],
                next_row: Row) -> np.ndarray:
    """D[len(r)][len(y)] of a DP table for every pair (reference r_p, hypothesis y_p): (P,).

    ``first_row(B, width)`` gives row 0 of B tables, (B, width + 1); ``next_row(above, i,
    match)`` gives row i from row i - 1 and the (B, width) boolean matrix match[b, j] =
    (r_b[i - 1] == y_b[j]), for pairs p = 0..P-1 of the flat texts given.
    """
    P = len(ref_lengths)
    result = np.zeros(P, dtype=np.int64)
    ref_rows, hyp_rows = padded(ref_ids, ref_lengths, -1), padded(hyp_ids, hyp_lengths, -2)
    order = np.argsort(ref_lengths, kind="stable")
    for start in range(0, P, PAIRS_PER_CHUNK):
        chunk = order[start:start + PAIRS_PER_CHUNK]
        ref_len, hyp_len = ref_lengths[chunk], hyp_lengths[chunk]
        width = int(hyp_len.max())
        refs, hyps = ref_rows[chunk, :int(ref_len.max())], hyp_rows[chunk, :width]
        rows = np.arange(len(chunk))
        row = first_row(len(chunk), width)                      # (B, width + 1)
        answer = row[rows, hyp_len]                             # for empty references
        for i in range(1, int(ref_len.max()) + 1):
            row = next_row(row, i, refs[:, i - 1:i] == hyps)    # (B, width + 1)
            done = ref_len == i
            answer[done] = row[rows[done], hyp_len[done]]
        result[chunk] = answer
    return result
