"""BPE training and encoding time against the text size, with and without spaces (chapter 10).

    python benchmarks/bench_bpe.py                      # 10K .. 3M characters, 2,000 merges
    python benchmarks/bench_bpe.py --max-chars 300000 --merges 500

Two texts of each size: the Shakespeare training text ("with spaces": many short words), and its
letters only ("without spaces": one pre-tokenized word as long as the text, the case that used to
be quadratic). Both are cycled to the size wanted. A linear algorithm keeps the microseconds per
character roughly constant down each column.
"""

from __future__ import annotations

import argparse
import json
import time

from tinyllm.corpus import load_corpus
from tinyllm.tokenizers import BPETokenizer

SIZES = (10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000)


def cycled(text: str, size: int) -> str:
    """``text`` repeated and cut to ``size`` characters."""
    return (text * (size // len(text) + 1))[:size]


def time_one(text: str, merges: int) -> dict:
    """Seconds to train ``merges`` merges on ``text`` and to encode it; checks the round trip."""
    start = time.perf_counter()
    tokenizer = BPETokenizer.train(text, vocab_size=256 + merges)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    ids = tokenizer.encode(text)
    encode_s = time.perf_counter() - start
    assert tokenizer.decode(ids) == text, "the round trip failed"
    return {"chars": len(text), "merges": len(tokenizer.merges), "tokens": len(ids),
            "train_s": train_s, "encode_s": encode_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--merges", type=int, default=2000, help="merges to learn (default 2000)")
    parser.add_argument("--max-chars", type=int, default=SIZES[-1],
                        help="largest text size (default 3,000,000)")
    args = parser.parse_args()
    train_text = load_corpus()[0]
    kinds = {"with spaces": train_text, "without spaces": "".join(filter(str.isalpha, train_text))}
    print(f"{'text':<15s} {'characters':>11s} {'train s':>8s} {'us/char':>8s} "
          f"{'encode s':>9s} {'us/char':>8s} {'tokens':>9s}")
    rows = []
    for kind, source in kinds.items():
        for size in (s for s in SIZES if s <= args.max_chars):
            row = {"text": kind, **time_one(cycled(source, size), args.merges)}
            rows.append(row)
            print(f"{kind:<15s} {size:>11,d} {row['train_s']:8.2f} "
                  f"{1e6 * row['train_s'] / size:8.2f} {row['encode_s']:9.2f} "
                  f"{1e6 * row['encode_s'] / size:8.2f} {row['tokens']:>9,d}")
    print(json.dumps({"merges": args.merges, "rows": rows}))


if __name__ == "__main__":
    main()
