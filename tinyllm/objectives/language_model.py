"""The language-model objective: predict the next token (GPT; chapter 11, derived in chapter 03).

A causal model reads tokens x_1 .. x_T and its logits at position t predict token t + 1. Training
minimises the mean cross-entropy of those predictions (teacher forcing, eq. 11.2):

    L = 1/(B T) sum_{b,t} -log softmax(z_{b,t})[y_{b,t}],      y_{b,t} = x_{b,t+1}

- :func:`get_batch` cuts random windows from the token stream: inputs x, targets y shifted by 1;
- :func:`next_token_loss` is eq. 11.2 on such a pair; :func:`lm_loss` does the shift itself on one
  tensor of tokens, so T tokens give T - 1 predictions (eq. 3.14);
- :class:`LanguageModelTask` is the objective as a task the trainer runs: batches, loss, validation.
"""

from __future__ import annotations

import math

import numpy as np

from tinyllm.backend import get_array_module
from tinyllm.nn import Module
from tinyllm.nn.losses import IGNORE_INDEX, ClassIds, as_targets, check_logits, cross_entropy
from tinyllm.tensor import Tensor, no_grad


def get_batch(data: np.ndarray, batch_size: int, context_length: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random windows for next-token prediction: ``x = data[i:i+T]``, ``y = data[i+1:i+T+1]``.

    The starts are ``rng.integers(0, len(data) - T - 1, B)``, the same draw as the PyTorch
    reference, so the same seed gives the same batches. Returns int64 arrays ``(B, T)``.
    """
    data = np.asarray(data)
    if data.ndim != 1:
        raise ValueError(f"data must be a 1-D array of token ids, got shape {data.shape}")
    if len(data) < context_length + 2:
        raise ValueError(f"data has {len(data)} tokens; a block of T={context_length} needs at "
                         f"least T + 2 = {context_length + 2}. Use a smaller context_length or "
                         "more text.")
    starts = rng.integers(0, len(data) - context_length - 1, batch_size)   # (B,)
    index = starts[:, None] + np.arange(context_length)                    # (B, T)
    return data[index].astype(np.int64), data[index + 1].astype(np.int64)  # (B, T), (B, T)


def next_token_loss(logits: Tensor, targets: ClassIds, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """eq. 11.2: the mean cross-entropy of logits (B, T, V) against the next tokens y (B, T).

    ``y[:, t]`` is the token after position t, as :func:`get_batch` returns it; positions whose
    target is ``ignore_index`` do not count. dL/dz_{b,t} = (softmax(z_{b,t}) - onehot(y_{b,t})) / N,
    N the number of counted positions (eqs. 3.11, 3.13).
    """
    check_logits(logits, "next_token_loss")
    if logits.ndim != 3:
        raise ValueError(f"next_token_loss expected logits (B, T, V), got {logits.shape}")
    targets = as_targets(targets, logits, "next_token_loss", move=False)  # host ids stay there
    return cross_entropy(logits, targets, ignore_index=ignore_index)


def lm_loss(logits: Tensor, tokens: ClassIds, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """eq. 3.14: next-token prediction on one tensor, ``logits[:, t]`` predicting
    ``tokens[:, t + 1]``, for logits (B, T, V) computed on tokens (B, T).

    The last position has no next token, so its target is ``ignore_index``: this is
    :func:`next_token_loss` over B * (T - 1) counted positions, with no copy of the logits.
    """
    check_logits(logits, "lm_loss")
    if logits.ndim != 3:
        raise ValueError(f"lm_loss expected logits (B, T, V), got {logits.shape}")
    tokens = as_targets(tokens, logits, "lm_loss", move=False)
    if tokens.shape[1] < 2:
        raise ValueError("lm_loss needs sequences of T >= 2 tokens (one to read, one to predict), "
                         f"got T = {tokens.shape[1]}")
    xp = get_array_module(tokens)
    next_tokens = xp.full(tokens.shape, ignore_index, dtype=np.int64)  # (B, T): the last predicts
    next_tokens[:, :-1] = tokens[:, 1:]                                # nothing; t predicts t + 1
    return next_token_loss(logits, next_tokens, ignore_index=ignore_index)


class LanguageModelTask:
    """Next-token prediction on one long stream of token ids per split (eq. 11.2)."""

    def __init__(self, train_ids: np.ndarray, val_ids: np.ndarray, batch_size: int,
                 context_length: int):
        self.ids = {"train": train_ids, "val": val_ids}
        self.batch_size, self.context_length = batch_size, context_length
        for split, ids in self.ids.items():
            if len(ids) < context_length + 2:
                raise ValueError(
                    f"the {split} text has {len(ids)} tokens, fewer than context_length + 2 = "
                    f"{context_length + 2} (the validation text is the last 10% of a file): "
                    "use more text or a preset with a smaller context_length"
                )

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.context_length

    def batch(self, split: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return get_batch(self.ids[split], self.batch_size, self.context_length, rng)  # (B, T) x 2

    def loss(self, model: Module, batch) -> Tensor:
        x, y = batch                                             # (B, T), (B, T)
        return next_token_loss(model(x), y)                      # logits (B, T, V)

    def evaluate(self, model: Module, split: str, iters: int, seed: int) -> dict[str, float]:
        """Mean loss over ``iters`` random batches drawn from a generator seeded with ``seed``;
        perplexity exp(loss) (eq. 11.3)."""
        rng = np.random.default_rng(seed)
        was_training = model.training
        model.eval()  # no dropout, and the dropout generators stay untouched
        with no_grad():
            losses = [self.loss(model, self.batch(split, rng)).item() for _ in range(iters)]
        model.train(was_training)
        loss = float(np.mean(losses))
        return {"loss": loss, "perplexity": math.exp(loss)}
