"""Texts as integer arrays, and n-gram counting over a whole corpus at once (chapter 15).

Every metric of chapter 15 compares a hypothesis y with one or more references r. Two tools,
each vectorised over a whole corpus, serve them all:

1. **Ids.** The tokens of all texts (words, or characters as code points) become one int64
   array ``ids`` (M,) with the number of tokens of each text in ``lengths`` (S,); text s owns
   ``ids[offsets[s]:offsets[s] + lengths[s]]``.
2. **N-grams.** The n-gram starting at position i gets an id built from the (n - 1)-gram at i
   and the token at i + n - 1:  code_n(i) = id_{n-1}(i) * V + ids[i + n - 1],  renumbered
   0..G_n - 1 by ``np.unique`` (so the code never overflows int64). An n-gram is kept only when
   its first and last token lie in the same text. The count of n-gram g in text s is then one
   ``np.unique(s * G_n + g, return_counts=True)``; the *clipped* count of Papineni et al.
   (2002, eq. 1), min(c_y(g), max_r c_r(g)), is a ``searchsorted`` of the hypothesis keys in the
   reference keys.

The dynamic programmes over pairs of texts (edit distance, LCS) are in ``alignment.py``.

This module and the metrics are host-side NumPy (strings never live on a GPU).
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

# ----------------------------------------------------------------------------- checking inputs

def check_texts(texts, name: str) -> list[str]:
    """``texts`` as a list of str; a clear error for a bare string, a non-string or no texts."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{name}: expected a list of strings (one per sentence), got "
                        f"{type(texts).__name__}; for one sentence pass [text], for an array "
                        "pass array.tolist()")
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{index}] is a {type(text).__name__}, not a str; metrics "
                            "compare detokenised strings: decode token ids to text first")
    return texts


def check_corpus(hypotheses, references) -> tuple[list[str], list[list[str | None]]]:
    """The hypotheses (N,) and the reference *streams* (K, N), as sacreBLEU takes them.

    ``references[k][i]`` is the k-th reference of sentence i; ``None`` marks a sentence with
    fewer references than K. Every sentence needs at least one reference.
    """
    hypotheses = check_texts(hypotheses, "hypotheses")
    if not hypotheses:
        raise ValueError("no hypotheses: a corpus needs at least one sentence")
    if isinstance(references, str) or not isinstance(references, Sequence) or not references:
        raise TypeError("references: expected a list of reference streams, each a list of one "
                        "string per hypothesis; with one reference per sentence pass [refs]")
    streams = []
    for k, stream in enumerate(references):
        if isinstance(stream, str) or not isinstance(stream, Sequence):
            raise TypeError(f"references[{k}] is a {type(stream).__name__}, not a list of strings:"
                            " references are streams, references[k][i] is the k-th reference of "
                            "sentence i; with one reference per sentence pass [refs]")
        stream = list(stream)
        if len(stream) != len(hypotheses):
            raise ValueError(f"{len(hypotheses)} hypotheses but reference stream {k} has "
                             f"{len(stream)} sentences: every stream needs one reference (or "
                             "None) per hypothesis, in the same order")
        for i, ref in enumerate(stream):
            if ref is not None and not isinstance(ref, str):
                raise TypeError(f"references[{k}][{i}] is a {type(ref).__name__}, not a str "
                                "(or None for a missing reference)")
        streams.append(stream)
    for i in range(len(hypotheses)):
        if all(stream[i] is None for stream in streams):
            raise ValueError(f"sentence {i} has no reference (every stream holds None there)")
    return hypotheses, streams


def reference_segments(streams: list[list[str | None]]) -> tuple[list[str], np.ndarray,
                                                                   np.ndarray]:
    """The references that exist, flattened stream by stream, with their stream k and
    sentence i: (texts (R,), stream (R,), sentence (R,))."""
    K, N = len(streams), len(streams[0])
    present = np.array([[ref is not None for ref in stream] for stream in streams])  # (K, N)
    texts = [ref for stream in streams for ref in stream if ref is not None]
    stream_of, sentence_of = np.nonzero(present.reshape(K, N))  # (R,), (R,): row-major order
    return texts, stream_of, sentence_of


# ----------------------------------------------------------------------------- texts as ids

