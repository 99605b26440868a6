"""GloVe on the default corpus: nearest neighbours and analogies (issue 16, Pennington et al. 2014).

    python benchmarks/glove_shakespeare.py                  # about 30 s on 2 cores
    python benchmarks/glove_shakespeare.py --epochs 50 --d-model 100

Words as in chapter 04's skip-gram section: the training text of the default corpus without the
speaker lines, lower-cased, split into words (contractions kept); the ``--vocab`` most frequent
words are kept, the others removed from the pairs but not from the distances. X uses a symmetric
window of 10 words with 1/d weighting, x_max = 100, alpha = 3/4, AdaGrad at lr 0.05 (the paper's
settings); the vectors are W + W~. Printed: the neighbours of a few words by cosine (raw, and
after subtracting the mean vector as chapter 04 does), a few analogies "a - b + c", and the mean
cosine of chapter 04's five related pairs against that of all pairs.
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np

from tinyllm.corpus import load_corpus
from tinyllm.glove import analogy, cooccurrence, nearest, train_glove, word_ids

QUERIES = ("king", "queen", "love", "lord", "night", "father", "thou", "eyes", "sword", "death")
ANALOGIES = (("king", "man", "woman"), ("father", "man", "woman"), ("brother", "he", "she"),
             ("lord", "man", "woman"), ("his", "he", "she"), ("thou", "thee", "me"),
             ("night", "dark", "light"), ("son", "father", "mother"))
RELATED = (("father", "mother"), ("night", "day"), ("thou", "thy"), ("king", "prince"),
           ("eyes", "face"))  # chapter 04's pairs


def corpus_words() -> list[str]:
    """Chapter 04's words: no speaker lines, lower case, contractions such as o'er kept."""
    train_text, _ = load_corpus("shakespeare")
    speaker_line = re.compile(r"^[A-Z][A-Z .'-]*:$")
    text = "\n".join(line for line in train_text.split("\n") if not speaker_line.match(line))
    return re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower())


def show(vectors: np.ndarray, vocab: list[str], label: str) -> None:
    index = {word: i for i, word in enumerate(vocab)}
    print(f"\nnearest neighbours ({label}):")
    for word in QUERIES:
        ids, cosines = nearest(vectors, index[word], k=6)
        print(f"  {word:>7}: " + ", ".join(f"{vocab[j]} ({c:.2f})" for j, c in zip(ids, cosines)))
    print(f"analogies a - b + c ({label}):")
    for a, b, c in ANALOGIES:
        if all(w in index for w in (a, b, c)):
            ids, cosines = analogy(vectors, index[a], index[b], index[c], k=3)
            print(f"  {a} - {b} + {c} = " + ", ".join(f"{vocab[j]} ({s:.2f})"
                                                      for j, s in zip(ids, cosines)))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    related = np.mean([unit[index[a]] @ unit[index[b]] for a, b in RELATED])
    pairs = np.triu_indices(len(vocab), k=1)
    print(f"mean cosine of chapter 04's {len(RELATED)} related pairs: {related:.2f}, "
          f"of all pairs: {(unit @ unit.T)[pairs].mean():.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, default=5000, help="most frequent words kept")
    parser.add_argument("--window", type=int, default=10, help="symmetric window (words)")
    parser.add_argument("--d-model", type=int, default=50, help="vector width C")
    parser.add_argument("--epochs", type=int, default=50, help="50: the paper's, for C < 300")
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    words = corpus_words()
    ids, vocab = word_ids(words, args.vocab)
    rows, cols, values = cooccurrence(ids, len(vocab), window=args.window)
    print(f"{len(words):,} words, vocabulary of {len(vocab):,} covering "
          f"{np.mean(ids >= 0):.0%} of them; {values.size:,} non-zero co-occurrences "
          f"({values.size / len(vocab) ** 2:.1%} of X) in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    model, losses = train_glove(rows, cols, values, len(vocab), d_model=args.d_model,
                                epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    print(f"{args.epochs} epochs of AdaGrad in {time.perf_counter() - start:.1f} s; J per entry "
          f"{losses[0]:.4f} -> {losses[-1]:.4f}")
    vectors = model.vectors()
    show(vectors, vocab, "W + W~, raw cosine")
    show(vectors - vectors.mean(axis=0), vocab, "W + W~ minus its mean, as in chapter 04")


if __name__ == "__main__":
    main()
