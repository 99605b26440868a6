"""The training recipe: the settings of a run and the pieces built from them (chapters 11, 12, 18).

A :class:`TrainConfig` names a model kind and a shape preset; this module turns it into the text,
the tokenizer, the model, the task (batches, loss, validation), the optimizer and the schedule.
``tinyllm.train`` runs the loop on them. The kinds ``tinyllm train --model`` knows are one table,
:data:`TRAINING_KINDS`: adding a kind is one entry there (and its model class in
``tinyllm.checkpoint.validate.MODEL_KINDS``, so that checkpoints know it).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tinyllm import optim, runs
from tinyllm.checkpoint import CHECKPOINT_NAME, saved_settings
from tinyllm.corpus import load_corpus, load_text
from tinyllm.models import (
    BERT,
    BERT_PRESETS,
    GPT,
    GPT_PRESETS,
    LSTM_PRESETS,
    LSTMLanguageModel,
    Seq2Seq,
)
from tinyllm.nn import Module
from tinyllm.objectives import (
    BERT_SPECIAL_TOKENS,
    LanguageModelTask,
    MaskedLMTask,
    StreamTask,
    translation,
)
from tinyllm.tokenizers import BPETokenizer, CharTokenizer


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe. Defaults: nanoGPT's CPU recipe for character-level Shakespeare."""

    model: str = "gpt"  # a key of TRAINING_KINDS: "gpt" (causal LM), "bert" (MLM + NSP), "lstm"
    preset: str = "shakespeare-char"  # model shape: a key of the kind's presets (GPT_PRESETS, ...)
    data: str | None = None  # a UTF-8 text file (last 10% = validation); None: a bundled corpus
    corpus: str = "shakespeare"  # bundled corpus when data is None ("shakespeare-all": 37 plays)
    tokenizer: str = "char"  # "char" or "bpe" (byte-level BPE trained on the training text)
    bpe_vocab_size: int = 2000  # BPE vocabulary: 256 bytes + merges + special tokens
    iters: int = 2000  # optimizer steps
    batch_size: int = 12  # sequences per micro-batch (for "lstm": the B parallel streams)
    grad_accum: int = 1  # micro-batches per step (effective batch = batch_size * grad_accum)
    lr: float = 1e-3  # peak learning rate, reached after the warm-up
    min_lr: float = 1e-4  # learning rate at the end of the cosine decay
    warmup_iters: int = 100  # linear warm-up steps
    weight_decay: float = 0.1  # AdamW decay on matrices (not on biases and LayerNorms)
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.99  # AdamW second-moment decay (0.99: small batches, nanoGPT)
    grad_clip: float = 1.0  # clip the global gradient norm to this (0: off)
    mask_prob: float = 0.15  # BERT: fraction of tokens chosen for the MLM loss
    eval_interval: int = 250  # steps between validation estimates
    eval_iters: int = 20  # batches per periodic validation estimate
    final_eval_iters: int = 200  # batches for the final train and validation losses
    checkpoint_interval: int = 500  # steps between checkpoints (and one at the end)
    sample_tokens: int = 500  # GPT, LSTM: length of the sample printed at the end (0: none)
    state_reset_interval: int = 16  # LSTM: zero the carried state every this many batches (0: off)
    seed: int = 1337  # initialisation, batches and dropout
    device: str = "cpu"  # "cpu" or "cuda"
    precision: str = "fp32"  # compute: "fp32"; "fp16", "bf16": float32 master weights (ch. 16)
    out_dir: str = "runs/shakespeare-char"  # where checkpoint, loss curve and metrics go


