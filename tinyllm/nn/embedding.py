"""Token embeddings: a lookup table and its scatter-add gradient (chapter 04, "Embeddings").

An embedding table W of shape (V, C) holds one learned vector per token of a V-token vocabulary.
Looking up token ids gives their rows (eq. 4.2):

    y[b, t] = W[ids[b, t]]      which equals      onehot(ids) @ W          (eq. 4.3)

a matrix product with a one-hot matrix that is never built. The gradient is the transposed product
dW = onehot^T G (eq. 4.4): gradient row n is added into the row of token ids[n], so the rows of a
token used twice add up, a *scatter-add* (eq. 4.5; chapter 02, eq. 2.8). :func:`embedding` is one
fused op with that backward; :class:`Embedding` is the layer that owns W.
"""

from __future__ import annotations

import numpy as np

from tinyllm.backend import (
    device_of,
    get_array_module,
    scatter_add,
    to_device,
    to_numpy,
)
from tinyllm.creation import default_rng
from tinyllm.nn.module import Module, Parameter
from tinyllm.tensor import DEFAULT_DTYPE, Function, Tensor, apply


class EmbeddingFunction(Function):
    """y = W[ids] (rows of W gathered by integer ids)   (eqs. 4.2, 4.3)

    dL/dW[v] = sum of the gradient rows g[n] over the positions n with ids[n] = v   (eqs. 4.4, 4.5)

    The ids are a constant of the op (integers get no gradient); ``apply`` takes only the weight.
    The scatter-add is the engine's one :func:`tinyllm.backend.scatter_add` (flat cells on the CPU,
    atomic adds on a GPU); how it compares with other ways: benchmarks/README.md, "Scatter-add".
    """

    def __init__(self, ids):
        self.ids = ids  # integer array (any shape), already checked to lie in [0, V)

    def forward(self, weight):
        self.vocab_size = weight.shape[0]
        return get_array_module(weight).take(weight, self.ids, axis=0)  # ids.shape + (C,)

    def backward(self, grad):
        C = grad.shape[-1]
        grad_weight = get_array_module(grad).zeros((self.vocab_size, C), dtype=grad.dtype)  # (V, C)
        scatter_add(grad_weight, self.ids.reshape(-1), grad.reshape(-1, C))  # (N,) ids, (N, C) rows
        return grad_weight  # row v: the sum of the gradient rows of token v (eq. 4.5)


def _position_text(flat_index: int, shape: tuple[int, ...]) -> str:
    """Where a flat index sits in an array of ``shape``, e.g. ``(1, 3)``."""
    position = np.unravel_index(flat_index, shape) if shape else ()
    return "(" + ", ".join(str(int(i)) for i in position) + ("," if len(shape) == 1 else "") + ")"


def check_token_ids(ids, vocab_size: int, device: str = "cpu", name: str = "embedding"):
    """Token ids as an integer array of any shape on ``device``, checked to lie in [0, vocab_size).

    Accepts an integer NumPy/CuPy array, an integer Tensor, or a (nested) list of ints. Float or
    boolean ids and ids out of range raise errors that name the bad id, its position and V.
    """
    if isinstance(ids, Tensor):
        ids = ids.data
    if not hasattr(ids, "dtype"):
        ids = np.asarray(ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(
            f"{name}: token ids must be integers, got dtype {ids.dtype}; convert them with "
            "ids.astype(np.int64) (token ids index rows of the table, they are not values)"
        )
    if ids.size and bool(((ids < 0) | (ids >= vocab_size)).any()):  # on the host for host ids
        low, high = int(ids.min()), int(ids.max())  # only on the way to an error
        if low < 0 or high >= vocab_size:
            bad_value = low if low < 0 else high
            flat_index = int(to_numpy((ids == bad_value).reshape(-1).argmax()))
            raise IndexError(
                f"{name}: token id {bad_value} "
                f"at position {_position_text(flat_index, ids.shape)} of the ids "
                f"(shape {tuple(ids.shape)}) is out of range for a table of V={vocab_size} rows; "
                f"valid ids are 0..{vocab_size - 1}"
            )
    return to_device(ids, device).astype(np.intp, copy=False)  # one copy up, no sync


def embedding(ids, weight: Tensor) -> Tensor:
    """Look up the rows of ``weight`` (V, C) for integer ``ids`` of any shape: (B, T) -> (B, T, C).

    One fused op (:class:`EmbeddingFunction`, eqs. 4.2-4.5): the forward gathers ``weight[ids]``,
    the backward scatter-adds the gradient rows into a (V, C) zero array, so a token used twice gets
    both contributions. ``ids`` may be an integer array, an integer Tensor or a list; they are moved
    to the weight's device.

        W = tl.tensor(np.arange(6.0).reshape(3, 2))     # V = 3 tokens, C = 2
        F.embedding([[2, 0, 2]], W)                      # [[[4, 5], [0, 1], [4, 5]]], (1, 3, 2)
    """
    _check_weight(weight)
    ids = check_token_ids(ids, weight.shape[0], device_of(weight.data))
    return apply(EmbeddingFunction(ids), weight)


def _check_weight(weight: Tensor) -> None:
    if not isinstance(weight, Tensor):
        raise TypeError(
            "embedding weight expected a Tensor of shape (V, C), got "
            f"{type(weight).__name__}; wrap an array with tl.tensor(weight, requires_grad=True) or "
            "use the layer nn.Embedding(V, C)"
        )
    if weight.ndim != 2:
        raise ValueError(f"embedding weight expected a Tensor of shape (V, C), got {weight.shape}")


class Embedding(Module):
    """A table of ``vocab_size`` learned vectors of width ``d_model``: ids (B, T) -> (B, T, C).

    ``weight`` (V, C) starts as N(0, 1) entries, PyTorch's default for ``nn.Embedding``: a lookup
    feeds no sum of many inputs, so there is no fan-in to scale by. Models rescale it to their own
    needs (GPT-2 and BERT re-initialise their tables to N(0, 0.02^2)). It holds V * C parameters
    (eq. 4.6).
    """

    def __init__(self, vocab_size: int, d_model: int, rng: np.random.Generator | None = None,
                 dtype=DEFAULT_DTYPE):
        if vocab_size < 1 or d_model < 1:
            raise ValueError(
                f"Embedding needs vocab_size >= 1 and d_model >= 1, got ({vocab_size}, "
                f"{d_model})"
            )
        rng = rng or default_rng()
        self.vocab_size, self.d_model = vocab_size, d_model
        self.weight = Parameter(rng.standard_normal((vocab_size, d_model)).astype(dtype))  # (V, C)

    def forward(self, ids) -> Tensor:
        return embedding(ids, self.weight)  # ids.shape + (C,)

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, d_model={self.d_model}"
