"""The ``tinyllm`` command (also ``python -m tinyllm``): one sub-command per task.

    tinyllm train                         # character-level GPT on Shakespeare, then a sample
    tinyllm train --model bert            # BERT pretraining (MLM + NSP) on Shakespeare
    tinyllm train --model lstm            # an LSTM language model, truncated BPTT
    tinyllm train --data my.txt           # any UTF-8 text file (last 10% = validation)
    tinyllm sample --checkpoint runs/shakespeare-char --prompt "ROMEO:"
    tinyllm fill --checkpoint runs/shakespeare-bert --text "To be, or not to [MASK]"
    tinyllm search --query "a storm at sea"  # the nearest speeches, MiniLM (ch. 13)
    tinyllm finetune --model minilm --task genre --out runs/genre-minilm  # ch. 14
    tinyllm bench                         # ms per step, tokens/s, GFLOP/s (and PyTorch's)
    tinyllm translate --checkpoint runs/folio-modern --text "Heere Master: What cheere?"
    tinyllm quantize --checkpoint runs/shakespeare-char --bits 8 --out q8.safetensors  # ch. 16
    tinyllm prune --checkpoint runs/shakespeare-char --sparsity 0.5 --out runs/pruned50
    tinyllm export --checkpoint runs/shakespeare-char --format hf --out hf/shakespeare-char
"""

from __future__ import annotations

import argparse
import codecs
import dataclasses
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from tinyllm import bughunt, check, exercise, fill, search, translate
from tinyllm import export as hf_export
from tinyllm.backend import DeviceError, check_device
from tinyllm.checkpoint import CheckpointError
from tinyllm.compress import commands as compress_commands
from tinyllm.corpus import CorpusError
from tinyllm.finetune import commands as finetune_commands
from tinyllm.recipe import TRAINING_KINDS
from tinyllm.runtime import limit_blas_threads
from tinyllm.tokenizers import CharTokenizer, TokenizerError

# errors a user can fix: printed as one line, no traceback
USER_ERRORS = (FileNotFoundError, CheckpointError, CorpusError, TokenizerError, DeviceError,
               ValueError, KeyError)


def _train_parser(commands) -> None:
    p = commands.add_parser("train", help="train a GPT (default), a BERT or an LSTM",
                            description="Train a model and write checkpoint, loss curve and "
                                        "metrics to --out.")
    p.add_argument("--model", choices=tuple(TRAINING_KINDS), default="gpt",
                   help="gpt: autoregressive LM (preset shakespeare-char); "
                        "bert: MLM + NSP (shakespeare-bert); "
                        "lstm: recurrent LM, truncated BPTT (shakespeare-lstm)")
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
                   help="length of the sample printed after GPT or LSTM training")
    p.add_argument("--seed", type=int, help="random seed (initialisation, batches, dropout)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="cuda needs CuPy and a GPU")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"),
                   help="compute format; fp16/bf16 keep float32 master weights (chapter 16)")
    p.add_argument("--threads", type=int,
                   help="BLAS threads for matrix products "
                        "(default: all cores; 1 is faster on a busy machine)")
    p.add_argument("--out", help="output folder (default runs/<preset>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run saved in --out exactly, with its own settings "
                   "(--iters may extend it)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out (without it, a folder holding a run is refused;"
                        " the old checkpoint stays until the new run saves its first)")
    p.add_argument("--allow-changed-data", action="store_true",
                   help="with --resume: continue even if the training text's size or SHA-256 "
                        "differs from what the checkpoint recorded")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_train)


def _sample_parser(commands) -> None:
    p = commands.add_parser("sample", help="generate text from a trained GPT or LSTM",
                            description="Continue a prompt with a GPT or LSTM checkpoint written "
                                        "by `tinyllm train`.")
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint file, or the run folder that holds it")
    p.add_argument("--prompt", help="text to continue (default: a newline, or the model's first "
                                    "character if its text had no newline)")
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
    p.set_defaults(handler=cmd_sample)


