"""``tinyllm finetune``: fine-tune a BERT (or the bag-of-words baseline) on a labelled task (ch 14).

    tinyllm finetune --model minilm --task genre --out runs/genre-minilm
    tinyllm finetune --model minilm --freeze --lr 1e-3 --out runs/genre-probe      # linear probe
    tinyllm finetune --model runs/shakespeare-bert --out runs/genre-bert   # a tinyllm BERT run
    tinyllm finetune --model bow --lr 0.05 --out runs/genre-bow            # tf-idf + logistic
    tinyllm finetune --resume --model minilm --out runs/genre-minilm       # the same options

``--model`` is ``minilm`` (all-MiniLM-L6-v2, fetched offline), ``bow``, a Hugging Face BERT folder
(config.json + model.safetensors) or a ``tinyllm train --model bert`` run (its checkpoint holds
the BPE tokenizer it was trained with). The run folder gets ``checkpoint.safetensors``,
``best.safetensors``, ``metrics.json`` and ``confusion.png`` (``tinyllm.finetune.trainer``).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from tinyllm.finetune import genre
from tinyllm.finetune.bow import BagOfWords, BagOfWordsDataset, LogisticRegression
from tinyllm.finetune.data import TokenDataset, encode_texts, special_ids, subsample
from tinyllm.finetune.head import POOLINGS, SequenceClassifier
from tinyllm.finetune.report import classification_metrics
from tinyllm.finetune.trainer import Trainer, TrainerConfig
from tinyllm.runs import check_run_folder
from tinyllm.runtime import limit_blas_threads

TASKS = ("genre",)
DEFAULT_MAX_LENGTH = 128  # tokens per passage, [CLS] and [SEP] included


def add_parser(commands) -> None:
    """``tinyllm finetune``'s arguments (cli.py calls this)."""
    p = commands.add_parser("finetune", help="fine-tune a BERT on a labelled task (chapter 14)",
                            description="Fine-tune --model on --task; write checkpoint, best "
                                        "weights, metrics.json and confusion.png to --out.")
    p.add_argument("--model", default="minilm",
                   help="minilm (all-MiniLM-L6-v2), bow (tf-idf logistic regression), a Hugging "
                        "Face BERT folder, or a `tinyllm train --model bert` run folder")
    p.add_argument("--task", choices=TASKS, default="genre",
                   help="genre: Folio genre (comedy, history, tragedy) of a speech, split by play")
    p.add_argument("--epochs", type=int, default=3, help="passes over the training set")
    p.add_argument("--lr", type=float, help="peak learning rate (default 5e-5; --freeze and bow "
                                            "1e-3)")
    p.add_argument("--batch-size", type=int, default=16, help="examples per step")
    p.add_argument("--max-length", type=int,
                   help=f"tokens per passage (default {DEFAULT_MAX_LENGTH}, at most the model's "
                        "context length)")
    p.add_argument("--freeze", action="store_true",
                   help="linear probe: only the classification head learns")
    p.add_argument("--pooling", choices=POOLINGS, default="auto",
                   help="auto: BERT's pooler if the checkpoint has one, else the [CLS] vector")
    p.add_argument("--patience", type=int, default=0,
                   help="early stopping: epochs without a better validation macro-F1 (0: off)")
    p.add_argument("--warmup-ratio", type=float, default=0.1, help="fraction of steps warming up")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW decay on matrices")
    p.add_argument("--train-limit", type=int,
                   help="use this many training passages, a seeded random subsample")
    p.add_argument("--eval-limit", type=int,
                   help="use this many validation passages, a seeded random subsample")
    p.add_argument("--test-limit", type=int,
                   help="use this many test passages (default: all; for quick checks only)")
    p.add_argument("--seed", type=int, default=1337, help="head, order, dropout, subsample")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (give the same options)")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, help="BLAS threads (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_command)


def load_encoder(source: str):
    """(BERT, tokenizer, description) from ``minilm``, a Hugging Face folder or a tinyllm run."""
    from tinyllm.checkpoint import load_checkpoint
    from tinyllm.models import BERT
    from tinyllm.pretrained import AbsentHeadsWarning, fetch_minilm, load_bert
    from tinyllm.wordpiece import WordPieceTokenizer

    if source == "minilm" or (Path(source) / "config.json").is_file():
        folder = fetch_minilm() if source == "minilm" else Path(source)
        with warnings.catch_warnings():  # a bare BertModel lacks the MLM and NSP heads: unused
            warnings.simplefilter("ignore", AbsentHeadsWarning)
            bert = load_bert(folder)
        lowercase = source == "minilm" or "uncased" in str(folder).lower()
        return bert, WordPieceTokenizer.from_vocab(folder / "vocab.txt", lowercase=lowercase), \
            f"Hugging Face BERT {folder}"
    if not Path(source).exists():
        raise FileNotFoundError(f"--model {source}: no such folder or file; give minilm, bow, a "
                                "Hugging Face BERT folder or a `tinyllm train --model bert` run")
    model, tokenizer, info = load_checkpoint(source)
    if not isinstance(model, BERT):
        raise ValueError(f"--model {source} holds a {type(model).__name__}; fine-tuning needs a "
                         "BERT (train one with `tinyllm train --model bert`)")
    return model, tokenizer, f"tinyllm BERT run {source} (step {info['step']})"


