"""Validation perplexity of every chapter-18 model on one split: n-grams, RNN, LSTM, GPT.

    tinyllm train --model lstm --preset shakespeare-rnn --threads 1 --no-progress --out /tmp/rnn-run
    tinyllm train --model lstm --threads 1 --no-progress --out /tmp/lstm-run
    tinyllm train --threads 1 --no-progress --out /tmp/gpt-run
    python benchmarks/perplexity_table.py --rnn /tmp/rnn-run --lstm /tmp/lstm-run --gpt /tmp/gpt-run

Without checkpoints (no --rnn/--lstm/--gpt), only the n-gram rows are printed (about 15 s).

The split is that of ``tinyllm train``: the default corpus at character level (V = 70), the last
10% (88,707 characters) as validation. Every model predicts the same 88,706 characters, every
validation character after the first, each with all the history the model can use:

- an order-n model its n - 1 previous characters (``tinyllm.ngram``, counted on the training
  text); add-k's k is chosen on the last 10% of the *training* text (counted on the first 90%),
  never on the validation text;
- the GPT up to T = 64 of them: windows of T characters, ``--stride`` apart (default T/2); the
  first window scores all its T predictions, every later one only its ``stride`` new ones, so
  each prediction reads at least T - stride + 1 characters;
- the RNN and the LSTM everything before it in its stream: the validation text is cut into
  ``--streams`` contiguous pieces, each read from a zero state with its state carried to the end.

Loss: the mean of -ln p over the 88,706 predictions (nats per character); perplexity exp(loss);
bits per character loss / ln 2. The trainers' own figures differ: the GPT's ``val_loss`` is 200
random windows (a prediction reads 0 to 63 characters, 31.5 on average), the recurrent models'
one pass over 12 streams from zero states (115 batches of 64: the 88,320 characters of whole
batches).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from tinyllm.checkpoint import load_checkpoint
from tinyllm.ngram import AddK, KneserNey, NGramCounts
from tinyllm.tensor import no_grad
from tinyllm.train import TRAIN_PRESETS, build_tokenizer, load_texts

K_VALUES = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)  # add-k: the k tried on held-out text


def log_softmax_at(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """ln softmax(logits)[target] per position: (..., V), (...) -> (...)."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)  # (..., V)
    log_z = np.log(np.exp(shifted).sum(axis=-1))  # (...)
    return np.take_along_axis(shifted, targets[..., None], axis=-1)[..., 0] - log_z


def gpt_log_probs(model, ids: np.ndarray, stride: int, batch_size: int = 64) -> np.ndarray:
    """ln p(ids[t] | up to T previous ids) for t = 1 .. N - 1, (N - 1,), by strided windows."""
    T = model.config.context_length
    if not 1 <= stride <= T:
        raise ValueError(f"--stride must be in 1..T = {T}, got {stride}")
    last = ids.size - 1 - T  # the last window's start: its last target is ids[N - 1]
    starts = np.unique(np.append(np.arange(0, last + 1, stride), last))  # (W,)
    new = np.diff(starts, prepend=starts[0] - T)  # targets a window adds: T, stride, ..., (W,)
    keep = np.arange(T)[None, :] >= T - new[:, None]  # (W, T): only the new targets
    out = np.full(ids.size - 1, np.nan)
    model.eval()
    with no_grad():
        for first in range(0, starts.size, batch_size):
            s = starts[first:first + batch_size, None] + np.arange(T)  # (W', T) input positions
            logits = model(ids[s]).numpy()  # (W', T, V)
            lp = log_softmax_at(logits, ids[s + 1])  # (W', T): the targets ids[s + 1]
            mask = keep[first:first + batch_size]
            out[s[mask]] = lp[mask]  # target ids[p + 1] goes to out[p]
    assert not np.isnan(out).any(), "a prediction was not scored"
    return out


