"""Character and word error rate: edit distance over reference length (chapter 15).

The error rate of a hypothesis corpus y_1..y_N against references r_1..r_N is the number of
edits (insertions, deletions, substitutions; the Levenshtein distance d, eq. 15.13) it takes to
turn each hypothesis into its reference, summed over the corpus, per reference unit:

    CER = sum_i d_char(y_i, r_i) / sum_i |r_i|_char,
    WER = sum_i d_word(y_i, r_i) / sum_i |r_i|_word                                 (eq. 15.15)

Lower is better; 0 is a perfect copy, and the rate can pass 1 (a long hypothesis for a short
reference). Summing before dividing weights each sentence by its length, as speech recognition
and spelling normalisation report it (the mean of per-sentence rates would not). Characters are
all of them, spaces and punctuation included, with no normalisation; words are split at
whitespace. The distance is ``tinyllm.metrics.alignment.pairwise_dp``, one whole-array row per
step for many pairs at once.

    levenshtein("kitten", "sitting")                       # 3
    character_error_rate(["vpon the"], ["upon the"])        # 1 / 8 = 0.125
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tinyllm.metrics.alignment import levenshtein_first_row, levenshtein_next_row, pairwise_dp
from tinyllm.metrics.sequences import char_ids, check_texts, word_ids


def levenshtein(a: str | Sequence, b: str | Sequence) -> int:
    """Levenshtein distance between two strings, or two sequences of tokens (e.g. words)."""
    if isinstance(a, str) != isinstance(b, str):
        raise TypeError("levenshtein compares two strings or two token lists, got a "
                        f"{type(a).__name__} and a {type(b).__name__}")
    if isinstance(a, str):
        ids, lengths = char_ids([b, a])
    else:
        ids, lengths = word_ids([[str(t) for t in b], [str(t) for t in a]])
    split = int(lengths[0])
    return int(pairwise_dp(ids[:split], lengths[:1], ids[split:], lengths[1:],
                           levenshtein_first_row, levenshtein_next_row)[0])


def edit_distances(hypotheses, references, unit: str = "char") -> tuple[np.ndarray, np.ndarray]:
    """Per sentence, the edit distance and the reference length: ((N,), (N,)) int64, in
    characters (``unit="char"``) or whitespace-split words (``unit="word"``)."""
    hypotheses = check_texts(hypotheses, "hypotheses")
    references = check_texts(references, "references")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references: the "
                         "error rate pairs hypothesis i with reference i (one string each)")
    if unit == "char":
        ids, lengths = char_ids(references + hypotheses)
    elif unit == "word":
        ids, lengths = word_ids([text.split() for text in references + hypotheses])
    else:
        raise ValueError(f"unit={unit!r}: use 'char' (CER) or 'word' (WER)")
    N = len(references)
    split = int(lengths[:N].sum())
    distances = pairwise_dp(ids[:split], lengths[:N], ids[split:], lengths[N:],
                            levenshtein_first_row, levenshtein_next_row)
    return distances, lengths[:N]


def error_rate(hypotheses, references, unit: str) -> float:
    """sum of edits / sum of reference lengths (eq. 15.15)."""
    distances, lengths = edit_distances(hypotheses, references, unit)
    if lengths.sum() == 0:
        raise ValueError("every reference is empty, so the error rate (edits per reference "
                         f"{unit}) is undefined; drop the empty pairs or report the edit count")
    return float(distances.sum() / lengths.sum())


def character_error_rate(hypotheses, references) -> float:
    """CER of a corpus: one reference string per hypothesis, all characters counted."""
    return error_rate(hypotheses, references, "char")


def word_error_rate(hypotheses, references) -> float:
    """WER of a corpus: one reference string per hypothesis, words split at whitespace."""
    return error_rate(hypotheses, references, "word")
