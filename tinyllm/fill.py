"""``tinyllm fill``: a trained BERT guesses the [MASK] tokens of a text (chapter 12).

    tinyllm fill --checkpoint runs/shakespeare-bert --text "To be, or not to [MASK]"
"""

from __future__ import annotations

import numpy as np

from tinyllm.checkpoint import load_checkpoint
from tinyllm.models import BERT
from tinyllm.tensor import no_grad


def add_parser(commands) -> None:
    """``tinyllm fill``'s arguments (cli.py calls this)."""
    p = commands.add_parser("fill", help="let a trained BERT guess [MASK] tokens",
                            description="Print BERT's most likely tokens for every [MASK] in "
                                        "--text.")
    p.add_argument("--checkpoint", required=True, help="BERT checkpoint file, or the run folder")
    p.add_argument("--text", required=True,
                   help='text with [MASK] tokens, e.g. "To be, or not to [MASK]"')
    p.add_argument("--top", type=int, default=5, help="candidates shown per mask (default 5)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.set_defaults(handler=run_command)


def run_command(args) -> None:
    """``tinyllm fill``: BERT's guesses for every [MASK] (chapter 12)."""
    if args.top < 1:
        raise ValueError(f"--top must be a positive integer, got {args.top}")
    model, tokenizer, _ = load_checkpoint(args.checkpoint)
    if not isinstance(model, BERT):
        raise ValueError(f"{args.checkpoint} holds a {type(model).__name__}; `tinyllm fill` "
                         "needs a BERT checkpoint")
    if args.top > tokenizer.vocab_size:
        raise ValueError(f"--top {args.top} is more than the V = {tokenizer.vocab_size} tokens "
                         "of this model")
    special = tokenizer.special_tokens
    # byte-level BPE keeps a word's leading space inside the word's token (" question"), so the
    # space before a [MASK] belongs to the masked token: drop it, or the mask would stand after a
    # lone-space token
    text = args.text.replace(" [MASK]", "[MASK]")
    ids = [special["[CLS]"], *tokenizer.encode(text), special["[SEP]"]]
    masked = [i for i, t in enumerate(ids) if t == special["[MASK]"]]
    if not masked:
        raise ValueError('the text has no [MASK] token to fill, '
                         'e.g. --text "To be, or not to [MASK]"')
    if len(ids) > model.config.context_length:
        raise ValueError(f"--text is {len(ids)} tokens with [CLS] and [SEP], longer than "
                         f"context_length = {model.config.context_length} of this BERT: "
                         "shorten the text")
    model.to(args.device).eval()
    with no_grad():
        logits, _ = model(np.array([ids]))  # (1, T, V)
    rows = logits.numpy()[0]  # (T, V): one copy to the host for every mask
    for position in masked:
        row = rows[position]
        best = np.argsort(-row)[:args.top]
        probs = np.exp(row - row.max())
        probs /= probs.sum()
        guesses = ", ".join(f"{tokenizer.decode([int(t)])!r} {probs[t]:.2f}" for t in best)
        print(f"[MASK] at token {position}: {guesses}")