def word_ids(token_lists: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Words of every text as ids into their sorted vocabulary: (ids (M,), lengths (S,))."""
    lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
    flat = list(itertools.chain.from_iterable(token_lists))     # M words, joined in C
    if not flat:
        return np.zeros(0, dtype=np.int64), lengths
    _, ids = np.unique(np.array(flat), return_inverse=True)     # (M,)
    return ids.reshape(-1).astype(np.int64), lengths


def char_ids(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Characters of every text as Unicode code points: (ids (M,), lengths (S,))."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    data = "".join(texts).encode("utf-32-le", "surrogatepass")  # 4 bytes per character
    return np.frombuffer(data, dtype="<u4").astype(np.int64), lengths


def text_of_position(lengths: np.ndarray) -> np.ndarray:
    """The text each token belongs to: (M,) with text s repeated lengths[s] times."""
    return np.repeat(np.arange(len(lengths)), lengths)


# ----------------------------------------------------------------------------- n-grams

def ngram_levels(ids: np.ndarray, lengths: np.ndarray,
                 max_order: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """For n = 1..max_order, every n-gram inside a text: (text (P_n,), gram id (P_n,), G_n).

    The same n-gram gets the same id wherever it occurs, in any text.
    """
    text = text_of_position(lengths)                            # (M,)
    M = len(ids)
    V = int(ids.max()) + 1 if M else 1
    levels, gram = [], ids                                      # gram: id of the n-gram at i
    for n in range(1, max_order + 1):
        starts = max(M - n + 1, 0)                              # positions with n tokens ahead
        inside = text[:starts] == text[n - 1:]                  # (starts,) first, last in 1 text
        if n == 1:
            codes = ids
        else:
            codes = gram[:starts] * V + ids[n - 1:]             # (starts,)
        unique, compact = np.unique(codes[inside], return_inverse=True)
        gram = np.zeros(starts, dtype=np.int64)
        gram[inside] = compact.reshape(-1)
        levels.append((text[:starts][inside], compact.reshape(-1).astype(np.int64),
                       max(len(unique), 1)))
    return levels


def count_keys(group: np.ndarray, gram: np.ndarray, G: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of each (group, n-gram) pair as sorted keys group * G + gram: (keys, counts)."""
    keys, counts = np.unique(group * G + gram, return_counts=True)
    return keys, counts.astype(np.int64)


def max_per_key(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For repeated keys (one per reference), the largest count: sorted unique (keys, counts)."""
    order = np.lexsort((counts, keys))                          # by key, then by count
    keys, counts = keys[order], counts[order]
    last = np.r_[keys[1:] != keys[:-1], True] if len(keys) else np.zeros(0, dtype=bool)
    return keys[last], counts[last]


def clipped_matches(hyp_keys: np.ndarray, hyp_counts: np.ndarray, ref_keys: np.ndarray,
                    ref_counts: np.ndarray) -> np.ndarray:
    """min(c_hyp(key), c_ref(key)) for each hypothesis key, 0 where the reference lacks it.

    ``ref_keys`` must be sorted and unique (as ``count_keys`` and ``max_per_key`` return them).
    """
    if len(ref_keys) == 0:
        return np.zeros(len(hyp_keys), dtype=np.int64)
    where = np.minimum(np.searchsorted(ref_keys, hyp_keys), len(ref_keys) - 1)
    found = ref_keys[where] == hyp_keys
    return np.where(found, np.minimum(hyp_counts, ref_counts[where]), 0)


def sum_per_group(keys: np.ndarray, values: np.ndarray, G: int, groups: int) -> np.ndarray:
    """Sum of ``values`` over the keys of each group (key // G): (groups,) int64."""
    total = np.bincount(keys // G, weights=values, minlength=groups)
    return np.rint(total).astype(np.int64)


def ngram_totals(lengths: np.ndarray, max_order: int) -> np.ndarray:
    """How many n-grams a text of each length has, max(len - n + 1, 0): (S, max_order)."""
    n = np.arange(1, max_order + 1)
    return np.maximum(lengths[:, None] - n[None, :] + 1, 0)


def match_statistics(hyp_ids: np.ndarray, hyp_lengths: np.ndarray, ref_ids: np.ndarray,
                     ref_lengths: np.ndarray, sentence_of: np.ndarray,
                     max_order: int) -> np.ndarray:
    """[h_n, r_n, m_n] of every reference against the hypothesis of its sentence, n = 1..
    max_order: (R, max_order, 3), with h_n, r_n their n-gram counts and m_n the clipped matches
    sum_g min(c_y(g), c_r(g)). Reference text k belongs to hypothesis sentence_of[k]."""
    N, R = len(hyp_lengths), len(ref_lengths)
    ids = np.concatenate([hyp_ids, ref_ids])
    lengths = np.concatenate([hyp_lengths, ref_lengths])
    stats = np.zeros((R, max_order, 3), dtype=np.int64)
    stats[:, :, 0] = ngram_totals(hyp_lengths, max_order)[sentence_of]
    stats[:, :, 1] = ngram_totals(ref_lengths, max_order)
    for n, (text, gram, G) in enumerate(ngram_levels(ids, lengths, max_order)):
        is_hyp = text < N
        hyp_keys, hyp_counts = count_keys(text[is_hyp], gram[is_hyp], G)        # i * G + g
        ref_keys, ref_counts = count_keys(text[~is_hyp] - N, gram[~is_hyp], G)  # k * G + g
        lookup = sentence_of[ref_keys // G] * G + ref_keys % G  # each in its own hypothesis
        matches = clipped_matches(lookup, ref_counts, hyp_keys, hyp_counts)
        stats[:, n, 2] = sum_per_group(ref_keys, matches, G, R)
    return stats


def best_reference(score: np.ndarray, sentence_of: np.ndarray, N: int) -> np.ndarray:
    """For each sentence, the index of its reference with the highest score, the first of
    equal ones (as a loop with ``if score > best`` picks it): (N,)."""
    best = np.full(N, -np.inf)
    np.maximum.at(best, sentence_of, score)
    is_best = score == best[sentence_of]
    first = np.full(N, len(score))
    np.minimum.at(first, sentence_of[is_best], np.flatnonzero(is_best))
    return first
