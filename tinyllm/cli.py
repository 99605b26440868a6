"""The ``tinyllm`` command (also ``python -m tinyllm``): train, sample, fill, bench.

    tinyllm train                         # character-level GPT on Shakespeare, then a sample
    tinyllm train --model bert            # BERT pretraining (MLM + NSP) on Shakespeare
    tinyllm train --data my.txt           # any UTF-8 text file (last 10% = validation)
    tinyllm sample --checkpoint runs/shakespeare-char --prompt "ROMEO:"
    tinyllm fill --checkpoint runs/shakespeare-bert --text "To be, or not to [MASK]"
    tinyllm bench                         # ms per step, tokens/s, GFLOP/s (and PyTorch's)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np

from tinyllm.backend import DeviceError
from tinyllm.checkpoint import CheckpointError
from tinyllm.corpus import CorpusError
from tinyllm.runtime import limit_blas_threads
from tinyllm.tokenizers import TokenizerError

# errors a user can fix: printed as one line, no traceback
USER_ERRORS = (FileNotFoundError, CheckpointError, CorpusError, TokenizerError, DeviceError,
               ValueError, KeyError)


def _train_parser(commands) -> None:
    p = commands.add_parser("train", help="train a GPT (default) or a BERT",
                            description="Train a model and write checkpoint, loss curve and "
                                        "metrics to --out.")
    p.add_argument("--model", choices=("gpt", "bert"), default="gpt",
                   help="gpt: autoregressive LM (preset shakespeare-char); "
                        "bert: MLM + NSP (shakespeare-bert)")
    p.add_argument("--preset",
                   help="model shape preset (default: shakespeare-char / shakespeare-bert)")
    p.add_argument("--data", help="train on this UTF-8 text file instead of the Shakespeare corpus")
    p.add_argument("--corpus", choices=("shakespeare", "shakespeare-all"),
                   help="bundled corpus: 7 plays (~0.9 MB, default) or all 37 plays (~4.6 MB)")
    p.add_argument("--tokenizer", choices=("char", "bpe"),
                   help="default: char for GPT, bpe for BERT")
    p.add_argument("--iters", type=int, help="optimizer steps (default 2000 GPT, 1500 BERT)")
    p.add_argument("--batch-size", type=int, help="sequences per micro-batch")
    p.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--eval-interval", type=int, help="steps between validation estimates")
    p.add_argument("--sample-tokens", type=int,
                   help="length of the sample printed after GPT training")
    p.add_argument("--seed", type=int, help="random seed (initialisation, batches, dropout)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="cuda needs CuPy and a GPU")
    p.add_argument("--threads", type=int,
                   help="BLAS threads for matrix products "
                        "(default: all cores; 1 is faster on a busy machine)")
    p.add_argument("--out", help="output folder (default runs/<preset>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run saved in --out exactly, with its own settings "
                   "(--iters may extend it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _sample_parser(commands) -> None:
    p = commands.add_parser("sample", help="generate text from a trained GPT",
                            description="Continue a prompt with a GPT checkpoint written by "
                                        "`tinyllm train`.")
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint file, or the run folder that holds it")
    p.add_argument("--prompt", default="\n", help='text to continue (default: a newline)')
    p.add_argument("--tokens", type=int, default=500, help="number of new tokens (default 500)")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="0 = greedy; higher = more random")
    p.add_argument("--top-k", type=int, help="sample only among the k most likely tokens")
    p.add_argument("--top-p", type=float,
                   help="sample only within the top-p probability mass (nucleus)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the sampler")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute every position (slower, same output)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")


def _fill_parser(commands) -> None:
    p = commands.add_parser("fill", help="let a trained BERT guess [MASK] tokens",
                            description="Print BERT's most likely tokens for every [MASK] in "
                                        "--text.")
    p.add_argument("--checkpoint", required=True, help="BERT checkpoint file, or the run folder")
    p.add_argument("--text", required=True,
                   help='text with [MASK] tokens, e.g. "To be, or not to [MASK]"')
    p.add_argument("--top", type=int, default=5, help="candidates shown per mask (default 5)")


def _bench_parser(commands) -> None:
    p = commands.add_parser("bench", help="time training steps (and PyTorch's, if installed)",
                            description="ms per training step, tokens/s, GFLOP/s "
                                        "and fraction of matmul peak.")
    p.add_argument("--steps", type=int, default=20, help="timed steps per model (default 20)")
    p.add_argument("--quick", action="store_true", help="only the small GPT preset")
    p.add_argument("--threads", type=int, help="BLAS (and PyTorch) threads (default: all cores)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinyllm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(commands)
    _sample_parser(commands)
    _fill_parser(commands)
    _bench_parser(commands)
    return parser


def _train_config(args):
    from tinyllm.train import TRAIN_PRESETS, saved_train_config

    base = TRAIN_PRESETS["shakespeare-char" if args.model == "gpt" else "shakespeare-bert"]
    out = args.out or f"runs/{args.preset or base.preset}"
    if args.resume:  # the run's own settings; only what the command line names changes (--iters)
        base = saved_train_config(out)
    overrides = {"preset": args.preset, "data": args.data, "corpus": args.corpus,
                 "tokenizer": args.tokenizer, "iters": args.iters, "batch_size": args.batch_size,
                 "grad_accum": args.grad_accum, "lr": args.lr, "eval_interval": args.eval_interval,
                 "sample_tokens": args.sample_tokens, "seed": args.seed, "device": args.device}
    config = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    for name in ("iters", "batch_size", "grad_accum", "eval_interval"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, "
                             f"got {getattr(config, name)}")
    return dataclasses.replace(config, out_dir=out)


def cmd_train(args) -> None:
    from tinyllm.train import train

    config = _train_config(args)
    if args.threads is not None:
        limit_blas_threads(args.threads)
    metrics = train(config, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(metrics, indent=2))
    if metrics.get("interrupted"):
        return
    print(f"wrote {config.out_dir}/checkpoint.safetensors, loss.png and metrics.json")
    if config.model == "gpt" and config.sample_tokens > 0:
        print("\n--- sample (temperature 0.8) ---")
        print(generate_text(config.out_dir, "\n", config.sample_tokens, temperature=0.8, seed=0))


def generate_text(checkpoint: str, prompt: str, tokens: int, temperature: float = 0.8, top_k=None,
                  top_p=None, seed: int = 0, use_cache: bool = True, device: str = "cpu") -> str:
    """Load a GPT checkpoint and continue ``prompt`` by ``tokens`` tokens; returns both, joined."""
    from tinyllm.checkpoint import load_checkpoint
    from tinyllm.models import GPT

    model, tokenizer, _ = load_checkpoint(checkpoint)
    if not isinstance(model, GPT):
        raise ValueError(f"{checkpoint} holds a BERT, which does not generate text; "
                         "use `tinyllm fill` for it")
    if not prompt:
        raise ValueError("the prompt is empty: give at least one character, e.g. --prompt $'\\n'")
    ids = np.array([tokenizer.encode(prompt)], dtype=np.int64)  # (1, T0); unknown characters raise
    model.to(device)
    out = model.generate(ids, tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                         rng=np.random.default_rng(seed), use_cache=use_cache)
    return tokenizer.decode(out[0].tolist())


def cmd_sample(args) -> None:
    if args.tokens < 0:
        raise ValueError(f"--tokens must be >= 0, got {args.tokens}")
    print(generate_text(args.checkpoint, args.prompt, args.tokens, args.temperature, args.top_k,
                        args.top_p, args.seed, not args.no_cache, args.device))


def cmd_fill(args) -> None:
    from tinyllm.checkpoint import load_checkpoint
    from tinyllm.models import BERT
    from tinyllm.tensor import no_grad

    if args.top < 1:
        raise ValueError(f"--top must be a positive integer, got {args.top}")
    model, tokenizer, _ = load_checkpoint(args.checkpoint)
    if not isinstance(model, BERT):
        raise ValueError(f"{args.checkpoint} holds a GPT; `tinyllm fill` needs a BERT checkpoint")
    special = tokenizer.special_tokens
    # byte-level BPE keeps a word's leading space inside the word's token (" question"), so the
    # space before
    # a [MASK] belongs to the masked token: drop it, or the mask would stand after a lone-space
    # token
    text = args.text.replace(" [MASK]", "[MASK]")
    ids = [special["[CLS]"], *tokenizer.encode(text), special["[SEP]"]]
    masked = [i for i, t in enumerate(ids) if t == special["[MASK]"]]
    if not masked:
        raise ValueError('the text has no [MASK] token to fill, '
                         'e.g. --text "To be, or not to [MASK]"')
    model.eval()
    with no_grad():
        logits, _ = model(np.array([ids]))  # (1, T, V)
    for position in masked:
        row = logits.numpy()[0, position]
        best = np.argsort(-row)[:args.top]
        probs = np.exp(row - row.max())
        probs /= probs.sum()
        guesses = ", ".join(f"{tokenizer.decode([int(t)])!r} {probs[t]:.2f}" for t in best)
        print(f"[MASK] at token {position}: {guesses}")


def cmd_bench(args) -> None:
    from tinyllm.bench import run_benchmarks

    if args.threads is not None:
        limit_blas_threads(args.threads)
    run_benchmarks(steps=args.steps, quick=args.quick)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"train": cmd_train, "sample": cmd_sample, "fill": cmd_fill, "bench": cmd_bench}
    try:
        handlers[args.command](args)
    except USER_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"tinyllm {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0
