"""Reference solutions of exercises/13_pretrained_wordpiece.py. Try the exercises first."""

from __future__ import annotations

import string
import unicodedata
from collections import Counter

import numpy as np

from tinyllm.backend import to_numpy
from tinyllm.wordpiece import _CJK_RANGES, MAX_WORD_CHARS
from tinyllm.wordpiece_merges import CONTINUATION, initial_units, merged_unit


def normalize(text, lowercase=True):
    """Clean-up, CJK spacing, then (uncased) NFD, no combining marks, lowercase (section 13.1)."""
    cleaned = []
    for c in text:
        category = unicodedata.category(c)
        if c in "\t\n\r" or (c.isspace() and not category.startswith("C")):
            cleaned.append(" ")  # every whitespace character is a plain space
        elif c in "\x00\ufffd" or category.startswith("C"):
            continue  # NUL, U+FFFD, control and format characters go
        elif any(lo <= ord(c) <= hi for lo, hi in _CJK_RANGES):
            cleaned.append(f" {c} ")  # an ideograph is a word of its own
        else:
            cleaned.append(c)
    text = "".join(cleaned)
    if lowercase:
        decomposed = unicodedata.normalize("NFD", text)  # "é" -> "e" + U+0301
        text = "".join(c.lower() for c in decomposed if unicodedata.category(c) != "Mn")
    return text


def _is_punctuation(c):
    return c in string.punctuation or unicodedata.category(c).startswith("P")


def pre_tokenize(text):
    """Whitespace split, then every punctuation character alone (section 13.1)."""
    words = []
    for chunk in text.split():
        run = ""
        for c in chunk:
            if _is_punctuation(c):
                words += [run, c] if run else [c]
                run = ""
            else:
                run += c
        if run:
            words.append(run)
    return words


def wordpiece(self, word):
    """Greedy longest-match-first with "##" continuations; [UNK] for the whole word (eq. 13.1)."""
    if word in self._cache:
        return self._cache[word]
    unknown = [self.ids["[UNK]"]]
    if not word or len(word) > MAX_WORD_CHARS:
        return unknown
    ids, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):  # the longest piece first
            piece = word[start:end] if start == 0 else CONTINUATION + word[start:end]
            if piece in self.ids:
                ids.append(self.ids[piece])
                start = end
                break
        else:
            ids = unknown  # stuck: no piece of the vocabulary starts here
            break
    self._cache[word] = ids
    return ids


def _merge(units, a, b, unit):
    """``units`` with every (a, b) replaced by ``unit``, left to right, without overlap."""
    out, i = [], 0
    while i < len(units):
        if i + 1 < len(units) and units[i] == a and units[i + 1] == b:
            out.append(unit)
            i += 2
        else:
            out.append(units[i])
            i += 1
    return out


def learn_wordpiece(words, freqs, num_tokens):
    """Recount, merge the pair of highest c(ab) / (c(a) c(b)) (ties: the smallest), repeat
    (eqs. 13.2, 13.3)."""
    splits = [initial_units(word) for word in words]
    vocab = sorted({unit for units in splits for unit in units})
    while len(vocab) < num_tokens:
        unit_count, pair_count = Counter(), Counter()
        for units, freq in zip(splits, freqs):
            for unit in units:
                unit_count[unit] += freq
            for pair in zip(units, units[1:]):
                pair_count[pair] += freq
        if not pair_count:
            break

        def rank(pair):  # the highest score first (eq. 13.3), then the smallest pair
            a, b = pair
            return -pair_count[pair] / (unit_count[a] * unit_count[b]), pair

        a, b = min(pair_count, key=rank)
        unit = merged_unit(a, b)
        splits = [_merge(units, a, b, unit) for units in splits]
        if unit not in vocab:
            vocab.append(unit)
    return vocab


def mean_pool(h, attention_mask):
    """u = sum_t m_t h_t / max(sum_t m_t, 1e-9) (eq. 13.4)."""
    m = np.asarray(to_numpy(attention_mask), dtype=h.dtype)[:, :, None]  # (B, T, 1)
    counts = np.maximum(m.sum(axis=1), 1e-9)  # (B, 1)
    return (h * m).sum(axis=1) / counts  # (B, T, C) -> (B, C)


def nearest(query, embeddings, top):
    """The ``top`` largest cosines s = E q, best first, ties to the earlier row (eq. 13.5)."""
    if top < 1:
        raise ValueError(f"--top must be a positive integer, got {top}")
    scores = embeddings @ query  # (N, C) @ (C,) -> (N,)
    k = min(top, len(scores))
    if k == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=scores.dtype)
    rows = np.argpartition(-scores, k - 1)[:k]  # (k,) the k largest, in no order
    rows = rows[np.lexsort((rows, -scores[rows]))]  # (k,) best first, then the smaller row
    return rows, scores[rows]