TRAIN_PRESETS = {
    "shakespeare-char": TrainConfig(),
    "shakespeare-bert": TrainConfig(
        model="bert", preset="shakespeare-bert", tokenizer="bpe", iters=1500, batch_size=32,
        lr=1e-3, min_lr=1e-4, warmup_iters=100, weight_decay=0.01, beta2=0.999, eval_iters=10,
        final_eval_iters=50, sample_tokens=0, out_dir="runs/shakespeare-bert",
    ),
    # the GPT's recipe (12 x 64 tokens a step, AdamW, clipping at 1.0) with a 2-layer LSTM of
    # about its parameter count, a larger peak rate and 600 steps (a step costs about 4 GPT
    # steps); validation reads the 89k validation tokens in order (final_eval_iters: one pass)
    "shakespeare-lstm": TrainConfig(
        model="lstm", preset="shakespeare-lstm", iters=600, lr=3e-3, min_lr=3e-4,
        warmup_iters=50, eval_interval=100, checkpoint_interval=200,
        out_dir="runs/shakespeare-lstm",
    ),
    # First Folio -> modern spelling (chapter 15): characters, 48 pairs a step, Vaswani et al.'s
    # betas (0.9, 0.98), label smoothing 0.1 (in the model's config); 672 s measured at 2 threads
    # on a busy machine (README)
    "folio-modern": TrainConfig(
        model="seq2seq", preset="folio-modern", iters=3500, batch_size=48, lr=1.5e-3,
        min_lr=1e-4, warmup_iters=200, weight_decay=0.01, beta2=0.98, eval_interval=500,
        eval_iters=10, final_eval_iters=50, sample_tokens=0, out_dir="runs/folio-modern",
    ),
    # the word-level model (chapter 15): 32,925 word pairs, 128 a step, dropout 0.1
    "folio-words": TrainConfig(
        model="seq2seq", preset="folio-words", iters=3000, batch_size=128, lr=2e-3,
        min_lr=1e-4, warmup_iters=100, weight_decay=0.01, beta2=0.98, eval_interval=500,
        eval_iters=10, final_eval_iters=50, sample_tokens=0, out_dir="runs/folio-words",
    ),
}


# --------------------------------------------------------------------------------------------------
# The model kinds
# --------------------------------------------------------------------------------------------------


def _token_ids(tokenizer, text: str) -> np.ndarray:
    return np.array(tokenizer.encode(text), dtype=np.int64)  # (N,)


def _language_model_task(config: TrainConfig, tokenizer, shape, train_text: str, val_text: str):
    return LanguageModelTask(_token_ids(tokenizer, train_text), _token_ids(tokenizer, val_text),
                             config.batch_size, shape.context_length)


def _masked_lm_task(config: TrainConfig, tokenizer, shape, train_text: str, val_text: str):
    return MaskedLMTask(tokenizer, train_text, val_text, config.batch_size, shape.context_length,
                        config.mask_prob)


def _stream_task(config: TrainConfig, tokenizer, shape, train_text: str, val_text: str):
    return StreamTask(_token_ids(tokenizer, train_text), _token_ids(tokenizer, val_text),
                      config.batch_size, shape.context_length, config.state_reset_interval)


@dataclass(frozen=True)
class ModelKind:
    """What ``tinyllm train --model KIND`` builds and runs."""

    model: type  # the Module class, built as model(shape, rng=rng)
    presets: dict  # its shapes: preset name -> config dataclass
    task: Callable  # (config, tokenizer, shape, train_text, val_text) -> the task the loop runs
    train_preset: str  # the TRAIN_PRESETS entry `tinyllm train --model KIND` starts from
    special_tokens: tuple[str, ...] = ("<|endoftext|>",)  # a BPE tokenizer's special tokens
    generates_text: bool = True  # `tinyllm train` prints a sample after training
    texts: Callable | None = None  # (config) -> (train, val) text of a kind with its own corpus
    tokenizer: Callable | None = None  # (train, val) -> the kind's own tokenizer
    fingerprint: Callable | None = None  # (config) -> its corpus's {"path", "size", "sha256"}


TRAINING_KINDS = {
    "gpt": ModelKind(GPT, GPT_PRESETS, _language_model_task, "shakespeare-char"),
    "bert": ModelKind(BERT, BERT_PRESETS, _masked_lm_task, "shakespeare-bert",
                      special_tokens=BERT_SPECIAL_TOKENS, generates_text=False),
    "lstm": ModelKind(LSTMLanguageModel, LSTM_PRESETS, _stream_task, "shakespeare-lstm"),
    "seq2seq": ModelKind(Seq2Seq, translation.SEQ2SEQ_PRESETS, translation.translation_task,
                         "folio-modern", generates_text=False, texts=translation.folio_texts,
                         tokenizer=translation.pair_tokenizer,
                         fingerprint=translation.folio_fingerprint),
}