def _genre_data(args):
    splits = {name: genre.load_genre_split(name) for name in genre.GENRE_SPLITS}
    data = {name: genre.texts_and_labels(passages) for name, passages in splits.items()}
    limits = {"train": args.train_limit, "validation": args.eval_limit, "test": args.test_limit}
    for name, (texts, labels) in data.items():
        keep = subsample(len(texts), limits[name], args.seed)
        data[name] = ([texts[i] for i in keep], np.asarray(labels)[keep])
    balance = {name: np.bincount(labels, minlength=len(genre.GENRES)).tolist()
               for name, (_, labels) in data.items()}
    return data, balance


def build(args):
    """(model, train, validation, test datasets, run info) for the command's options."""
    data, balance = _genre_data(args)
    rng = np.random.default_rng(args.seed)
    info = {"model": args.model, "task": args.task, "labels": list(genre.GENRES),
            "class_balance": balance, "freeze": args.freeze, "train_limit": args.train_limit,
            "eval_limit": args.eval_limit, "test_limit": args.test_limit}
    if args.model == "bow":
        bag = BagOfWords().fit(data["train"][0])
        datasets = [BagOfWordsDataset(bag.transform(texts), labels)
                    for texts, labels in data.values()]
        info.update(features=bag.width, source="tf-idf bag of words")
        return LogisticRegression(bag.width, len(genre.GENRES), rng=rng), *datasets, info
    bert, tokenizer, source = load_encoder(args.model)
    context = bert.config.context_length
    max_length = args.max_length or min(DEFAULT_MAX_LENGTH, context)
    if not 3 <= max_length <= context:
        raise ValueError(f"--max-length must be from 3 to the context length {context} of this "
                         f"BERT, got {max_length}")
    model = SequenceClassifier(bert, len(genre.GENRES), pooling=args.pooling,
                               freeze=args.freeze, rng=rng)
    pad = special_ids(tokenizer)["[PAD]"]
    datasets = [TokenDataset(encode_texts(tokenizer, texts, max_length), labels, pad)
                for texts, labels in data.values()]
    truncated = float(np.mean(datasets[0].lengths >= max_length))
    info.update(source=source, pooling=model.pooling, max_length=max_length,
                parameters=model.num_parameters(),
                trainable_parameters=sum(p.size for p in model.trainable_parameters()),
                train_truncated=round(truncated, 4))
    return model, *datasets, info


def run_command(args) -> None:
    """``tinyllm finetune``: build the model and data, train, print the test metrics."""
    import json

    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, "
                             f"got {getattr(args, name)}")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr must be a positive finite number, got {args.lr}")
    if args.threads is not None:
        limit_blas_threads(args.threads)
    lr = args.lr or (1e-3 if args.freeze or args.model == "bow" else 5e-5)
    config = TrainerConfig(epochs=args.epochs, batch_size=args.batch_size, lr=lr,
                           warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay,
                           patience=args.patience, seed=args.seed, device=args.device,
                           out_dir=args.out)
    config.check()
    check_run_folder(Path(args.out), resume=args.resume, overwrite=args.overwrite)  # before loading
    model, train, validation, test, info = build(args)
    print(f"finetune {args.model} on {args.task}: {len(train)} training, {len(validation)} "
          f"validation, {len(test)} test passages (comedy, history, tragedy: "
          f"{info['class_balance']})", flush=True)
    trainer = Trainer(model, train, validation,
                      lambda logits, labels: classification_metrics(logits, labels, genre.GENRES),
                      config, label_names=genre.GENRES, run_info=info)
    metrics = trainer.train(resume=args.resume, overwrite=args.overwrite, test_dataset=test,
                            progress=not args.no_progress)
    if metrics.get("interrupted"):
        print(json.dumps(metrics))
        return
    test_metrics = {k: v for k, v in metrics["test"].items() if k != "confusion"}
    print(json.dumps({"best_epoch": metrics["best_epoch"], "test": test_metrics}, indent=1))
    print("confusion (rows: true comedy, history, tragedy; columns: predicted):",
          metrics["test"]["confusion"])
    print(f"wrote {args.out}/checkpoint.safetensors, best.safetensors, metrics.json and "
          "confusion.png")
