"""chrF and chrF++ with sacreBLEU's defaults (chapter 15).

Popović (2015), "chrF: character n-gram F-score for automatic MT evaluation": compare character
n-grams instead of words, so a half-right spelling ("vpon" for "upon") earns partial credit. For
each order n = 1..6 over the text with its whitespace removed, with m_n the clipped matches
(as in BLEU) and h_n, r_n the hypothesis and reference n-gram counts,

    chrP_n = m_n / h_n,    chrR_n = m_n / r_n                                       (eq. 15.9)

sacreBLEU (>= 2.0) averages precision and recall over the orders where both h_n and r_n are
positive (the *effective* orders), then combines the averages with the F_beta mean, beta = 2
weighting recall twice as much as precision (Popović 2016):

    chrF_beta = 100 * (1 + beta^2) chrP chrR / (beta^2 chrP + chrR)                 (eq. 15.10)

At corpus level h_n, r_n and m_n are *summed over sentences first* (like BLEU's counts), and the
formula applies once to the sums. With several references, each sentence keeps the statistics
of the reference with the best sentence-level chrF (the first, on a tie). A sentence whose
reference has no n-gram of order n contributes h_n = 0 at that order (sacreBLEU's rule).

chrF++ (Popović 2017) adds word 1-grams and 2-grams (``word_order=2``) as two more orders in the
same average; words are split at whitespace, and a punctuation mark at the end (else at the
start) of a word of two or more characters is split off: "(hi)" -> "(hi", ")".

    corpus_chrf(["the cat sat"], [["the cat sat down"]]).score   # 66.02: P = 1, R = 0.61
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import numpy as np

from tinyllm.metrics.sequences import (
    best_reference,
    char_ids,
    check_corpus,
    check_texts,
    match_statistics,
    reference_segments,
    word_ids,
)

CHRF_CHAR_ORDER = 6   # Popović 2015: character n-grams up to 6
CHRF_WORD_ORDER = 0   # 0 for chrF, 2 for chrF++
CHRF_BETA = 2         # recall counts beta^2 = 4 times as much as precision

PUNCTUATION = re.escape(string.punctuation)  # the 32 ASCII marks, escaped for [...]
# a whole word (no whitespace either side) that ends in a mark and has a character before it,
# or that starts with a mark and does not end in one: split the mark off
SPLIT_WORD_PUNCTUATION = re.compile(
    rf"(?<!\S)(?:(\S+)([{PUNCTUATION}])|([{PUNCTUATION}])(\S*[^\s{PUNCTUATION}]))(?!\S)")


@dataclass(frozen=True)
class CHRFScore:
    """chrF in percent (0..100) and its settings, as sacreBLEU's ``CHRFScore``."""

    score: float
    char_order: int
    word_order: int
    beta: int

    def __str__(self) -> str:
        return f"chrF{self.beta}{'+' * self.word_order} = {self.score:.2f}"


def chrf_words(text: str) -> list[str]:
    """The words of chrF++: whitespace-split, one edge punctuation mark split off."""
    return SPLIT_WORD_PUNCTUATION.sub(r"\1\3 \2\4", text).split()


def chrf_from_statistics(stats: np.ndarray, beta: int = CHRF_BETA) -> np.ndarray:
    """chrF (percent) of each row of statistics (R, 3 * orders), averaging precision and
    recall over the effective orders (eq. 15.10); the arithmetic runs in sacreBLEU's order."""
    stats = np.atleast_2d(stats).astype(np.float64)
    hyp, ref, match = stats[:, 0::3], stats[:, 1::3], stats[:, 2::3]  # (R, orders) each
    effective = (hyp > 0) & (ref > 0)
    precision = np.divide(match, hyp, out=np.zeros_like(match), where=effective)
    recall = np.divide(match, ref, out=np.zeros_like(match), where=effective)
    mean_p, mean_r = np.zeros(len(stats)), np.zeros(len(stats))
    for n in range(hyp.shape[1]):  # one order at a time, as sacreBLEU adds them
        mean_p, mean_r = mean_p + precision[:, n], mean_r + recall[:, n]
    orders = effective.sum(axis=1)
    mean_p = np.divide(mean_p, orders, out=np.zeros_like(mean_p), where=orders > 0)
    mean_r = np.divide(mean_r, orders, out=np.zeros_like(mean_r), where=orders > 0)
    factor = beta ** 2
    denominator = factor * mean_p + mean_r
    score = (1 + factor) * mean_p * mean_r
    score = np.divide(score, denominator, out=np.zeros_like(score), where=mean_p + mean_r > 0)
    return 100 * score


