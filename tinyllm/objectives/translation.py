"""The translation objective: (First Folio, modern) sentence pairs for the encoder-decoder (ch. 15).

A pair is two strings; both sides are written with one character tokenizer whose first three ids
are the special tokens of :class:`~tinyllm.models.Seq2SeqConfig` (PAD = 0, BOS = 1, EOS = 2, the
characters U+0000, U+0001 and U+0002, which no text here contains). A batch of B pairs is

    src     = [x_1 .. x_m, PAD ...]                 (B, S)  the Folio text
    targets = [y_1 .. y_n, EOS, PAD ...]            (B, T)  the modern text, then EOS
    tgt_in  = shift_right(targets) = [BOS, y_1 .. y_n, PAD ...]       teacher forcing, eq. 15.1

and the loss is the label-smoothed cross-entropy of eq. 15.2 over the real target positions.
Pairs longer than the context (source, or target + EOS) are left out of training; translation cuts
a long source into pieces instead (``tinyllm.translate``). Batches are *bucketed*: the pairs are
sorted by source length once, and a batch is B neighbours in that order from a random start, so a
batch is padded to about its own length (fairseq's batching by length), not to the longest pair.

    task = TranslationTask(train_pairs, val_pairs, tokenizer, batch_size=32, context_length=128)
    loss = task.loss(model, task.batch("train", rng))

For ``tinyllm train --model seq2seq`` the pairs travel as text, one ``folio<TAB>modern`` line per
pair (:func:`folio_texts`, :func:`parse_pairs`), so the trainer's fingerprint and tokenizer see
exactly the pairs the task trains on.
"""

from __future__ import annotations

import functools
import hashlib
import math
import string

import numpy as np

from tinyllm.folio_alignment import word_pairs
from tinyllm.models.seq2seq import Seq2SeqConfig, pad_sequences, shift_right
from tinyllm.nn import Module
from tinyllm.parallel_corpus import PARALLEL_SPLITS, load_parallel_corpus, parallel_path
from tinyllm.tensor import Tensor, no_grad
from tinyllm.tokenizers import CharTokenizer

SPECIAL_CHARACTERS = ("\x00", "\x01", "\x02")  # PAD, BOS, EOS: ids 0, 1, 2 of every pair tokenizer
# the encoder-decoder shapes `tinyllm train --model seq2seq` knows (vocab_size: the tokenizer's)
SEQ2SEQ_PRESETS = {
    # 2 + 2 pre-LN blocks of width 128: 931,712 parameters (eq. 15.3); characters: 128 positions
    # hold 83% of the training pairs (the rest are left out; translation cuts long sources)
    "folio-modern": Seq2SeqConfig(vocab_size=96, context_length=128, num_encoder_layers=2,
                                  num_decoder_layers=2, num_heads=4, d_model=128, d_ff=512,
                                  dropout=0.0),
    # the word-level model: one Folio word -> its modern spelling (translate.WordModelSystem uses
    # it for the words the substitution table never saw); 32 positions: all but 2 of the 32,925
    # training words (40 and 28 characters long)
    "folio-words": Seq2SeqConfig(vocab_size=96, context_length=32, num_encoder_layers=2,
                                 num_decoder_layers=2, num_heads=4, d_model=128, d_ff=512,
                                 dropout=0.1),
}
# what a preset's pairs are: sentence pairs, or the word pairs aligned inside them
WORD_LEVEL_PRESETS = frozenset({"folio-words"})


# ----------------------------------------------------------------------------- pairs as text

def pairs_text(pairs) -> str:
    """One ``folio<TAB>modern`` line per pair (the texts hold no tab and no newline)."""
    return "".join(f"{folio}\t{modern}\n" for folio, modern, *_ in pairs)


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """The (source, target) pairs of :func:`pairs_text`'s lines."""
    pairs = [tuple(line.split("\t")) for line in text.splitlines() if line]
    bad = next((i for i, pair in enumerate(pairs) if len(pair) != 2), None)
    if bad is not None:
        raise ValueError(f"line {bad + 1} of the pairs is not 'source<TAB>target': "
                         f"{pairs[bad]!r:.80}")
    return pairs


def folio_texts(config=None) -> tuple[str, str]:
    """(train, validation) pairs of the Folio corpus as text (the trainer's ``load_texts``):
    the sentence pairs, or for a word-level preset the word pairs of ``word_pairs``."""
    if config is not None and getattr(config, "data", None):
        raise ValueError("seq2seq trains on the bundled parallel corpus (data/shakespeare-folio); "
                         "--data is for the language models: leave it out")
    if config is not None and config.preset in WORD_LEVEL_PRESETS:  # one pair per Folio word
        return folio_word_pairs_text("train"), folio_word_pairs_text("validation")
    return (pairs_text(load_parallel_corpus("train")),
            pairs_text(load_parallel_corpus("validation")))


@functools.lru_cache(maxsize=2)
def folio_word_pairs_text(split: str) -> str:
    """The word pairs of a split's sentence pairs as text (aligned once per process, ~5 s)."""
    return pairs_text(word_pairs(load_parallel_corpus(split)))


