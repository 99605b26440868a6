"""The two pretraining objectives as tasks the trainer can run (chapters 11 and 12).

A task turns token ids into batches, a batch into a loss, and a model into validation metrics:

- :class:`LanguageModelTask` (GPT, chapter 11): random windows of the token stream; the loss is the mean
  cross-entropy of predicting token t + 1 from tokens <= t (teacher forcing, eq. 11.2).
- :class:`MaskedLMTask` (BERT, chapter 12): sentence pairs [CLS] A [SEP] B [SEP] where B follows A half of the
  time; 15% of the ordinary tokens are chosen and corrupted 80/10/10; the loss is the MLM cross-entropy on
  the chosen positions plus the next-sentence-prediction cross-entropy (eq. 12.3).
"""

from __future__ import annotations

import math

import numpy as np

import tinyllm.nn.functional as F
from tinyllm.backend import to_numpy
from tinyllm.data import IGNORE_INDEX, get_batch, mask_tokens, nsp_pairs
from tinyllm.nn import Module
from tinyllm.tensor import Tensor, no_grad
from tinyllm.tokenizers import BPETokenizer

BERT_SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")


class LanguageModelTask:
    """Next-token prediction on one long stream of token ids per split."""

    def __init__(self, train_ids: np.ndarray, val_ids: np.ndarray, batch_size: int, context_length: int):
        self.ids = {"train": train_ids, "val": val_ids}
        self.batch_size, self.context_length = batch_size, context_length
        for split, ids in self.ids.items():
            if len(ids) < context_length + 2:
                raise ValueError(
                    f"the {split} text has {len(ids)} tokens, fewer than context_length + 2 = {context_length + 2}: "
                    "use more text or a smaller context"
                )

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.context_length

    def batch(self, split: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return get_batch(self.ids[split], self.batch_size, self.context_length, rng)  # (B, T), (B, T)

    def loss(self, model: Module, batch) -> Tensor:
        x, y = batch
        _, loss = model(x, y)
        return loss

    def evaluate(self, model: Module, split: str, iters: int, seed: int) -> dict[str, float]:
        """Mean loss over ``iters`` random batches drawn from a generator seeded with ``seed``."""
        rng = np.random.default_rng(seed)
        was_training = model.training
        model.eval()  # no dropout, and the dropout generators stay untouched
        with no_grad():
            losses = [self.loss(model, self.batch(split, rng)).item() for _ in range(iters)]
        model.train(was_training)
        loss = float(np.mean(losses))
        return {"loss": loss, "perplexity": math.exp(loss)}


def text_segments(text: str) -> list[str]:
    """Cut a text into the "sentences" of next-sentence prediction: the paragraphs between blank lines
    (in the Shakespeare corpus, one speech each: speaker and lines)."""
    return [part.strip() for part in text.split("\n\n") if part.strip()]


class MaskedLMTask:
    """BERT pretraining: masked-language modelling plus next-sentence prediction on consecutive segments."""

    def __init__(self, tokenizer: BPETokenizer, train_text: str, val_text: str, batch_size: int,
                 context_length: int, mask_prob: float = 0.15):
        missing = [s for s in BERT_SPECIAL_TOKENS if s not in tokenizer.special_tokens]
        if missing:
            raise ValueError(f"the BERT task needs a tokenizer with special tokens {missing}")
        self.tokenizer = tokenizer
        self.special = {name: tokenizer.special_tokens[name] for name in BERT_SPECIAL_TOKENS}
        self.batch_size, self.context_length, self.mask_prob = batch_size, context_length, mask_prob
        self.segments = {
            split: [tokenizer.encode(s, allowed_special=False) for s in text_segments(text)]
            for split, text in (("train", train_text), ("val", val_text))
        }
        for split, segments in self.segments.items():
            if len(segments) < 2:
                raise ValueError(f"the {split} text has {len(segments)} paragraphs; NSP needs at least 2")
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
        inputs, labels = mask_tokens(pairs.input_ids, self.special["[MASK]"], self.tokenizer.vocab_size,
                                     special_ids=tuple(self.special.values()), p=self.mask_prob, rng=rng)
        return {"inputs": inputs, "labels": labels, "segment_ids": pairs.segment_ids,
                "attention_mask": pairs.attention_mask, "nsp_labels": pairs.nsp_labels}

    def _forward(self, model: Module, batch) -> tuple[Tensor, Tensor, np.ndarray]:
        chosen = batch["labels"] != IGNORE_INDEX  # (B, T)
        mlm_logits, nsp_logits = model(batch["inputs"], batch["segment_ids"], batch["attention_mask"],
                                       masked_positions=chosen)  # (N, V), (B, 2)
        return mlm_logits, nsp_logits, batch["labels"][chosen]  # targets (N,)

    def loss(self, model: Module, batch) -> Tensor:
        mlm_logits, nsp_logits, targets = self._forward(model, batch)
        return F.cross_entropy(mlm_logits, targets) + F.nsp_loss(nsp_logits, batch["nsp_labels"])

    def evaluate(self, model: Module, split: str, iters: int, seed: int) -> dict[str, float]:
        """MLM loss and accuracy on the chosen positions, the most-frequent-token baseline, NSP accuracy."""
        rng = np.random.default_rng(seed)
        mlm_losses, nsp_losses, correct, baseline, nsp_correct, chosen, pairs = [], [], 0, 0, 0, 0, 0
        was_training = model.training
        model.eval()  # no dropout, and the dropout generators stay untouched
        with no_grad():
            for _ in range(iters):
                batch = self.batch(split, rng)
                mlm_logits, nsp_logits, targets = self._forward(model, batch)
                mlm_losses.append(F.cross_entropy(mlm_logits, targets).item())
                nsp_losses.append(F.nsp_loss(nsp_logits, batch["nsp_labels"]).item())
                correct += int((to_numpy(mlm_logits.data).argmax(axis=-1) == targets).sum())
                baseline += int((targets == self.most_frequent).sum())
                nsp_correct += int((to_numpy(nsp_logits.data).argmax(axis=-1) == batch["nsp_labels"]).sum())
                chosen += len(targets)
                pairs += len(batch["nsp_labels"])
        model.train(was_training)
        mlm_loss = float(np.mean(mlm_losses))
        return {"loss": mlm_loss + float(np.mean(nsp_losses)), "mlm_loss": mlm_loss,
                "perplexity": math.exp(mlm_loss), "mlm_accuracy": correct / chosen,
                "baseline_accuracy": baseline / chosen, "nsp_accuracy": nsp_correct / pairs}
