"""Forgetting, measured (chapter 14, section 14.9): a BERT's masked-token loss before and after
fine-tuning.

    python benchmarks/forgetting.py --bert-run /tmp/bert-run --finetuned /tmp/genre/genre-tinybert

``--bert-run`` is a ``tinyllm train --model bert`` run, ``--finetuned`` a ``tinyllm finetune`` run
made from it (its ``best.safetensors``: the weights the test metrics were measured with). Both
encoders are scored on the same masked batches of the pretraining corpus's validation text (the
last 10% of the seven plays, which neither the pretraining nor the genre training saw as
training data), with the pretrained MLM head, which fine-tuning leaves frozen: any change of the
loss is the encoder's. Prints one JSON line: MLM loss, perplexity (eq. 14.5) and masked-token
accuracy, before and after.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tinyllm.checkpoint import load_checkpoint, load_safetensors
from tinyllm.corpus import load_corpus
from tinyllm.finetune.genre import GENRES
from tinyllm.finetune.head import SequenceClassifier
from tinyllm.objectives import MaskedLMTask


def mlm_scores(task: MaskedLMTask, bert, iters: int) -> dict:
    scores = task.evaluate(bert, "val", iters=iters, seed=0)  # the same batches every call
    return {key: round(scores[key], 4) for key in ("mlm_loss", "perplexity", "mlm_accuracy")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bert-run", required=True, help="a `tinyllm train --model bert` run")
    parser.add_argument("--finetuned", required=True, help="a `tinyllm finetune` run of it")
    parser.add_argument("--iters", type=int, default=40, help="validation batches of 32 pairs")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    bert, tokenizer, _ = load_checkpoint(args.bert_run)
    settings = json.loads((Path(args.finetuned) / "metrics.json").read_text())
    train_text, val_text = load_corpus("shakespeare")
    task = MaskedLMTask(tokenizer, train_text, val_text, batch_size=32,
                        context_length=bert.config.context_length)
    before = mlm_scores(task, bert, args.iters)
    model = SequenceClassifier(bert, len(GENRES), pooling=settings["pooling"])
    model.load_state_dict(load_safetensors(Path(args.finetuned) / "best.safetensors")[0])
    after = mlm_scores(task, model.bert, args.iters)
    print(json.dumps({"pretrained": before, "fine-tuned": after, "iters": args.iters,
                      "finetuned": args.finetuned, "pooling": settings["pooling"],
                      "wall_s": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
