"""The genre study of chapter 14: five classifiers on the held-out test plays, one table.

    tinyllm train --model bert --threads 1 --no-progress --out /tmp/bert-run     # ~10 min, 1 thread
    python benchmarks/genre_table.py --bert-run /tmp/bert-run --out /tmp/genre    # runs the rows
    python benchmarks/genre_table.py --bert-run /tmp/bert-run --out /tmp/genre --reuse  # table only

Task (``tinyllm.finetune.genre``): a speech of at least 4 lines, labelled with its play's genre in
the First Folio's Catalogue (comedy, history, tragedy); split by play, so no character of a test
play is seen in training. Rows, each a ``tinyllm finetune`` run (``ROWS``: the exact options),
except the first:

1. the majority class of the training passages (comedy), predicted for every test passage;
2. tf-idf bag of words + logistic regression (``--model bow``), written in tinyllm;
3. tinyllm's own BERT, pretrained on the seven-play corpus (``tinyllm train --model bert``), then
   fine-tuned with the byte-level BPE it was trained with (at most its 64-token context), mean
   pooling, lr 5e-4 (its pooler with lr 1e-4 reached validation macro-F1 0.40, mean pooling with
   5e-4 0.53 after one epoch: chosen on validation);
4. all-MiniLM-L6-v2 fine-tuned (encoder, pooler and head), 128 WordPiece tokens, on a seeded
   subsample of 1,200 training passages for 2 epochs (300 validation passages): on 2 shared cores
   a MiniLM step of 16 passages costs about 3.6 s of CPU, so the whole training set was too slow;
5. all-MiniLM-L6-v2 frozen, a linear probe on its mean-pooled hidden states (its own pooling),
   on the same 1,200 passages.

Every row reads the same 1,142 test passages; the best epoch (validation macro-F1) is the one
tested. Wall time, one BLAS thread: the Trainer's training loop (with its per-epoch validation)
plus the test pass, from ``metrics.json``; and the whole command (loading the model, tokenizing
or building the tf-idf features too), measured here and kept in ``command_wall.json``.
``--reuse`` reads the rows already in ``--out`` instead of running them again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tinyllm.finetune import genre
from tinyllm.finetune.report import classification_metrics

WALL_NAME = "command_wall.json"  # the whole command's wall time, written next to metrics.json
COMMON = ["--task", "genre", "--threads", "1", "--no-progress"]
ROWS = {  # folder -> (row name, `tinyllm finetune` options); BERT_RUN is --bert-run
    "genre-bow": ("tf-idf + logistic regression (tinyllm)",
                  ["--model", "bow", "--epochs", "15", "--patience", "3", "--lr", "0.02",
                   "--batch-size", "32"]),
    "genre-tinybert": ("tinyllm BERT (pretrained here), fine-tuned",
                       ["--model", "BERT_RUN", "--pooling", "mean", "--epochs", "4", "--patience",
                        "2", "--lr", "5e-4", "--batch-size", "32"]),
    "genre-minilm": ("MiniLM-L6 fine-tuned",
                     ["--model", "minilm", "--epochs", "2", "--lr", "1e-4", "--batch-size", "16",
                      "--max-length", "128", "--train-limit", "1200", "--eval-limit", "300"]),
    "genre-probe": ("MiniLM-L6 frozen, linear probe (mean pooling)",
                    ["--model", "minilm", "--freeze", "--pooling", "mean", "--epochs", "4",
                     "--lr", "1e-3", "--batch-size", "16", "--max-length", "128",
                     "--train-limit", "1200", "--eval-limit", "300"]),
}


def majority_row() -> dict:
    """The majority class of the training passages, predicted for every test passage."""
    started = time.perf_counter()
    _, train_labels = genre.texts_and_labels(genre.load_genre_split("train"))
    _, test_labels = genre.texts_and_labels(genre.load_genre_split("test"))
    majority = int(np.bincount(train_labels).argmax())
    logits = np.zeros((len(test_labels), len(genre.GENRES)))
    logits[:, majority] = 1.0
    metrics = classification_metrics(logits, np.asarray(test_labels), genre.GENRES)
    return {"test": metrics, "wall_s": time.perf_counter() - started, "test_wall_s": 0.0,
            "train_examples": len(train_labels)}


def run_row(folder: Path, options: list[str], bert_run: str | None) -> dict:
    metrics_file = folder / "metrics.json"
    if not metrics_file.is_file():
        if "BERT_RUN" in options and bert_run is None:
            raise SystemExit("--bert-run is needed for the tinyllm BERT row")
        options = [bert_run if option == "BERT_RUN" else option for option in options]
        command = [sys.executable, "-m", "tinyllm", "finetune", *options, *COMMON,
                   "--out", str(folder)]
        print("$", " ".join(command[2:]), flush=True)
        started = time.perf_counter()
        subprocess.run(command, check=True)
        wall = round(time.perf_counter() - started, 1)
        (folder / WALL_NAME).write_text(json.dumps({"command_wall_s": wall}) + "\n")
        print(f"  command wall time {wall:.1f} s", flush=True)
    metrics = json.loads(metrics_file.read_text())
    if (folder / WALL_NAME).is_file():
        metrics.update(json.loads((folder / WALL_NAME).read_text()))
    return metrics


def table(rows: dict[str, dict]) -> str:
    names = [g[:4] for g in genre.GENRES]
    head = ("| | accuracy | macro-F1 | " + " | ".join(f"P / R {n}." for n in names)
            + " | confusion (rows true C, H, T) | train passages | wall: train + test "
            "| wall: command |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, metrics in rows.items():
        test = metrics["test"]
        pr = " | ".join(f"{test[f'precision_{g}']:.3f} / {test[f'recall_{g}']:.3f}"
                        for g in genre.GENRES)
        confusion = " ".join(str(row) for row in test["confusion"])
        wall = metrics["wall_s"] + metrics["test_wall_s"]
        command = metrics.get("command_wall_s")
        lines.append(f"| {name} | {test['accuracy']:.3f} | {test['macro_f1']:.3f} | {pr} | "
                     f"{confusion} | {metrics['train_examples']:,} | {wall:,.1f} s | "
                     + (f"{command:,.1f} s |" if command is not None else "- |"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bert-run", help="a `tinyllm train --model bert` run folder")
    parser.add_argument("--out", default="/tmp/genre", help="folder for the runs and the table")
    parser.add_argument("--reuse", action="store_true", help="only read runs already in --out")
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS),
                        help="which runs to make (default: all)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    rows = {"majority class (comedy)": majority_row()}
    for folder in args.rows:
        name, options = ROWS[folder]
        if args.reuse and not (out / folder / "metrics.json").is_file():
            print(f"(no {out / folder}/metrics.json: row {name!r} left out)")
            continue
        rows[name] = run_row(out / folder, options, args.bert_run)
    markdown = table(rows)
    balance = {split: genre.class_balance(genre.load_genre_split(split))
               for split in genre.GENRE_SPLITS}
    print(markdown)
    print("class balance (passages, plays):", json.dumps(balance))
    out.mkdir(parents=True, exist_ok=True)
    (out / "genre_table.md").write_text(markdown + "\n")


if __name__ == "__main__":
    main()
