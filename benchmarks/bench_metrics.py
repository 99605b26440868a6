"""tinyllm.metrics against sacreBLEU and rouge-score on 10,000 sentence pairs (chapter 15).

    python benchmarks/bench_metrics.py                  # 10,000 pairs, median of 3 runs each
    python benchmarks/bench_metrics.py --pairs 2000 --repeats 5

The pairs are lines of the Shakespeare training text (the references) and the same lines with
one edit each (a word dropped, two swapped, Folio spellings u -> v and than -> then, punctuation
lost, a word doubled: the hypotheses). Each metric runs alternately in tinyllm and in the oracle
library, and the script checks that the two scores agree before it prints the medians. The
oracles are the test extra's (``pip install -e ".[test]"``); without one, its column is empty.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np

from tinyllm.corpus import load_corpus
from tinyllm.metrics import (
    character_error_rate,
    corpus_bleu,
    corpus_chrf,
    edit_distances,
    rouge_scores,
    sentence_bleu_scores,
)


def pairs(count: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(hypotheses, references): ``count`` corpus lines and an edited copy of each."""
    train_text, _ = load_corpus("shakespeare")
    refs = [line for line in train_text.splitlines() if line.strip()][:count]
    rng = random.Random(seed)
    hyps = []
    for line in refs:
        words = line.split()
        edit = rng.randrange(6)
        if edit == 0 and len(words) > 1:
            del words[rng.randrange(len(words))]
        elif edit == 1 and len(words) > 1:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        elif edit == 2:
            words = [w.replace("u", "v").replace("than", "then") for w in words]
        elif edit == 3:
            words = [w.strip(",.;:!?") for w in words]
        elif edit == 4:
            words.insert(rng.randrange(len(words) + 1), rng.choice(words))
        hyps.append(" ".join(words))
    return hyps, refs


def median_seconds(run, repeats: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    hyps, refs = pairs(args.pairs)
    try:
        import sacrebleu
    except ImportError:
        sacrebleu = None
    try:
        from rouge_score import rouge_scorer
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    except ImportError:
        scorer = None
    try:
        import nltk
    except ImportError:
        nltk = None

    def rouge_oracle():
        scores = [scorer.score(r, h) for h, r in zip(hyps, refs)]
        return np.mean([s["rougeL"].fmeasure for s in scores])

    def cer_oracle():
        edits = sum(nltk.edit_distance(h, r) for h, r in zip(hyps, refs))
        return edits / sum(map(len, refs))

    cases = [
        ("corpus BLEU", lambda: corpus_bleu(hyps, [refs]).score,
         sacrebleu and (lambda: sacrebleu.corpus_bleu(hyps, [refs]).score)),
        ("sentence BLEU, mean of all", lambda: float(sentence_bleu_scores(hyps, [refs]).mean()),
         sacrebleu and (lambda: np.mean([sacrebleu.sentence_bleu(h, [r]).score
                                         for h, r in zip(hyps, refs)]))),
        ("corpus chrF", lambda: corpus_chrf(hyps, [refs]).score,
         sacrebleu and (lambda: sacrebleu.corpus_chrf(hyps, [refs]).score)),
        ("corpus chrF++", lambda: corpus_chrf(hyps, [refs], word_order=2).score,
         sacrebleu and (lambda: sacrebleu.corpus_chrf(hyps, [refs], word_order=2).score)),
        ("ROUGE-1/2/L, mean ROUGE-L F", lambda: float(rouge_scores(hyps, [refs])["rougeL"]
                                                      .fmeasure.mean()),
         scorer and rouge_oracle),
        ("CER (nltk.edit_distance)", lambda: character_error_rate(hyps, refs),
         nltk and cer_oracle),
    ]
    print(f"{len(hyps):,} sentence pairs, {sum(map(len, refs)):,} reference characters; "
          f"median of {args.repeats} runs")
    print(f"{'metric':32s} {'tinyllm s':>10s} {'oracle s':>10s} {'speed-up':>9s}  value")
    for name, ours, theirs in cases:
        ours_s, ours_value = median_seconds(ours, args.repeats)
        line = f"{name:32s} {ours_s:10.3f}"
        if theirs:
            theirs_s, theirs_value = median_seconds(theirs, args.repeats)
            assert abs(ours_value - theirs_value) < 1e-6 * max(1.0, abs(theirs_value)), name
            line += f" {theirs_s:10.3f} {theirs_s / ours_s:8.1f}x"
        else:
            line += f" {'-':>10s} {'-':>9s}"
        print(f"{line}  {ours_value:.4f}")
    words, _ = edit_distances(hyps, refs, unit="word")
    print(f"(WER of the same pairs: {words.sum() / sum(len(r.split()) for r in refs):.4f})")


if __name__ == "__main__":
    main()