def recurrent_log_probs(model, ids: np.ndarray, streams: int) -> np.ndarray:
    """ln p(ids[t] | the stream before t) for t = 1 .. N - 1, (N - 1,): ``streams`` contiguous
    pieces, each from a zero state, read T steps at a time with the state carried."""
    T, M = model.config.context_length, ids.size - 1  # M predictions
    L = -(-M // streams)  # steps per stream: M / B rounded up ...
    L = -(-L // T) * T  # ... to whole chunks of T
    x, y = np.zeros(streams * L, np.int64), np.zeros(streams * L, np.int64)
    x[:M], y[:M] = ids[:-1], ids[1:]  # padding after the last real prediction
    x, y = x.reshape(streams, L), y.reshape(streams, L)  # (B, L)
    out = np.zeros((streams, L))
    model.eval()
    state = None
    with no_grad():
        for k in range(0, L, T):
            logits, state = model.forward_with_state(x[:, k:k + T], state)  # (B, T, V)
            out[:, k:k + T] = log_softmax_at(logits.numpy(), y[:, k:k + T])
    return out.reshape(-1)[:M]


def ngram_rows(train_ids, val_ids, V: int, max_order: int) -> list[dict]:
    """Kneser-Ney and add-k for n = 1 .. max_order; add-k's k chosen on held-out training text."""
    start = time.perf_counter()
    counts = NGramCounts(train_ids, V, max_order)
    count_s = time.perf_counter() - start
    cut = int(train_ids.size * 0.9)
    dev_counts = NGramCounts(train_ids[:cut], V, max_order)  # to choose k without val
    rows = []
    for n in range(1, max_order + 1):
        stored = sum(len(c) for c in counts.codes[1:n + 1])
        kn = KneserNey(counts, order=n).log_prob(val_ids)[1:]
        held_out = {k: AddK(dev_counts, k=k, order=n).perplexity(train_ids[cut:])
                    for k in K_VALUES}
        k = min(held_out, key=held_out.get)
        add_k = AddK(counts, k=k, order=n).log_prob(val_ids)[1:]
        rows.append({"model": f"{n}-gram, Kneser-Ney", "size": f"{stored:,} n-grams",
                     "training": f"{count_s:.1f} s (counting)", "loss": -kn.mean()})
        rows.append({"model": f"{n}-gram, add-k (k={k:g})", "size": f"{stored:,} n-grams",
                     "training": f"{count_s:.1f} s (counting)", "loss": -add_k.mean()})
    return rows


def checkpoint_row(name: str, folder: str, tokenizer, val_ids, stride: int, streams: int) -> dict:
    model, saved_tokenizer, info = load_checkpoint(folder)
    if saved_tokenizer.to_dict() != tokenizer.to_dict():
        raise ValueError(f"{folder}: its tokenizer is not the default corpus's 70 characters; "
                         "train it with the default --data and --tokenizer")
    metrics = json.loads((Path(folder) / "metrics.json").read_text())
    start = time.perf_counter()
    if info["settings"]["model"] == "gpt":
        lp = gpt_log_probs(model, val_ids, stride)
    else:
        lp = recurrent_log_probs(model, val_ids, streams)
    eval_s = time.perf_counter() - start
    return {"model": f"{name} ({info['settings']['preset']}, {info['step']} steps)",
            "size": f"{model.num_parameters():,} parameters",
            "training": f"{metrics['wall_s']:.0f} s (1 thread)", "loss": -lp.mean(),
            "trainer": metrics["val_loss"], "eval_s": eval_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpt", help="a `tinyllm train` run folder (GPT)")
    parser.add_argument("--lstm", help="a `tinyllm train --model lstm` run folder")
    parser.add_argument("--rnn", help="a `--model lstm --preset shakespeare-rnn` run folder")
    parser.add_argument("--max-order", type=int, default=6, help="largest n (default 6)")
    parser.add_argument("--stride", type=int, default=32, help="GPT window stride (default 32)")
    parser.add_argument("--streams", type=int, default=16, help="RNN/LSTM streams (default 16)")
    args = parser.parse_args()

    config = TRAIN_PRESETS["shakespeare-char"]
    train_text, val_text = load_texts(config)
    tokenizer = build_tokenizer(config, train_text, val_text)
    train_ids = np.array(tokenizer.encode(train_text), dtype=np.int64)  # (N_train,)
    val_ids = np.array(tokenizer.encode(val_text), dtype=np.int64)  # (N,)
    rows = ngram_rows(train_ids, val_ids, tokenizer.vocab_size, args.max_order)
    for name, folder in (("Elman RNN", args.rnn), ("LSTM", args.lstm), ("GPT", args.gpt)):
        if folder:
            row = checkpoint_row(name, folder, tokenizer, val_ids, args.stride, args.streams)
            print(f"{name}: scored in {row['eval_s']:.1f} s")
            rows.append(row)
    print(f"\n{val_ids.size - 1:,} predictions of the validation text (V = "
          f"{tokenizer.vocab_size}); GPT stride {args.stride}, recurrent streams {args.streams}")
    print("| model | size | training | val loss (nats/char) | perplexity | bits/char | "
          "trainer's val_loss |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        trainer = f"{row['trainer']:.4f}" if "trainer" in row else ""
        print(f"| {row['model']} | {row['size']} | {row['training']} | {row['loss']:.4f} | "
              f"{math.exp(row['loss']):.3f} | {row['loss'] / math.log(2):.3f} | {trainer} |")


if __name__ == "__main__":
    main()
