"""Validation perplexity of n-gram models, n = 1..6, at character and BPE level (issue 16).

    python benchmarks/ngram_perplexity.py              # both levels, about 10 s on 2 cores
    python benchmarks/ngram_perplexity.py --level char --sample 300

The corpus and split are those of ``tinyllm train`` (the default corpus, the last 10% as
validation). Character level: the GPT preset's tokenizer (the alphabet of the whole text, V = 70).
BPE level: the BERT preset's byte-level BPE (V = 2,000, trained on the training text). Each level
is counted once, up to order 6 (``tinyllm.ngram.NGramCounts``); every model reads those counts.

Columns: interpolated modified Kneser-Ney; add-k with the best k of K_VALUES *chosen on the
validation text itself* (an optimistic figure for add-k); stupid backoff's pseudo-perplexity
exp(-mean ln S), which is no perplexity since S does not sum to one (it is printed for comparison
only, in brackets). A per-token perplexity depends on the tokenizer: to compare levels, the last
column converts Kneser-Ney's to bits per character, (sum over tokens of -log2 p) / characters.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from tinyllm.ngram import AddK, KneserNey, NGramCounts, StupidBackoff
from tinyllm.train import TRAIN_PRESETS, build_tokenizer, load_texts

K_VALUES = (1.0, 0.1, 0.01, 0.001)
PRESET_OF_LEVEL = {"char": "shakespeare-char", "bpe": "shakespeare-bert"}


def measure(level: str, max_order: int, sample: int) -> None:
    config = TRAIN_PRESETS[PRESET_OF_LEVEL[level]]
    train_text, val_text = load_texts(config)
    start = time.perf_counter()
    tokenizer = build_tokenizer(config, train_text, val_text)
    train_ids = np.array(tokenizer.encode(train_text), dtype=np.int64)
    val_ids = np.array(tokenizer.encode(val_text), dtype=np.int64)
    tokenize_s = time.perf_counter() - start
    start = time.perf_counter()
    counts = NGramCounts(train_ids, tokenizer.vocab_size, max_order)
    count_s = time.perf_counter() - start
    print(f"\n{level} level: V = {tokenizer.vocab_size}, {train_ids.size:,} training and "
          f"{val_ids.size:,} validation tokens ({len(val_text):,} characters); tokenizing "
          f"{tokenize_s:.1f} s, counting every k-gram up to k = {max_order} {count_s:.2f} s "
          f"({', '.join(f'{len(c):,}' for c in counts.codes[1:])} distinct k-grams)")
    print("| n | Kneser-Ney | add-k (best k) | [stupid backoff, pseudo] | KN bits/char | "
          "scoring time |")
    print("|---|---|---|---|---|---|")
    for n in range(1, max_order + 1):
        start = time.perf_counter()
        kneser_ney = KneserNey(counts, order=n)
        kn_log_prob = kneser_ney.log_prob(val_ids)
        add_k = {k: AddK(counts, k=k, order=n).perplexity(val_ids) for k in K_VALUES}
        best_k = min(add_k, key=add_k.get)
        pseudo = math.exp(-StupidBackoff(counts, order=n).log_score(val_ids).mean())
        seconds = time.perf_counter() - start
        bits_per_char = -kn_log_prob.sum() / math.log(2) / len(val_text)
        print(f"| {n} | {math.exp(-kn_log_prob.mean()):.3f} | {add_k[best_k]:.3f} (k={best_k:g})"
              f" | [{pseudo:.3f}] | {bits_per_char:.3f} | {seconds:.2f} s |")
    if sample:
        model = KneserNey(counts, order=max_order)
        prompt = tokenizer.encode("ROMEO:\n")
        text = tokenizer.decode(prompt + model.generate(prompt, sample, seed=1337))
        print(f"\nA sample from the {max_order}-gram Kneser-Ney model (seed 1337):\n{text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--level", choices=("char", "bpe", "both"), default="both")
    parser.add_argument("--max-order", type=int, default=6, help="largest n (default 6)")
    parser.add_argument("--sample", type=int, default=200, help="tokens to generate (0: none)")
    args = parser.parse_args()
    for level in ("char", "bpe") if args.level == "both" else (args.level,):
        measure(level, args.max_order, args.sample)


if __name__ == "__main__":
    main()
