"""BLEU with sacreBLEU's conventions: the 13a tokeniser, corpus and sentence BLEU (chapter 15).

Papineni et al. (2002) score a hypothesis corpus against references with the *modified n-gram
precision* (eq. 1 of the paper; chapter 15, eq. 15.6): each hypothesis n-gram counts at most as
often as it occurs in the reference where it occurs most,

    p_n = sum_i sum_g min(c_{y_i}(g), max_k c_{r_ik}(g)) / sum_i sum_g c_{y_i}(g),   n = 1..4

summed over the whole corpus before dividing, and combine the four with a geometric mean and a
*brevity penalty* for a hypothesis corpus of length c shorter than the reference length r:

    BLEU = BP * exp(sum_n log(p_n) / 4),     BP = 1 if c >= r else exp(1 - r / c)   (eq. 15.7)

r sums, over sentences, the reference length *closest* to that hypothesis's length (a tie goes to
the shorter reference), as in ``mteval-v13a.pl`` and sacreBLEU's default.

Post (2018), "A Call for Clarity in Reporting BLEU Scores", fixed the conventions so that scores
are comparable: detokenised text in, tokenised by the 13a rules, scores in percent. sacreBLEU
smooths with Chen & Cherry's (2014) method 3 ("exp", NIST's geometric smoothing): the k-th order
with no match at all gets p_n = 1 / (2^k * total_n) instead of 0 (eq. 15.8). Sentence BLEU uses the
*effective order*: only the orders the hypothesis has n-grams of enter the mean (a two-word
sentence has no 3-grams). A corpus with no match at all scores 0.

    sentence_bleu("the cat sat", ["the cat sat down"]).score   # 100 * exp(1 - 4/3) = 71.65
    corpus_bleu(["the cat sat"], [["the cat sat down"]]).score  # 0: no 4-gram to match
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from tinyllm.metrics.sequences import (
    check_corpus,
    check_texts,
    clipped_matches,
    count_keys,
    max_per_key,
    ngram_levels,
    ngram_totals,
    reference_segments,
    sum_per_group,
    word_ids,
)

MAX_NGRAM_ORDER = 4  # BLEU-4: orders 1..4, as in Papineni et al. and every WMT report
LOG_OF_ZERO = -9999999999.0  # what sacreBLEU takes as log(0): exp of it over 4 is exactly 0
HTML_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))  # in this order

# The 13a rules (NIST's mteval-v13a.pl, kept by sacreBLEU), as four substitutions:
# 1. every ASCII symbol except the apostrophe, period, comma and hyphen stands alone
SPLIT_SYMBOL = re.compile("([" + re.escape("!\"#$%&()*+/:;<=>?@[\\]^_`{|}~") + "])")
# 2. a period or comma after a character that is not a digit stands alone ("cat." -> "cat .")
SPLIT_STOP_AFTER_NON_DIGIT = re.compile(r"([^0-9])([.,])")
# 3. a period or comma before a character that is not a digit stands alone ("3.x" -> "3 . x")
SPLIT_STOP_BEFORE_NON_DIGIT = re.compile(r"([.,])([^0-9])")
# 4. a hyphen after a digit stands alone ("1-2" -> "1 - 2"), other hyphens stay in the word
SPLIT_DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")


def tokenize_13a(line: str) -> str:
    """The 13a tokenisation of one line, tokens joined by single spaces.

    First the markup of the WMT files goes: the ``<skipped>`` placeholder is dropped, a hyphen
    at a line break (``-\\n``) joins the two halves of the word, other line breaks become spaces,
    and the four HTML entities &quot; &amp; &lt; &gt; are decoded, in that order (so "&amp;lt;"
    becomes "<"). Then, on the line padded with a space at each end, the four rules above run
    one after another, each over the whole line from left to right (a character consumed by one
    match is not seen again by the same rule). Periods and commas between digits (3.14, 1,000)
    stay inside the number. Last, runs of whitespace become one space.

        tokenize_13a('He said: "No."')   # 'He said : " No . "'
    """
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        for entity, character in HTML_ENTITIES:
            line = line.replace(entity, character)
    line = SPLIT_SYMBOL.sub(r" \1 ", f" {line} ")
    line = SPLIT_STOP_AFTER_NON_DIGIT.sub(r"\1 \2 ", line)
    line = SPLIT_STOP_BEFORE_NON_DIGIT.sub(r" \1 \2", line)
    line = SPLIT_DASH_AFTER_DIGIT.sub(r"\1 \2 ", line)
    return " ".join(line.split())


def preprocess(text: str, lowercase: bool, tokenize: str) -> list[str]:
    """The tokens BLEU counts: optionally lower-cased, trailing whitespace cut, then 13a."""
    if tokenize not in ("13a", "none"):
        raise ValueError(f"tokenize={tokenize!r} is not known: use '13a' (sacreBLEU's default) "
                         "or 'none' (text that is already tokenised, split at whitespace)")
    text = (text.lower() if lowercase else text).rstrip()
    return (tokenize_13a(text) if tokenize == "13a" else text).split()


@dataclass(frozen=True)
class BLEUScore:
    """BLEU and the numbers behind it, named as sacreBLEU's ``BLEUScore`` names them."""

    score: float                    # BLEU in percent, 0..100
    counts: tuple[int, ...]         # clipped matches per order n = 1..4 (numerators of p_n)
    totals: tuple[int, ...]         # hypothesis n-grams per order (denominators of p_n)
    precisions: tuple[float, ...]   # p_n in percent (smoothed where a count is 0)
    bp: float                       # brevity penalty
    sys_len: int                    # hypothesis tokens c
    ref_len: int                    # effective (closest) reference tokens r

    @property
    def ratio(self) -> float:
        """c / r, the length ratio (0 when there are no reference tokens)."""
        return self.sys_len / self.ref_len if self.ref_len else 0.0

    def __str__(self) -> str:
        precisions = "/".join(f"{p:.1f}" for p in self.precisions)
        return (f"BLEU = {self.score:.2f} {precisions} (BP = {self.bp:.3f} ratio = "
                f"{self.ratio:.3f} hyp_len = {self.sys_len} ref_len = {self.ref_len})")


