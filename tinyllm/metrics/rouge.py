"""ROUGE-1, ROUGE-2 and ROUGE-L F-scores, equal to Google's ``rouge_score`` (chapter 15).

Lin (2004), "ROUGE: A Package for Automatic Evaluation of Summaries". ROUGE-N counts the
n-grams a hypothesis y (the summary, or translation) shares with its reference r, clipped as in
BLEU, m_n = sum_g min(c_y(g), c_r(g)), and reads it both ways (section 2 of the paper):

    P_n = m_n / max(h_n, 1),   R_n = m_n / max(r_n, 1),   F = 2 P R / (P + R)       (eq. 15.11)

with h_n, r_n the numbers of n-grams in y and r (F = 0 when P + R = 0). ROUGE-L (section 3)
replaces the matched n-grams by the longest common subsequence, the longest list of words that
appears in both texts in the same order, though not necessarily side by side:

    P_L = LCS(y, r) / |y|,   R_L = LCS(y, r) / |r|,   F_L = 2 P_L R_L / (P_L + R_L)  (eq. 15.12)

(all three 0 when either text has no word). The LCS is a dynamic programme over the prefixes,
one whole-array row at a time (``tinyllm.metrics.alignment``).

Like ``rouge_score.rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])`` with its defaults
(no stemmer), a text is lower-cased and its words are the runs of ASCII letters and digits; any
other character separates words ("Don't!" -> "don", "t"). Scores are per sentence; with several
references (streams, as for BLEU) each ROUGE type keeps the reference with the highest F, as
``RougeScorer.score_multi`` does. Unlike BLEU there is no corpus formula: report the mean F.

    rouge_scores(["the cat sat"], [["the cat sat down"]])["rougeL"].fmeasure   # array([0.857])
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from tinyllm.metrics.alignment import lcs_first_row, lcs_next_row, pairwise_dp, select_texts
from tinyllm.metrics.sequences import (
    best_reference,
    check_corpus,
    check_texts,
    match_statistics,
    reference_segments,
    word_ids,
)

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
ROUGE_WORD = re.compile(r"[a-z0-9]+")  # after lower-casing, a word is a run of these


@dataclass(frozen=True)
class RougeScore:
    """Precision, recall and F of one ROUGE type: floats for a sentence, (N,) arrays for a
    corpus (as ``rouge_score``'s ``Score(precision, recall, fmeasure)``)."""

    precision: float | np.ndarray
    recall: float | np.ndarray
    fmeasure: float | np.ndarray


def rouge_tokens(text: str) -> list[str]:
    """rouge_score's default tokeniser: lower-case, then the runs of [a-z0-9]."""
    return ROUGE_WORD.findall(text.lower())


def f_measure(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """2 P R / (P + R), and 0 where P + R = 0."""
    total = precision + recall
    return np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)


def rouge_scores(hypotheses, references, rouge_types=ROUGE_TYPES) -> dict[str, RougeScore]:
    """ROUGE of every sentence: {type: RougeScore of (N,) arrays}, types among "rouge1",
    "rouge2" (any "rougeN", N = 1..9) and "rougeL". References are streams:
    ``references[k][i]`` is the k-th reference of sentence i, so one each is ``[refs]``."""
    hypotheses, streams = check_corpus(hypotheses, references)
    for name in rouge_types:
        if name != "rougeL" and not re.fullmatch(r"rouge[1-9]", name):
            raise ValueError(f"unknown ROUGE type {name!r}: use 'rouge1', 'rouge2' (any "
                             "'rougeN', N = 1..9) or 'rougeL' (ROUGE-Lsum is not provided)")
    ref_texts, _, sentence_of = reference_segments(streams)
    N = len(hypotheses)
    ids, lengths = word_ids([rouge_tokens(text) for text in hypotheses + ref_texts])
    split = int(lengths[:N].sum())
    hyp_ids, hyp_len, ref_ids, ref_len = ids[:split], lengths[:N], ids[split:], lengths[N:]

    orders = [int(name[5:]) for name in rouge_types if name != "rougeL"]
    if orders:
        stats = match_statistics(hyp_ids, hyp_len, ref_ids, ref_len, sentence_of, max(orders))
    results = {}
    for name in rouge_types:
        if name == "rougeL":
            pair_ids, pair_len = select_texts(hyp_ids, hyp_len, sentence_of)  # y of each r
            lcs = pairwise_dp(ref_ids, ref_len, pair_ids, pair_len, lcs_first_row,
                              lcs_next_row).astype(np.float64)                 # (R,)
            h = pair_len.astype(np.float64)
            r = ref_len.astype(np.float64)
            empty = (h == 0) | (r == 0)
            precision = np.divide(lcs, h, out=np.zeros_like(lcs), where=~empty)
            recall = np.divide(lcs, r, out=np.zeros_like(lcs), where=~empty)
        else:
            h, r, m = stats[:, int(name[5:]) - 1].T.astype(np.float64)   # (R,) each
            precision, recall = m / np.maximum(h, 1), m / np.maximum(r, 1)
        fmeasure = f_measure(precision, recall)
        best = best_reference(fmeasure, sentence_of, N)                 # (N,)
        results[name] = RougeScore(precision[best], recall[best], fmeasure[best])
    return results


def sentence_rouge(hypothesis: str, references, rouge_types=ROUGE_TYPES) -> dict[str, RougeScore]:
    """ROUGE of one hypothesis against one reference string (or a list of them, the best kept):
    {type: RougeScore of floats}, equal to ``RougeScorer(types).score(reference, hypothesis)``
    (note rouge_score's order: the reference, its "target", comes first)."""
    check_texts([hypothesis], "hypothesis")
    references = check_texts([references] if isinstance(references, str) else references,
                             "references")
    if not references:
        raise ValueError("sentence_rouge needs at least one reference string")
    scores = rouge_scores([hypothesis], [[ref] for ref in references], rouge_types)
    return {name: RougeScore(float(s.precision[0]), float(s.recall[0]), float(s.fmeasure[0]))
            for name, s in scores.items()}