def _bench_parser(commands) -> None:
    p = commands.add_parser("bench", help="time training steps (and PyTorch's, if installed)",
                            description="ms per training step, tokens/s, GFLOP/s "
                                        "and fraction of matmul peak.")
    p.add_argument("--steps", type=int, default=20, help="timed steps per model (default 20)")
    p.add_argument("--quick", action="store_true", help="only the small GPT preset")
    p.add_argument("--threads", type=int, help="BLAS (and PyTorch) threads (default: all cores)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: tinyllm on the GPU (CuPy), and PyTorch CUDA if available")
    p.set_defaults(handler=cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinyllm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # each sub-parser names its function: set_defaults(handler=...); commands of later chapters
    # live with their code and add their own sub-parsers
    _train_parser(commands)
    _sample_parser(commands)
    fill.add_parser(commands)  # chapter 12
    search.add_parser(commands)  # chapter 13
    finetune_commands.add_parser(commands)  # chapter 14
    _bench_parser(commands)
    translate.add_parser(commands)  # chapter 15
    compress_commands.add_parsers(commands)  # quantize, prune (chapter 16)
    hf_export.add_parser(commands)  # a GPT or BERT as a Hugging Face checkpoint (chapter 13)
    check.add_parser(commands)  # a run against its expected-result card (chapter 11)
    bughunt.add_parser(commands)  # put a known bug in, find the tests that catch it
    exercise.add_parser(commands)  # grade your exercises with the chapter's tests
    return parser


def _train_config(args):
    from tinyllm.runs import RunError, check_out_dir
    from tinyllm.train import TRAIN_PRESETS, saved_train_config

    if args.resume and args.overwrite:
        raise RunError("--resume continues the run in --out and --overwrite replaces it: "
                       "give one of them, not both")
    if args.allow_changed_data and not args.resume:
        raise RunError("--allow-changed-data only applies with --resume")
    base = TRAIN_PRESETS[TRAINING_KINDS[args.model].train_preset]  # the kind's recipe, unless
    if args.preset in TRAIN_PRESETS and TRAIN_PRESETS[args.preset].model == args.model:
        base = TRAIN_PRESETS[args.preset]  # the preset has one of its own (folio-words)
    out = args.out or f"runs/{args.preset or base.preset}"
    if args.resume:  # the run's own settings; only what the command line names changes (--iters)
        check_out_dir(Path(out), create=False)  # a file is not a run folder
        base = saved_train_config(out)
    overrides = {"preset": args.preset, "data": args.data, "corpus": args.corpus,
                 "tokenizer": args.tokenizer, "iters": args.iters, "batch_size": args.batch_size,
                 "grad_accum": args.grad_accum, "lr": args.lr, "eval_interval": args.eval_interval,
                 "sample_tokens": args.sample_tokens, "seed": args.seed, "device": args.device,
                 "precision": args.precision}
    config = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    for name in ("iters", "batch_size", "grad_accum", "eval_interval"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, "
                             f"got {getattr(config, name)}")
    if not math.isfinite(config.lr):
        raise ValueError(f"--lr must be a finite number, got {config.lr}")
    return dataclasses.replace(config, out_dir=out)


def cmd_train(args) -> None:
    from tinyllm.train import train

    config = _train_config(args)
    set_threads("train", args.threads)
    metrics = train(config, resume=args.resume, progress=not args.no_progress,
                    overwrite=args.overwrite, allow_changed_data=args.allow_changed_data)
    if "rank" in metrics:  # an MPI rank other than 0 (tinyllm.distributed): rank 0 reports
        return
    print(json.dumps(metrics, indent=2, allow_nan=False))  # train() wrote inf and nan as null
    if metrics.get("interrupted"):
        return
    print(f"wrote {config.out_dir}/checkpoint.safetensors, loss.png and metrics.json")
    if TRAINING_KINDS[config.model].generates_text and config.sample_tokens > 0:
        print("\n--- sample (temperature 0.8) ---")
        print(generate_text(config.out_dir, None, config.sample_tokens, temperature=0.8, seed=0,
                            device=config.device))  # on the device it was trained on


def generate_text(checkpoint: str, prompt: str | None, tokens: int, temperature: float = 0.8,
                  top_k=None, top_p=None, seed: int = 0, use_cache: bool = True,
                  device: str = "cpu", on_text=None) -> str:
    """Load a GPT or LSTM checkpoint, continue ``prompt`` by ``tokens`` tokens; returns both.

    ``prompt=None``: a newline, or the first character of the model's alphabet if a character
    model never saw a newline (a text file without line breaks).

    ``on_text(piece)``, if given, receives the text as it is made: the prompt, then each token's
    characters (a token that ends inside a UTF-8 character waits for the next one); the pieces
    join to the returned text. Every argument is checked before the checkpoint is read.
    """
    from tinyllm.checkpoint.quantized import load_for_inference
    from tinyllm.sampling import check_sampling

    check_sampling(temperature, top_k, top_p)
    if tokens < 0:
        raise ValueError(f"--tokens must be >= 0, got {tokens}")
    if prompt is not None and not prompt:
        raise ValueError("the prompt is empty: give at least one character, e.g. --prompt $'\\n'")
    model, tokenizer, _ = load_for_inference(checkpoint)  # a training or a quantized checkpoint
    if not hasattr(model, "generate_stream"):
        raise ValueError(f"{checkpoint} holds a {type(model).__name__}, which does not generate "
                         "text; use `tinyllm fill` for it")
    if prompt is None:  # a newline, unless a character model never saw one
        chars = getattr(tokenizer, "chars", None)  # CharTokenizer only: BPE knows every byte
        prompt = "\n" if chars is None or "\n" in chars else chars[0]
    vocab_size = tokenizer.vocab_size
    if top_k is not None and top_k > vocab_size:
        raise ValueError(f"--top-k {top_k} is more than the V = {vocab_size} tokens of this "
                         f"model: use 1 to {vocab_size}, or leave it out to keep every token")
    ids = _encode_prompt(tokenizer, prompt)
    model.to(device)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # bytes may end mid-char
    pieces: list[str] = []

    def emit(piece: str) -> None:
        pieces.append(piece)
        if on_text is not None and piece:
            on_text(piece)

    emit(decoder.decode(tokenizer.decode_bytes(ids)))
    for next_ids in model.generate_stream(np.array([ids], dtype=np.int64), tokens, temperature,
                                          top_k, top_p, np.random.default_rng(seed), use_cache):
        emit(decoder.decode(tokenizer.decode_bytes([int(next_ids[0])])))  # next_ids: (1,)
    emit(decoder.decode(b"", final=True))  # the end: whatever the decoder still holds
    return "".join(pieces)


def _encode_prompt(tokenizer, prompt: str) -> list[int]:
    """The prompt's ids; a character the model's CharTokenizer lacks is named, with what to do."""
    try:
        return tokenizer.encode(prompt)
    except TokenizerError:
        if not isinstance(tokenizer, CharTokenizer):
            raise
        known = "".join(tokenizer.chars)
        raise TokenizerError(f"--prompt has {tokenizer.unknown_characters(prompt)}; this model "
                             f"knows only the {len(known)} characters {known!r}: remove the "
                             "others, or train a model with --tokenizer bpe (every character "
                             "is known: byte-level)") from None


def cmd_sample(args) -> None:
    def show(piece: str) -> None:  # each token as soon as it is drawn
        sys.stdout.write(piece)
        sys.stdout.flush()

    generate_text(args.checkpoint, args.prompt, args.tokens, args.temperature, args.top_k,
                  args.top_p, args.seed, not args.no_cache, args.device, on_text=show)
    print()


def cmd_bench(args) -> None:
    from tinyllm.bench import run_benchmarks

    if args.steps < 1:
        raise ValueError(f"--steps must be a positive integer, got {args.steps}")
    device = check_device(args.device)  # no GPU: the one-line "unavailable" error first
    set_threads("bench", args.threads)
    run_benchmarks(steps=args.steps, quick=args.quick, device=device)


def set_threads(command: str, threads: int | None) -> None:
    """--threads: at most one BLAS thread per core (more only spin); one warning line if capped."""
    if threads is None:
        return
    used = limit_blas_threads(threads)
    if used < threads:
        print(f"tinyllm {command}: warning: --threads {threads} is more than the {used} core(s) "
              f"this process may use; using {used}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for name in ("seed", "sample_tokens", "tokens"):  # never negative, in any command
            value = getattr(args, name, None)
            if value is not None and value < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
        args.handler(args)
    except USER_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"tinyllm {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while sampling or benchmarking (train saves and returns)
        print(f"\ntinyllm {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tinyllm sample | head`: the reader left; nothing more to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that Python's exit does not fail flushing
        return 141
    return 0