def model_kind(name: str) -> ModelKind:
    if name not in TRAINING_KINDS:
        raise ValueError(f"unknown model kind {name!r}; choose one of {sorted(TRAINING_KINDS)}")
    return TRAINING_KINDS[name]


# --------------------------------------------------------------------------------------------------
# Building the pieces
# --------------------------------------------------------------------------------------------------


def load_texts(config: TrainConfig) -> tuple[str, str]:
    """(train, validation) text: a user's file with the fixed 90/10 split, or the bundled corpus
    (a kind with a corpus of its own, seq2seq's parallel pairs, loads that)."""
    kind = model_kind(config.model)
    if kind.texts is not None:
        if config.corpus != "shakespeare" or config.tokenizer != "char":  # (--data: kind.texts)
            raise ValueError(f"--model {config.model} trains on its own corpus with its own "
                             "character tokenizer: drop --corpus and --tokenizer")
        return kind.texts(config)
    return load_text(config.data) if config.data else load_corpus(config.corpus)


def data_fingerprint(config: TrainConfig) -> dict:
    """What every checkpoint records of the training text (``runs.data_fingerprint``)."""
    kind = model_kind(config.model)
    if kind.fingerprint is not None:
        return kind.fingerprint(config)
    return runs.data_fingerprint(config.data, config.corpus)


def build_tokenizer(config: TrainConfig, train_text: str, val_text: str):
    if model_kind(config.model).tokenizer is not None:  # seq2seq: PAD, BOS, EOS + characters
        return model_kind(config.model).tokenizer(train_text, val_text)
    if config.tokenizer == "char":  # the alphabet of the whole text, as in nanoGPT
        return CharTokenizer.from_text(train_text + val_text)
    if config.tokenizer == "bpe":
        specials = model_kind(config.model).special_tokens
        return BPETokenizer.train(train_text, config.bpe_vocab_size, special_tokens=specials)
    raise ValueError(f"unknown tokenizer {config.tokenizer!r}; expected 'char' or 'bpe'")


def model_config(config: TrainConfig, vocab_size: int):
    """The shape preset ``config.preset`` of the kind ``config.model``, with ``vocab_size``."""
    presets = model_kind(config.model).presets
    if config.preset not in presets:
        raise ValueError(f"unknown {config.model} preset {config.preset!r}; "
                         f"choose one of {sorted(presets)}")
    return dataclasses.replace(presets[config.preset], vocab_size=vocab_size)


def build_model(kind: str, shape, seed: int) -> Module:
    return model_kind(kind).model(shape, rng=np.random.default_rng(seed))


def build_task(config: TrainConfig, tokenizer, shape, train_text: str, val_text: str):
    return model_kind(config.model).task(config, tokenizer, shape, train_text, val_text)


def build_optimizer(config: TrainConfig, model: Module) -> optim.AdamW:
    groups = optim.param_groups_for_weight_decay(model, config.weight_decay)
    return optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))


def build_scheduler(config: TrainConfig, optimizer: optim.Optimizer) -> optim.LRScheduler:
    """Warm-up to ``config.lr``, then half a cosine to ``config.min_lr`` at ``config.iters``
    (eq. 9.11), as an ``LRScheduler`` whose ``step_count`` a checkpoint saves."""
    schedule = functools.partial(optim.warmup_cosine, max_lr=config.lr, min_lr=config.min_lr,
                                 warmup_steps=config.warmup_iters, total_steps=config.iters)
    return optim.LRScheduler(optimizer, schedule)


def saved_train_config(out_dir: str | Path) -> TrainConfig:
    """The settings the run in ``out_dir`` was started with, from its checkpoint (for --resume)."""
    return TrainConfig(**saved_settings(Path(out_dir) / CHECKPOINT_NAME))