def chrf_statistics(hypotheses, references, *, char_order: int = CHRF_CHAR_ORDER,
                    word_order: int = CHRF_WORD_ORDER, beta: int = CHRF_BETA) -> np.ndarray:
    """Per sentence, the statistics of its best reference: (N, 3 * (char_order + word_order)),
    columns [h_1, r_1, m_1, h_2, ...], character orders first, then word orders."""
    hypotheses, streams = check_corpus(hypotheses, references)
    if char_order < 1 or word_order < 0:
        raise ValueError(f"char_order must be >= 1 and word_order >= 0, got {char_order} and "
                         f"{word_order}; chrF is (6, 0), chrF++ is (6, 2)")
    ref_texts, _, sentence_of = reference_segments(streams)
    N = len(hypotheses)

    def no_space(texts):
        return ["".join(text.split()) for text in texts]

    hyp_ids, hyp_lengths = char_ids(no_space(hypotheses))
    ref_ids, ref_lengths = char_ids(no_space(ref_texts))
    stats = [match_statistics(hyp_ids, hyp_lengths, ref_ids, ref_lengths, sentence_of,
                              char_order)]                                      # (R, char, 3)
    if word_order > 0:
        ids, lengths = word_ids([chrf_words(text) for text in hypotheses + ref_texts])
        split = int(lengths[:N].sum())
        stats.append(match_statistics(ids[:split], lengths[:N], ids[split:], lengths[N:],
                                      sentence_of, word_order))                 # (R, word, 3)
    stats = np.concatenate(stats, axis=1)                                       # (R, orders, 3)
    stats[:, :, 0] *= stats[:, :, 1] > 0          # no reference n-gram of order n: h_n = 0
    stats = stats.reshape(len(ref_texts), -1)                                   # (R, 3 orders)
    # each sentence keeps its best reference (the first of equal ones)
    return stats[best_reference(chrf_from_statistics(stats, beta), sentence_of, N)]


def corpus_chrf(hypotheses, references, *, char_order: int = CHRF_CHAR_ORDER,
                word_order: int = CHRF_WORD_ORDER, beta: int = CHRF_BETA) -> CHRFScore:
    """Corpus chrF, equal to ``sacrebleu.corpus_chrf(hypotheses, references)``; references
    as streams (``references[k][i]``), so one reference each is ``[refs]``. chrF++:
    ``word_order=2``."""
    stats = chrf_statistics(hypotheses, references, char_order=char_order,
                            word_order=word_order, beta=beta)
    score = chrf_from_statistics(stats.sum(axis=0), beta)[0]
    return CHRFScore(float(score), char_order, word_order, beta)


def sentence_chrf(hypothesis: str, references, *, char_order: int = CHRF_CHAR_ORDER,
                  word_order: int = CHRF_WORD_ORDER, beta: int = CHRF_BETA) -> CHRFScore:
    """chrF of one sentence against its references (a list of strings), equal to
    ``sacrebleu.sentence_chrf(hypothesis, references)``."""
    check_texts([hypothesis], "hypothesis")
    references = check_texts(references, "references")
    if not references:
        raise ValueError("sentence_chrf needs at least one reference string")
    return corpus_chrf([hypothesis], [[ref] for ref in references], char_order=char_order,
                       word_order=word_order, beta=beta)
