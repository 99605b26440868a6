"""BERT's pretraining objective: masked tokens plus the next sentence (chapter 12; losses in 03).

A batch holds sentence pairs ``[CLS] A [SEP] B [SEP]`` where B follows A half of the time
(:func:`nsp_pairs`); 15% of the ordinary tokens are chosen and corrupted 80/10/10 (eq. 12.2,
:func:`mask_tokens`). The loss is the masked-token cross-entropy on the chosen positions plus the
next-sentence cross-entropy (eq. 12.3):

    L = mean_{chosen (b,t)} -log p(x_{b,t} | corrupted x)  +  mean_b -log p(IsNext/NotNext | [CLS])

:func:`mlm_loss`, :func:`mlm_accuracy` and :func:`nsp_loss` are its parts (section 3.9);
:class:`MaskedLMTask` is the objective as a task the trainer runs.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from tinyllm.backend import device_of, get_array_module, to_device, to_numpy
from tinyllm.nn import Module
from tinyllm.nn.losses import IGNORE_INDEX, ClassIds, as_targets, check_logits, cross_entropy
from tinyllm.tensor import Tensor, no_grad
from tinyllm.tokenizers import BPETokenizer

BERT_SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")


# ----------------------------------------------------------------------------- masked tokens

def mask_tokens(tokens: np.ndarray, mask_id: int, vocab_size: int, special_ids: Sequence[int] = (),
                p: float = 0.15, rng: np.random.Generator | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
    """BERT's masked-language-model corruption of a (T,) or (B, T) array of token ids (eq. 12.2).

    Each row gets exactly ``max(1, round(p * n))`` chosen positions, ``n`` = its non-special
    tokens (``special_ids`` and ``mask_id`` are never chosen). Each chosen token independently
    becomes ``mask_id`` (80%), a random non-special token (10%) or stays (10%). (BERT's
    ``create_pretraining_data.py`` also counts [CLS]/[SEP] in ``n``, caps the count at
    ``max_predictions_per_seq`` and draws random tokens from the whole vocabulary; chapter 12.)
    Returns ``(inputs, labels)`` as new int64 arrays; labels hold the original token at chosen
    positions and ``IGNORE_INDEX`` (-100) elsewhere.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim not in (1, 2) or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"tokens must be integer ids of shape (T,) or (B, T), got {tokens.dtype} "
                         f"{tokens.shape}")
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id={mask_id} is outside the vocabulary [0, {vocab_size})")
    if not 0.0 < p < 1.0:
        raise ValueError(f"masking probability p must be in (0, 1), got {p}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"token ids must be in [0, {vocab_size}), got range "
                         f"[{tokens.min()}, {tokens.max()}]")
    rng = np.random.default_rng() if rng is None else rng
    special = np.union1d(np.asarray(special_ids, dtype=np.int64), [mask_id])
    ordinary = np.setdiff1d(np.arange(vocab_size), special)     # ids a random token comes from
    if len(ordinary) == 0:
        raise ValueError("every id is special: there is no ordinary token to substitute")

    rows = np.atleast_2d(tokens).astype(np.int64)               # (B, T)
    can_choose = ~np.isin(rows, special)                        # (B, T)
    n = can_choose.sum(axis=1)                                  # (B,)
    k = np.where(n > 0, np.maximum(1, np.round(p * n)), 0)      # (B,) positions to choose per row
    keys = np.where(can_choose, rng.random(rows.shape), np.inf)  # specials sort last
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)         # (B, T) rank of each key in its row
    chosen = rank < k[:, None]                                  # (B, T) the k smallest keys

    action = rng.random(rows.shape)                             # (B, T) 80% / 10% / 10%
    to_mask = chosen & (action < 0.8)
    to_random = chosen & (action >= 0.8) & (action < 0.9)
    inputs = rows.copy()
    inputs[to_mask] = mask_id
    inputs[to_random] = ordinary[rng.integers(0, len(ordinary), to_random.sum())]
    labels = np.where(chosen, rows, IGNORE_INDEX)               # (B, T)
    return inputs.reshape(tokens.shape), labels.reshape(tokens.shape)


