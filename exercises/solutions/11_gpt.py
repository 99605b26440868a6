"""Reference solutions of exercises/11_gpt.py. Try the exercises first."""

from __future__ import annotations

import math

import numpy as np

import tinyllm.nn.functional as F
from tinyllm import sampling
from tinyllm.tensor import Tensor


def gpt_forward(self, ids, targets=None, caches=None):
    """h_0 = W_te[x] + W_pe[t], L causal pre-LN blocks, z = LN_f(h_L) W_te^T (eq. 11.4)."""
    ids = ids.data if isinstance(ids, Tensor) else ids
    ids = ids if hasattr(ids, "dtype") else np.asarray(ids)  # host or device ids, as given
    offset = caches[0].length if caches else 0  # positions already in the caches
    self._check_ids(ids, offset)
    x = self.wte(ids)  # (B, T, C)
    x = self.drop(self.wpe(x, offset=offset))  # (B, T, C)
    for index, block in enumerate(self.blocks):
        x = block(x, is_causal=True, cache=caches[index] if caches else None)  # (B, T, C)
    x = self.ln_f(x)  # (B, T, C)
    logits = x @ self.wte.weight.T  # (B, T, C) @ (C, V) -> (B, T, V): the tied output layer
    if targets is None:
        return logits
    return logits, F.cross_entropy(logits, targets)  # eq. 11.2


def gpt_init_weights(self, rng):
    """Matrices N(0, 0.02^2), the residual projections N(0, 0.02^2 / 2L), biases 0 (eq. 11.6)."""
    residual_std = 0.02 / math.sqrt(2 * self.config.num_layers)
    for name, p in self.named_parameters():
        if p.ndim == 2:
            residual = name.endswith(("attn.out_proj.weight", "ff.fc2.weight"))
            std = residual_std if residual else 0.02
            p.data = rng.normal(0.0, std, p.shape).astype(p.dtype)
        elif name.endswith(".bias"):
            p.data = np.zeros(p.shape, dtype=p.dtype)


def gpt_parameter_count(config):
    """V C + T C + L (12 C^2 + 2 C) + C (eq. 11.7), and L (11 C) + C more with biases."""
    V, T, L, C = config.vocab_size, config.context_length, config.num_layers, config.d_model
    count = V * C + T * C + L * (12 * C * C + 2 * C) + C
    if config.bias:
        count += L * (4 * C + 5 * C + 2 * C) + C  # attention, feed-forward, two LN shifts; ln_f
    return count


def filter_logits(logits, top_k=None, top_p=None):
    """-inf outside the k largest logits (eq. 11.10), then outside the nucleus (eq. 11.11)."""
    logits = np.array(logits, dtype=np.float64)  # (B, V), a copy we own
    sampling._check_filters(top_k, top_p)  # errors that name the argument
    if top_k is not None and top_k < logits.shape[-1]:
        dropped = np.argpartition(-logits, top_k - 1, axis=-1)[:, top_k:]  # (B, V - k)
        np.put_along_axis(logits, dropped, -np.inf, axis=-1)
    if top_p is not None and top_p < 1:
        order = np.argsort(-logits, axis=-1)  # (B, V), most likely first
        sorted_logits = np.take_along_axis(logits, order, axis=-1)  # (B, V)
        probs = np.exp(sorted_logits - sorted_logits[:, :1])
        probs /= probs.sum(axis=-1, keepdims=True)
        mass_before = np.cumsum(probs, axis=-1) - probs  # the mass ranked above each token
        drop = np.zeros(logits.shape, dtype=bool)
        np.put_along_axis(drop, order, mass_before >= top_p, axis=-1)  # back to vocabulary order
        logits[drop] = -np.inf
    return logits


def sample_next(logits, rng, temperature=1.0, top_k=None, top_p=None):
    """softmax((z - max z) / temperature) after the filters, drawn by inverting the cdf."""
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"sample_next expects logits (B, V), got shape {logits.shape}")
    sampling.check_sampling(temperature, top_k, top_p)
    largest = logits.max(axis=-1, keepdims=True)  # (B, 1)
    if not np.isfinite(largest).all():
        row = int(np.flatnonzero(~np.isfinite(largest))[0])
        raise ValueError(f"the logits of row {row} are NaN, +inf or all -inf: the model's "
                         "weights are probably not finite; check the checkpoint's training run")
    if temperature == 0:
        return logits.argmax(axis=-1).astype(np.int64)  # greedy decoding
    with np.errstate(over="ignore"):
        scaled = (logits.astype(np.float64) - largest) / temperature  # (B, V), row maxima 0
    probs = np.exp(sampling.filter_logits(scaled, top_k, top_p))  # (B, V), the maximum's term is 1
    probs /= probs.sum(axis=-1, keepdims=True)  # eq. 11.9
    cdf = np.cumsum(probs, axis=-1)  # (B, V)
    u = rng.random((logits.shape[0], 1)) * cdf[:, -1:]  # (B, 1)
    first_above = (cdf <= u).sum(axis=-1)  # (B,) the first index whose cdf exceeds u
    return first_above.clip(max=logits.shape[-1] - 1).astype(np.int64)
