"""Labelled examples for the Trainer: texts as token ids, or as feature vectors (chapter 14).

A dataset here is three things: ``len(dataset)``, ``dataset.labels`` (N,) int64, and
``dataset.batch(indices)`` -> a dict of arrays the model takes, with "labels" (B,). The Trainer
asks for batches by index, so it alone decides the order (a permutation per epoch).

    encoded = encode_texts(tokenizer, texts, max_length=128)   # WordPiece or tinyllm's BPE
    train = TokenDataset(encoded, labels, pad_id)              # batches padded to their longest
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tinyllm.wordpiece import WordPieceTokenizer


def _check_labels(labels, n: int) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (n,):
        raise ValueError(f"labels expected shape ({n},), one per example, got {labels.shape}")
    if n and labels.min() < 0:
        raise ValueError(f"labels must be class indices >= 0, got {labels.min()}")
    return labels


def special_ids(tokenizer) -> dict[str, int]:
    """[CLS], [SEP], [PAD] of a WordPiece tokenizer or of a BPE tokenizer made for BERT (both
    map their special tokens to ids in ``special_tokens``)."""
    specials = getattr(tokenizer, "special_tokens", {})
    missing = [name for name in ("[CLS]", "[SEP]", "[PAD]") if name not in specials]
    if missing:
        raise ValueError(f"the tokenizer has no {missing}: fine-tuning needs a BERT tokenizer "
                         "(WordPiece, or the BPE of a `tinyllm train --model bert` run)")
    return {name: specials[name] for name in ("[CLS]", "[SEP]", "[PAD]")}


def encode_texts(tokenizer, texts: Sequence[str], max_length: int) -> list[np.ndarray]:
    """Each text as ``[CLS] tokens [SEP]``, cut to ``max_length`` ids (the text's end is lost)."""
    if max_length < 3:
        raise ValueError(f"max_length must be at least 3 ([CLS], a token, [SEP]), got {max_length}")
    if isinstance(tokenizer, WordPieceTokenizer):
        return [np.asarray(tokenizer.encode(text, max_length=max_length), dtype=np.int64)
                for text in texts]
    ids = special_ids(tokenizer)
    rows = []
    for text in texts:
        body = tokenizer.encode(text, allowed_special=False)[:max_length - 2]
        rows.append(np.asarray([ids["[CLS]"], *body, ids["[SEP]"]], dtype=np.int64))
    return rows


class TokenDataset:
    """Token-id rows and labels; ``batch(indices)`` pads to the longest row of the batch."""

    def __init__(self, rows: Sequence[np.ndarray], labels, pad_id: int):
        self.rows, self.pad_id = list(rows), int(pad_id)
        self.labels = _check_labels(labels, len(self.rows))
        self.lengths = np.array([len(row) for row in self.rows], dtype=np.int64)  # (N,)

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, indices) -> dict[str, np.ndarray]:
        indices = np.asarray(indices, dtype=np.int64)  # (B,)
        lengths = self.lengths[indices]  # (B,)
        T = int(lengths.max())
        mask = np.arange(T)[None, :] < lengths[:, None]  # (B, T), True at real tokens
        ids = np.full(mask.shape, self.pad_id, dtype=np.int64)  # (B, T)
        ids[mask] = np.concatenate([self.rows[i] for i in indices])
        return {"ids": ids, "segment_ids": np.zeros_like(ids), "attention_mask": mask,
                "labels": self.labels[indices]}

    def subset(self, indices) -> TokenDataset:
        return TokenDataset([self.rows[i] for i in indices], self.labels[indices], self.pad_id)


class FeatureDataset:
    """Feature vectors (N, V) and labels; ``batch(indices)`` gives "features" (B, V)."""

    def __init__(self, features: np.ndarray, labels):
        if np.ndim(features) != 2:
            raise ValueError(f"features expected (N, V), got shape {np.shape(features)}")
        self.features = features
        self.labels = _check_labels(labels, features.shape[0])

    def __len__(self) -> int:
        return self.features.shape[0]

    def batch(self, indices) -> dict[str, np.ndarray]:
        indices = np.asarray(indices, dtype=np.int64)
        return {"features": self.features[indices], "labels": self.labels[indices]}  # (B, V)


def subsample(n: int, limit: int | None, seed: int) -> np.ndarray:
    """``limit`` of the indices 0..n-1, drawn without replacement with ``seed``, in order; all of
    them if ``limit`` is None or at least n."""
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 1:
        raise ValueError(f"the number of training examples must be positive, got {limit}")
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
