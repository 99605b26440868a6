"""Choosing the next token from a model's logits (chapter 11, section "Sampling distributions").

Given logits z (B, V) for the next position, sampling draws a token from p = softmax(z /
temperature), optionally restricted to the k most likely tokens (top-k; Fan et al. 2018) or to the
smallest set of tokens whose probabilities add up to at least ``top_p`` (nucleus sampling; Holtzman
et al. 2020). Temperature 0 means greedy decoding (the arg-max); NaN, infinite and negative
temperatures are refused (:func:`check_sampling`). Everything is whole-array NumPy over the batch.
"""

from __future__ import annotations

import math

import numpy as np

from tinyllm.backend import to_numpy
from tinyllm.tensor import Tensor


def check_sampling(temperature: float, top_k: int | None = None,
                   top_p: float | None = None) -> None:
    """Raise a ValueError that names the argument unless temperature is a finite number >= 0,
    top_k a positive integer (or None) and top_p in (0, 1] (or None)."""
    if not _is_number(temperature) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature!r} (a finite number; "
                         "0 means greedy decoding)")
    _check_filters(top_k, top_p)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _check_filters(top_k: int | None, top_p: float | None) -> None:
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool)
                              or top_k < 1):
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if top_p is not None and (not _is_number(top_p) or not 0 < top_p <= 1):  # NaN fails 0 < p
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")


def filter_logits(logits: np.ndarray, top_k: int | None = None,
                  top_p: float | None = None) -> np.ndarray:
    """A copy of ``logits`` (B, V) with the tokens outside top-k / the top-p nucleus set to -inf.

    A ``top_k`` >= V keeps every token (as Hugging Face's ``TopKLogitsWarper`` does)."""
    logits = np.array(logits, dtype=np.float64)  # (B, V), a copy we own
    vocab = logits.shape[-1]
    _check_filters(top_k, top_p)
    if top_k is not None:
        if top_k < vocab:  # exactly k survive (ties with the k-th are broken by position)
            dropped = np.argpartition(-logits, top_k - 1, axis=-1)[:, top_k:]  # (B, V - k)
            np.put_along_axis(logits, dropped, -np.inf, axis=-1)
    if top_p is not None and top_p < 1:  # top_p = 1 keeps everything, however unlikely
        order = np.argsort(-logits, axis=-1)  # (B, V) most likely first
        sorted_logits = np.take_along_axis(logits, order, axis=-1)
        probs = np.exp(sorted_logits - sorted_logits[:, :1])
        probs /= probs.sum(axis=-1, keepdims=True)
        mass_before = np.cumsum(probs, axis=-1) - probs  # the mass of the tokens ranked above
        drop_sorted = mass_before >= top_p  # the most likely token always stays (mass_before 0)
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        logits[drop] = -np.inf
    return logits


def sample_next(logits: np.ndarray, rng: np.random.Generator, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None) -> np.ndarray:
    """Draw one token id per row of ``logits`` (B, V); returns int64 (B,).

    p = softmax((z - max z) / temperature): subtracting the maximum first changes nothing in exact
    arithmetic and keeps every value <= 0, so a tiny temperature (1e-30) gives exp(-huge) = 0
    for all but the largest logits, i.e. greedy decoding, never an overflow or a NaN.
    """
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"sample_next expects logits (B, V), got shape {logits.shape}")
    check_sampling(temperature, top_k, top_p)
    largest = logits.max(axis=-1, keepdims=True)  # (B, 1)
    if not np.isfinite(largest).all():
        row = int(np.flatnonzero(~np.isfinite(largest))[0])
        raise ValueError(f"the logits of row {row} are NaN, +inf or all -inf: the model's "
                         "weights are probably not finite; check the checkpoint's training run")
    if temperature == 0:  # greedy decoding
        return logits.argmax(axis=-1).astype(np.int64)
    with np.errstate(over="ignore"):  # a tiny temperature sends all but the max to -inf: greedy
        scaled = (logits.astype(np.float64) - largest) / temperature  # (B, V), row maxima 0
    scaled = filter_logits(scaled, top_k, top_p)  # (B, V)
    probs = np.exp(scaled)  # exp(0) = 1 for the largest, so the sum is >= 1
    probs /= probs.sum(axis=-1, keepdims=True)
    cdf = np.cumsum(probs, axis=-1)  # (B, V)
    u = rng.random((logits.shape[0], 1)) * cdf[:, -1:]  # (B, 1)
    first_above = (cdf <= u).sum(axis=-1)  # (B,) the first index whose cdf exceeds u
    return first_above.clip(max=logits.shape[-1] - 1).astype(np.int64)


# --- what every model's generate() shares (GPT, LSTM) ---------------------------------------------
def prompt_ids(ids) -> np.ndarray:
    """A prompt as host token ids (B, T0), T0 >= 1 (a Tensor, a device array or a list is fine)."""
    ids = ids.data if isinstance(ids, Tensor) else ids  # sampling runs on the host: (B, T0)
    ids = np.array(to_numpy(ids) if hasattr(ids, "dtype") else ids, dtype=np.int64)
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise ValueError(
            f"generate expects a prompt of token ids (B, T0) with T0 >= 1, got {ids.shape}"
        )
    return ids


def check_generation(max_new_tokens: int, temperature: float, top_k: int | None,
                     top_p: float | None) -> None:
    """Refuse a generate() call before the first token: a count >= 0 and :func:`check_sampling`."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) \
            or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    check_sampling(temperature, top_k, top_p)


def append_stream(ids: np.ndarray, stream) -> np.ndarray:
    """The prompt (B, T0) followed by every column (B,) a generate_stream yields: (B, T0 + new)."""
    return np.concatenate([ids, *(next_ids[:, None] for next_ids in stream)], axis=1)