def bleu_statistics(hypotheses, references, *, lowercase: bool = False,
                    tokenize: str = "13a") -> np.ndarray:
    """BLEU's sufficient statistics per sentence: (N, 2 + 2 * 4) int64, the columns

        [c_i, r_i, matches_1..4, totals_1..4]

    with c_i the hypothesis length, r_i the closest reference length, matches_n the clipped
    n-gram matches against all references of sentence i and totals_n = max(c_i - n + 1, 0).
    Summing rows gives the corpus statistics (BLEU is a function of the sums).
    """
    hypotheses, streams = check_corpus(hypotheses, references)
    ref_texts, _, sentence_of = reference_segments(streams)
    N = len(hypotheses)
    tokens = [preprocess(text, lowercase, tokenize) for text in hypotheses + ref_texts]
    ids, lengths = word_ids(tokens)                             # (M,), (N + R,)
    hyp_len, ref_len = lengths[:N], lengths[N:]                 # (N,), (R,)

    # the closest reference length: smallest |c - r|, ties to the shorter r
    scale = int(ref_len.max()) + 1
    closeness = np.abs(hyp_len[sentence_of] - ref_len) * scale + ref_len   # (R,)
    best = np.full(N, np.iinfo(np.int64).max)
    np.minimum.at(best, sentence_of, closeness)

    stats = np.zeros((N, 2 + 2 * MAX_NGRAM_ORDER), dtype=np.int64)
    stats[:, 0], stats[:, 1] = hyp_len, best % scale
    sentence_of_text = np.concatenate([np.arange(N), sentence_of])          # (N + R,)
    for n, (text, gram, G) in enumerate(ngram_levels(ids, lengths, MAX_NGRAM_ORDER)):
        is_hyp = text < N
        hyp_keys, hyp_counts = count_keys(text[is_hyp], gram[is_hyp], G)    # key: i * G + g
        ref_keys, ref_counts = count_keys(text[~is_hyp], gram[~is_hyp], G)  # key: text * G + g
        ref_keys = sentence_of_text[ref_keys // G] * G + ref_keys % G       # key: i * G + g
        ref_keys, ref_counts = max_per_key(ref_keys, ref_counts)            # max over refs
        matches = clipped_matches(hyp_keys, hyp_counts, ref_keys, ref_counts)
        stats[:, 2 + n] = sum_per_group(hyp_keys, matches, G, N)
    stats[:, 2 + MAX_NGRAM_ORDER:] = ngram_totals(hyp_len, MAX_NGRAM_ORDER)
    return stats


def bleu_from_statistics(stats: np.ndarray, *, smooth: str = "exp",
                         effective_order: bool = False) -> tuple[np.ndarray, ...]:
    """BLEU of each row of statistics (R, 10): (score (R,), precisions (R, 4), bp (R,)).

    Row-wise and whole-array, with sacreBLEU's arithmetic in the same order (percent
    precisions, log of 0 taken as LOG_OF_ZERO), so the scores agree to the last few bits.
    """
    if smooth not in ("exp", "none"):
        raise ValueError(f"smooth={smooth!r} is not known: use 'exp' (sacreBLEU's default, "
                         "Chen & Cherry 2014 method 3) or 'none' (Papineni et al.)")
    stats = np.atleast_2d(stats)
    c, r = stats[:, 0].astype(np.float64), stats[:, 1].astype(np.float64)           # (R,)
    matches = stats[:, 2:2 + MAX_NGRAM_ORDER].astype(np.float64)                    # (R, 4)
    totals = stats[:, 2 + MAX_NGRAM_ORDER:].astype(np.float64)                      # (R, 4)
    ratio = np.divide(r, c, out=np.zeros_like(c), where=c > 0)
    bp = np.where(c >= r, 1.0, np.where(c > 0, np.exp(1 - ratio), 0.0))            # eq. 15.7

    reached = np.cumprod(totals > 0, axis=1).astype(bool)  # sacreBLEU stops at an empty order
    unmatched = reached & (matches == 0)
    halvings = np.cumsum(unmatched, axis=1)                 # k for the k-th unmatched order
    safe_totals = np.where(reached, totals, 1.0)
    matched = 100.0 * matches / safe_totals
    smoothed = 100.0 / (2.0 ** halvings * safe_totals) if smooth == "exp" else 0.0 * matched
    precisions = np.where(reached, np.where(matches > 0, matched, smoothed), 0.0)   # (R, 4)

    order = reached.sum(axis=1) if effective_order else np.full(len(stats), MAX_NGRAM_ORDER)
    order = np.maximum(order, 1)
    log_sum = np.zeros(len(stats))
    for n in range(MAX_NGRAM_ORDER):  # one order at a time: the sum in sacreBLEU's order
        positive = precisions[:, n] > 0
        logs = np.where(positive, np.log(np.where(positive, precisions[:, n], 1.0)), LOG_OF_ZERO)
        log_sum = log_sum + np.where(n < order, logs, 0.0)
    score = bp * np.exp(log_sum / order)

    any_match = matches.sum(axis=1) > 0                     # no match at all: BLEU is 0
    return (np.where(any_match, score, 0.0), np.where(any_match[:, None], precisions, 0.0), bp)


def score_of(stats: np.ndarray, smooth: str, effective_order: bool) -> BLEUScore:
    """The ``BLEUScore`` of one row of summed statistics (10,)."""
    score, precisions, bp = bleu_from_statistics(stats[None], smooth=smooth,
                                                 effective_order=effective_order)
    return BLEUScore(score=float(score[0]),
                     counts=tuple(int(x) for x in stats[2:2 + MAX_NGRAM_ORDER]),
                     totals=tuple(int(x) for x in stats[2 + MAX_NGRAM_ORDER:]),
                     precisions=tuple(float(p) for p in precisions[0]), bp=float(bp[0]),
                     sys_len=int(stats[0]), ref_len=int(stats[1]))


def corpus_bleu(hypotheses, references, *, smooth: str = "exp", lowercase: bool = False,
                tokenize: str = "13a", effective_order: bool = False) -> BLEUScore:
    """Corpus BLEU, equal to ``sacrebleu.corpus_bleu(hypotheses, references)``.

    ``references`` is a list of reference *streams*: ``references[k][i]`` is the k-th
    reference of sentence i (None where a sentence has fewer). One reference each:
    ``corpus_bleu(hyps, [refs])``.
    """
    stats = bleu_statistics(hypotheses, references, lowercase=lowercase, tokenize=tokenize)
    return score_of(stats.sum(axis=0), smooth, effective_order)


def sentence_bleu(hypothesis: str, references, *, smooth: str = "exp", lowercase: bool = False,
                  tokenize: str = "13a") -> BLEUScore:
    """BLEU of one sentence against its references (a list of strings), with exp smoothing
    and the effective order: equal to ``sacrebleu.sentence_bleu(hypothesis, references)``."""
    check_texts([hypothesis], "hypothesis")
    references = check_texts(references, "references")
    if not references:
        raise ValueError("sentence_bleu needs at least one reference string")
    stats = bleu_statistics([hypothesis], [[ref] for ref in references], lowercase=lowercase,
                            tokenize=tokenize)
    return score_of(stats[0], smooth, effective_order=True)


def sentence_bleu_scores(hypotheses, references, *, smooth: str = "exp", lowercase: bool = False,
                         tokenize: str = "13a") -> np.ndarray:
    """``sentence_bleu`` of every sentence of a corpus at once (references as streams): (N,)."""
    stats = bleu_statistics(hypotheses, references, lowercase=lowercase, tokenize=tokenize)
    return bleu_from_statistics(stats, smooth=smooth, effective_order=True)[0]
