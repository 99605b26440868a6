"""Reference solutions of exercises/18_before_attention.py. Try the exercises first."""

from __future__ import annotations

import numpy as np

from tinyllm.creation import concatenate, split
from tinyllm.glove import weighting
from tinyllm.ngram import _take
from tinyllm.nn.recurrent import _check_step


def add_k_level(self, k, history, gram, lower):
    """(c(h w) + k) / (c(h .) + k V)   (eq. 18.3)."""
    count = _take(self.counts.counts[k], gram)  # c(h w), (M,)
    total = _take(self.totals[k], history)  # c(h .), (M,)
    return (count + self.k) / (total + self.k * self.vocab_size)


def kneser_ney_level(self, k, history, gram, lower):
    """[max(a(hw) - D(a(hw)), 0) + gamma(h) a(h .) p_{k-1}] / a(h .)   (eq. 18.5)."""
    a = _take(self.used[k], gram)  # a(h w), (M,)
    total = _take(self.totals[k], history)  # a(h .), (M,)
    D1, D2, D3 = self.discounts[k]
    discount = np.select([a == 0, a == 1, a == 2], [0.0, D1, D2], default=D3)  # D(a), (M,)
    N1, N2, N3 = (_take(row, history) for row in self.n_by_count[k])  # (M,) each
    removed = D1 * N1 + D2 * N2 + D3 * N3  # gamma(h) a(h .), the mass the discounts took
    seen = total > 0
    p = (np.maximum(a - discount, 0.0) + removed * lower) / np.where(seen, total, 1.0)
    return np.where(seen, p, lower)  # an unseen history: the level below alone


def lstm_cell_forward(self, x, state):
    """c' = f c + i g, h' = o tanh(c'), the gates from one product   (eq. 18.11)."""
    _check_step(x, state, self.input_size, self.hidden_size, "LSTMCell")
    h, c = state
    z = concatenate([x, h], axis=-1) @ self.weight + self.bias  # (B, C_in + C_h) -> (B, 4 C_h)
    z_i, z_f, z_g, z_o = split(z, 4, axis=-1)  # 4 x (B, C_h)
    input_gate, forget_gate, output_gate = z_i.sigmoid(), z_f.sigmoid(), z_o.sigmoid()
    c = forget_gate * c + input_gate * z_g.tanh()  # (B, C_h)
    h = output_gate * c.tanh()  # (B, C_h)
    return h, c


def make_streams(ids, batch_size, context_length):
    """B contiguous rows ids[b n : (b + 1) n + 1], n whole batches of T   (eq. 18.13)."""
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be a 1-D array of token ids, got shape {ids.shape}")
    n = (len(ids) - 1) // batch_size // context_length * context_length
    if n < context_length:
        raise ValueError(f"{len(ids)} tokens make no batch of B={batch_size} streams of "
                         f"T={context_length} tokens (needs B T + 1 = "
                         f"{batch_size * context_length + 1})")
    positions = np.arange(batch_size)[:, None] * n + np.arange(n + 1)  # (B, n + 1)
    return ids[positions].astype(np.int64)  # (B, n + 1)


def cooccurrence(ids, vocab_size, window=10, symmetric=True):
    """X_ik = sum of 1/d over the pairs (i, k) d <= window apart   (eq. 18.14)."""
    ids = np.asarray(ids, dtype=np.int64)
    if window < 1:
        raise ValueError(f"the co-occurrence window must be >= 1 word, got {window}")
    if ids.size and ids.max() >= vocab_size:
        raise ValueError(f"word id {int(ids.max())} is outside the vocabulary 0..{vocab_size - 1}")
    codes, weights = [], []
    for d in range(1, window + 1):
        word, context = ids[:-d], ids[d:]  # the pairs d apart, (N - d,) each
        both = (word >= 0) & (context >= 0)
        word, context = word[both], context[both]
        pairs = [word * vocab_size + context]  # context after the word
        if symmetric:
            pairs.append(context * vocab_size + word)  # and before it
        codes += pairs
        weights += [np.full(word.size, 1.0 / d)] * len(pairs)
    codes, weights = np.concatenate(codes), np.concatenate(weights)
    unique, inverse = np.unique(codes, return_inverse=True)  # sorted codes: by (row, col)
    values = np.bincount(inverse.reshape(-1), weights=weights, minlength=unique.size)
    return unique // vocab_size, unique % vocab_size, values


def glove_objective(self, rows, cols, values, x_max=100.0, alpha=0.75):
    """J = sum f(X) (w . w~ + b + b~ - ln X)^2   (eqs. 18.17, 18.18)."""
    dtype = self.word.weight.dtype
    log_x = np.log(values).astype(dtype)  # (N,)
    f = weighting(values, x_max, alpha).astype(dtype)  # (N,)
    residual = self(rows, cols) - log_x  # e, (N,)
    return (residual * residual * f).sum()  # f: an array, so the Tensor goes first