def folio_fingerprint(config=None) -> dict:
    """{"path", "size", "sha256"} of train.tsv then validation.tsv, hashed as one text."""
    folder = parallel_path()
    data = b"".join((folder / f"{split}.tsv").read_bytes() for split in PARALLEL_SPLITS[:2])
    return {"path": str(folder), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def pair_tokenizer(train_text: str, val_text: str = "") -> CharTokenizer:
    """PAD, BOS, EOS, then every printable ASCII character and every character of the pairs,
    sorted (the separators tab and newline excluded): a source with a character the training
    text lacks (a '|' in a test play) still has an id."""
    printable = set(string.ascii_letters + string.digits + string.punctuation + " ")
    chars = (set(train_text) | set(val_text) | printable) - {"\t", "\n"}
    return CharTokenizer(list(SPECIAL_CHARACTERS) + sorted(chars))


# ----------------------------------------------------------------------------- batches

def encode_pairs(tokenizer, pairs, context_length: int, eos_id: int = 2,
                 pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(sources (N, S), targets (N, T)) for the pairs whose source has at most context_length
    tokens and whose target, with its EOS, too; padded with ``pad_id`` to the longest kept one."""
    sources = [tokenizer.encode(pair[0]) for pair in pairs]  # a pair: (source, target, ...)
    targets = [tokenizer.encode(pair[1]) + [eos_id] for pair in pairs]
    keep = [i for i, (s, t) in enumerate(zip(sources, targets))
            if 1 <= len(s) <= context_length and len(t) <= context_length]
    return (pad_sequences([sources[i] for i in keep], pad_id),  # (N, S)
            pad_sequences([targets[i] for i in keep], pad_id))  # (N, T)


class TranslationTask:
    """Teacher-forced encoder-decoder training on bucketed batches of pairs (eqs. 15.1, 15.2)."""

    def __init__(self, train_pairs, val_pairs, tokenizer, batch_size: int, context_length: int,
                 config: Seq2SeqConfig | None = None):
        c = config or Seq2SeqConfig(vocab_size=tokenizer.vocab_size)
        self.bos_id, self.pad_id = c.bos_id, c.pad_id
        self.batch_size, self.context_length = batch_size, context_length
        self.data = {}
        for split, pairs in (("train", train_pairs), ("val", val_pairs)):
            src, tgt = encode_pairs(tokenizer, pairs, context_length, c.eos_id, c.pad_id)
            if len(src) < batch_size:
                raise ValueError(f"the {split} split has {len(src)} pairs that fit "
                                 f"context_length = {context_length}, fewer than one batch of "
                                 f"B = {batch_size}: use a smaller --batch-size or more pairs")
            order = np.argsort((src != c.pad_id).sum(axis=1), kind="stable")  # by source length
            self.data[split] = (src[order], tgt[order])  # (N, S), (N, T)
        src, tgt = self.data["train"]
        self.mean_tokens = float((src != c.pad_id).sum() + (tgt != c.pad_id).sum()) / len(src)

    @property
    def tokens_per_batch(self) -> int:
        """Source and target tokens of a batch on average (padding not counted)."""
        return int(round(self.batch_size * self.mean_tokens))

    def pairs(self, split: str) -> int:
        return len(self.data[split][0])

    def batch(self, split: str, rng: np.random.Generator):
        """B neighbours in length order from a random start -> (src (B, S), tgt_in (B, T),
        targets (B, T)), each trimmed to its longest row."""
        src, tgt = self.data[split]
        start = int(rng.integers(0, len(src) - self.batch_size + 1))
        src, tgt = src[start:start + self.batch_size], tgt[start:start + self.batch_size]
        src = src[:, :max(1, int((src != self.pad_id).sum(axis=1).max()))]  # (B, S)
        tgt = tgt[:, :int((tgt != self.pad_id).sum(axis=1).max())]  # (B, T)
        return src, shift_right(tgt, self.bos_id, self.pad_id), tgt

    def loss(self, model: Module, batch) -> Tensor:
        src, tgt_in, targets = batch  # (B, S), (B, T), (B, T)
        _, loss = model(src, tgt_in, targets=targets)  # logits (B, T, V); eq. 15.2
        return loss

    def evaluate(self, model: Module, split: str, iters: int, seed: int) -> dict[str, float]:
        """Mean loss over ``iters`` batches drawn with a generator seeded with ``seed``; the
        perplexity exp(loss) is per target character (label smoothing included)."""
        rng = np.random.default_rng(seed)
        was_training = model.training
        model.eval()
        with no_grad():
            losses = [self.loss(model, self.batch(split, rng)).item() for _ in range(iters)]
        model.train(was_training)
        loss = float(np.mean(losses))
        return {"loss": loss, "perplexity": math.exp(loss)}


def translation_task(config, tokenizer, shape, train_text: str, val_text: str) -> TranslationTask:
    """The trainer's task builder (``tinyllm.recipe.TRAINING_KINDS["seq2seq"]``)."""
    return TranslationTask(parse_pairs(train_text), parse_pairs(val_text), tokenizer,
                           config.batch_size, shape.context_length, shape)