def _labelled_rows(logits: Tensor, labels: ClassIds, name: str):
    """The flat rows of logits (..., V) whose label is not IGNORE_INDEX, and those labels."""
    check_logits(logits, name)
    labels = as_targets(labels, logits, name, move=False).reshape(-1)  # (N,) host labels stay
    rows = get_array_module(labels).flatnonzero(labels != IGNORE_INDEX)  # (K,)
    return rows, labels[rows]


def mlm_loss(logits: Tensor, labels: ClassIds) -> Tensor:
    """The masked-token part of eq. 12.3: mean cross-entropy over the positions with a label.

    ``logits`` (B, T, V) and ``labels`` (B, T) from :func:`mask_tokens` (the original token at
    the chosen positions, -100 elsewhere), or logits (N, V) of the chosen positions only with their
    labels (N,). Equal to ``cross_entropy(logits, labels)`` with ``ignore_index=-100``, but the
    chosen rows are gathered first, so the V-wide softmax runs on ~15% of the rows; 0 with zero
    gradient when nothing is chosen.
    """
    rows, row_labels = _labelled_rows(logits, labels, "mlm_loss")
    flat = logits.reshape(-1, logits.shape[-1])  # (N, V)
    if rows.size < flat.shape[0]:
        flat = flat[rows]  # (K, V), a gather: its backward scatters the gradient back
    return cross_entropy(flat, row_labels)


def _correct(logits: Tensor, labels: ClassIds, name: str) -> tuple[int, int]:
    """(number of labelled rows whose highest logit is the label, number of labelled rows)."""
    rows, row_labels = _labelled_rows(logits, labels, name)
    flat = logits.data.reshape(-1, logits.shape[-1])  # (N, V), raw arrays: no graph
    predicted = to_numpy(flat[to_device(rows, device_of(flat))].argmax(axis=1))  # (K,) on the host
    return int((predicted == to_numpy(row_labels)).sum()), int(rows.size)


def mlm_accuracy(logits: Tensor, labels: ClassIds) -> float:
    """Fraction of the chosen positions (labels != -100) whose highest logit is the label.

    No gradient; nan when no position is chosen (an accuracy over nothing is undefined).
    """
    correct, chosen = _correct(logits, labels, "mlm_accuracy")
    return correct / chosen if chosen else float("nan")


# ----------------------------------------------------------------------------- next sentence

class NSPBatch(NamedTuple):
    """A next-sentence-prediction batch: ``[CLS] A [SEP] B [SEP] [PAD]...`` per row."""
    input_ids: np.ndarray       # (B, T) int64
    segment_ids: np.ndarray     # (B, T) int64: 1 for B [SEP], 0 for [CLS] A [SEP] and padding
    attention_mask: np.ndarray  # (B, T) bool: True at real tokens, False at [PAD]
    nsp_labels: np.ndarray      # (B,) int64: 0 = IsNext, 1 = NotNext (BERT's convention)


def text_segments(text: str) -> list[str]:
    """Cut a text into the "sentences" of next-sentence prediction: the paragraphs between blank
    lines (in the Shakespeare corpus, one speech each: speaker and lines)."""
    return [part.strip() for part in text.split("\n\n") if part.strip()]


