"""Reference solutions of exercises/04_embeddings.py. Try the exercises first."""

from __future__ import annotations

import numpy as np

from tinyllm.backend import get_array_module, scatter_add, to_device, to_numpy
from tinyllm.tensor import Tensor


def embedding_forward(self, weight):
    """y = W[ids]   (eq. 4.2)"""
    self.vocab_size = weight.shape[0]
    return weight[self.ids]  # ids.shape + (C,)


def embedding_backward(self, grad):
    """dW[v] = sum of g[n] over ids[n] = v   (eq. 4.5)"""
    C = grad.shape[-1]
    grad_weight = get_array_module(grad).zeros((self.vocab_size, C), dtype=grad.dtype)  # (V, C)
    scatter_add(grad_weight, self.ids.reshape(-1), grad.reshape(-1, C))  # (N,) ids, (N, C) rows
    return grad_weight


def check_token_ids(ids, vocab_size, device="cpu", name="embedding"):
    """Integer ids in [0, V), or an error naming the bad id, its position and V."""
    ids = ids.data if isinstance(ids, Tensor) else ids
    ids = ids if hasattr(ids, "dtype") else np.asarray(ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"{name}: token ids must be integers, got dtype {ids.dtype}; convert them "
                        "with ids.astype(np.int64)")
    bad = to_numpy((ids < 0) | (ids >= vocab_size)).reshape(-1)  # (N,)
    if bad.any():
        flat = int(bad.argmax())
        position = tuple(int(i) for i in np.unravel_index(flat, ids.shape))
        raise IndexError(f"{name}: token id {int(to_numpy(ids).reshape(-1)[flat])} at position "
                         f"{position} of the ids is out of range for a table of V={vocab_size} "
                         f"rows; valid ids are 0..{vocab_size - 1}")
    return to_device(ids, device).astype(np.intp, copy=False)