def nsp_pairs(segments: Sequence[Sequence[int]], batch_size: int, context_length: int, *,
              cls_id: int, sep_id: int, pad_id: int, rng: np.random.Generator) -> NSPBatch:
    """Sample ``batch_size`` sentence pairs from consecutive ``segments`` for BERT's NSP task.

    For a random segment ``A = segments[i]``, ``B`` is ``segments[i + 1]`` with probability 1/2
    (label 0, IsNext), else a random segment other than ``segments[i + 1]`` (label 1, NotNext).
    A pair longer than ``T - 3`` (``T = context_length``) is cut at the end of the longer segment:
    A keeps ``max((T - 3) // 2, T - 3 - len(B))`` tokens at most, B the rest. Rows are padded to
    ``T`` with ``pad_id``.
    """
    if len(segments) < 2:
        raise ValueError(f"need at least 2 segments to form pairs, got {len(segments)}")
    if any(len(segment) == 0 for segment in segments):
        raise ValueError("segments must be non-empty lists of token ids")
    if context_length < 5:
        raise ValueError("context_length must be at least 5 ([CLS] a [SEP] b [SEP]), got "
                         f"{context_length}")
    first = rng.integers(0, len(segments) - 1, batch_size)        # (B,) A = segments[first]
    is_next = rng.random(batch_size) < 0.5                        # (B,)
    other = rng.integers(0, len(segments) - 1, batch_size)        # (B,) uniform, skipping first+1
    other = other + (other >= first + 1)
    second = np.where(is_next, first + 1, other)                  # (B,) B = segments[second]

    input_ids = np.full((batch_size, context_length), pad_id, dtype=np.int64)   # (B, T)
    segment_ids = np.zeros((batch_size, context_length), dtype=np.int64)        # (B, T)
    attention_mask = np.zeros((batch_size, context_length), dtype=bool)         # (B, T)
    budget = context_length - 3                                   # room for A and B together
    for row in range(batch_size):
        a, b = segments[first[row]], segments[second[row]]
        a = a[:max(budget // 2, budget - len(b))]                 # a long A yields first ...
        b = b[:budget - len(a)]                                   # ... then B takes what is left
        ids = [cls_id, *a, sep_id, *b, sep_id]
        input_ids[row, :len(ids)] = ids
        segment_ids[row, len(a) + 2:len(ids)] = 1
        attention_mask[row, :len(ids)] = True
    return NSPBatch(input_ids, segment_ids, attention_mask, (~is_next).astype(np.int64))


def nsp_loss(logits: Tensor, labels: ClassIds) -> Tensor:
    """The next-sentence part of eq. 12.3: cross-entropy over 2 classes, mean over the batch.

    ``logits`` (B, 2) from the classifier on the [CLS] vector, ``labels`` (B,) with BERT's
    convention 0 = IsNext (sentence B follows sentence A in the corpus), 1 = NotNext (B is random).
    """
    check_logits(logits, "nsp_loss")
    if logits.ndim != 2 or logits.shape[1] != 2:
        raise ValueError(f"nsp_loss expected logits (B, 2), got {logits.shape}")
    labels = as_targets(labels, logits, "nsp_loss", move=False)  # checked on the host
    if bool(((labels != 0) & (labels != 1)).any()):
        raise ValueError("nsp_loss labels must be 0 (IsNext) or 1 (NotNext), got values "
                         f"{sorted(set(to_numpy(labels).tolist()))}")
    return cross_entropy(logits, labels)


# ----------------------------------------------------------------------------- the task

class MaskedLMTask:
    """BERT pretraining: masked-language modelling plus next-sentence prediction (eq. 12.3)."""

    def __init__(self, tokenizer: BPETokenizer, train_text: str, val_text: str, batch_size: int,
                 context_length: int, mask_prob: float = 0.15):
        missing = [s for s in BERT_SPECIAL_TOKENS
                   if s not in getattr(tokenizer, "special_tokens", {})]  # CharTokenizer: none
        if missing:
            if isinstance(tokenizer, BPETokenizer):
                fix = f"train the BPETokenizer with special_tokens={list(BERT_SPECIAL_TOKENS)}"
            else:  # a CharTokenizer has no special tokens at all
                fix = (f"a {type(tokenizer).__name__} has none: use byte-level BPE (tinyllm "
                       "train --model bert --tokenizer bpe, the default for BERT)")
            raise ValueError(f"the BERT task needs a tokenizer with special tokens {missing}; "
                             + fix)
        self.tokenizer = tokenizer
        self.special = {name: tokenizer.special_tokens[name] for name in BERT_SPECIAL_TOKENS}
        self.batch_size, self.context_length, self.mask_prob = batch_size, context_length, mask_prob
        self.segments = {
            split: [tokenizer.encode(s, allowed_special=False) for s in text_segments(text)]
            for split, text in (("train", train_text), ("val", val_text))
        }
        for split, segments in self.segments.items():
            if len(segments) < 2:
                raise ValueError(f"the {split} text has {len(segments)} paragraphs; NSP needs at "
                                 "least 2: separate paragraphs by a blank line (the validation "
                                 "text is the last 10% of a file)")
        counts = np.bincount(np.concatenate([np.asarray(s) for s in self.segments["train"]]),
                             minlength=tokenizer.vocab_size)
        self.most_frequent = int(counts.argmax())  # the baseline that always predicts one token

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.context_length

    def batch(self, split: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
        pairs = nsp_pairs(self.segments[split], self.batch_size, self.context_length,
                          cls_id=self.special["[CLS]"], sep_id=self.special["[SEP]"],
                          pad_id=self.special["[PAD]"], rng=rng)
        inputs, labels = mask_tokens(pairs.input_ids, self.special["[MASK]"],
                                     self.tokenizer.vocab_size,
                                     special_ids=tuple(self.special.values()), p=self.mask_prob,
                                     rng=rng)
        return {"inputs": inputs, "labels": labels, "segment_ids": pairs.segment_ids,
                "attention_mask": pairs.attention_mask, "nsp_labels": pairs.nsp_labels}

    def _forward(self, model: Module, batch) -> tuple[Tensor, Tensor, np.ndarray]:
        chosen = batch["labels"] != IGNORE_INDEX  # (B, T)
        mlm_logits, nsp_logits = model(batch["inputs"], batch["segment_ids"],
                                       batch["attention_mask"], masked_positions=chosen)
        return mlm_logits, nsp_logits, batch["labels"][chosen]  # (N, V), (B, 2), targets (N,)

    def loss(self, model: Module, batch) -> Tensor:
        mlm_logits, nsp_logits, targets = self._forward(model, batch)
        return mlm_loss(mlm_logits, targets) + nsp_loss(nsp_logits, batch["nsp_labels"])

    def evaluate(self, model: Module, split: str, iters: int, seed: int) -> dict[str, float]:
        """MLM loss and accuracy on the chosen positions, the most-frequent-token baseline, and
        NSP accuracy, over ``iters`` batches drawn from a generator seeded with ``seed``."""
        rng = np.random.default_rng(seed)
        mlm_losses, nsp_losses = [], []
        counts = dict.fromkeys(("correct", "baseline", "chosen", "nsp_correct", "pairs"), 0)
        was_training = model.training
        model.eval()  # no dropout, and the dropout generators stay untouched
        with no_grad():
            for _ in range(iters):
                batch = self.batch(split, rng)
                mlm_logits, nsp_logits, targets = self._forward(model, batch)
                mlm_losses.append(mlm_loss(mlm_logits, targets).item())
                nsp_losses.append(nsp_loss(nsp_logits, batch["nsp_labels"]).item())
                correct, chosen = _correct(mlm_logits, targets, "mlm_accuracy")
                nsp_correct, pairs = _correct(nsp_logits, batch["nsp_labels"], "nsp_accuracy")
                counts["correct"] += correct
                counts["chosen"] += chosen
                counts["baseline"] += int((targets == self.most_frequent).sum())
                counts["nsp_correct"] += nsp_correct
                counts["pairs"] += pairs
        model.train(was_training)
        mlm = float(np.mean(mlm_losses))
        return {"loss": mlm + float(np.mean(nsp_losses)), "mlm_loss": mlm,
                "perplexity": math.exp(mlm),
                "mlm_accuracy": counts["correct"] / counts["chosen"],
                "baseline_accuracy": counts["baseline"] / counts["chosen"],
                "nsp_accuracy": counts["nsp_correct"] / counts["pairs"]}
