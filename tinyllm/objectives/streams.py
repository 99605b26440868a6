"""Truncated backpropagation through time: B contiguous streams of text (chapter 18).

The training text (N tokens) is cut into B streams of n tokens each, n = (N - 1) // B rounded
down to a multiple of T, one row per stream (eq. 18.13):

    streams[b] = ids[b n : (b + 1) n + 1]                          (B, n + 1): the next token too
    batch k:     x = streams[:, kT : kT + T],   y = streams[:, kT + 1 : kT + T + 1]      (B, T)

so row b of batch k + 1 continues row b of batch k. The model starts batch k + 1 from the state
it ended batch k with, *detached*: the forward pass remembers the whole past, the backward pass
stops at the cut (BPTT truncated to T steps; Williams & Peng 1990, Sutskever 2013). After the
last whole batch of the streams (an epoch), the position goes back to 0 and the state to zeros.
With ``reset_interval`` = K > 0 the state is also zeroed before every K-th batch: a model that
only ever continued a long past never learns to start from nothing, and generation does start
from a zero state.

:class:`StreamTask` is this objective as a task the trainer runs (``tinyllm.train``); its
position and carried state are part of a checkpoint (:meth:`StreamTask.state_dict`), so a resumed
run continues with the very state the interrupted one had. Validation reads the split's streams in
order from a zero state, so every token is predicted with all the text before it in its stream.
"""

from __future__ import annotations

import math

import numpy as np

from tinyllm.backend import device_of, get_array_module, to_device, to_numpy
from tinyllm.nn import Module
from tinyllm.nn.losses import cross_entropy
from tinyllm.tensor import Tensor, no_grad


def make_streams(ids: np.ndarray, batch_size: int, context_length: int) -> np.ndarray:
    """The (B, n + 1) rows of eq. 18.13: B contiguous streams, each overlapping the next by one
    token (the target of its last position); n is rounded down to whole batches of T tokens."""
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be a 1-D array of token ids, got shape {ids.shape}")
    n = (len(ids) - 1) // batch_size // context_length * context_length  # whole batches only
    if n < context_length:
        raise ValueError(
            f"{len(ids)} tokens make no batch of B={batch_size} streams of T={context_length} "
            f"tokens (needs B T + 1 = {batch_size * context_length + 1}): use more text, a "
            "smaller --batch-size or a preset with a smaller context_length"
        )
    starts = np.arange(batch_size) * n  # (B,)
    return ids[starts[:, None] + np.arange(n + 1)].astype(np.int64)  # (B, n + 1)


class StreamTask:
    """Next-token prediction with truncated BPTT over B contiguous streams per split."""

    def __init__(self, train_ids: np.ndarray, val_ids: np.ndarray, batch_size: int,
                 context_length: int, reset_interval: int = 0):
        self.batch_size, self.context_length = batch_size, context_length
        self.reset_interval = reset_interval  # K: zero the state before every K-th batch (0: off)
        self.streams = {}
        for split, ids in (("train", train_ids), ("val", val_ids)):
            try:
                self.streams[split] = make_streams(ids, batch_size, context_length)
            except ValueError as error:
                raise ValueError(f"the {split} text: {error}") from None
        self.position = 0  # where the next training batch starts in every stream
        self.state = None  # the carried state: one tuple of (B, C_h) arrays per layer, or None

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.context_length

    def batches_per_epoch(self, split: str) -> int:
        return (self.streams[split].shape[1] - 1) // self.context_length

    def batch(self, split: str, rng: np.random.Generator | None = None):
        """The next (x, y) of ``split``'s streams, each (B, T). Training batches come in order
        (``rng`` is not used: nothing is random); the position moves on by T, and an epoch's end
        resets it and the carried state (as does every ``reset_interval``-th batch, the state)."""
        if split != "train":
            raise ValueError("StreamTask.batch gives training batches; validation reads its "
                             "streams in order in evaluate()")
        if self.position + self.context_length + 1 > self.streams["train"].shape[1]:
            self.position, self.state = 0, None  # a new epoch: from the start, from zeros
        batch_index = self.position // self.context_length
        if self.reset_interval and batch_index % self.reset_interval == 0:
            self.state = None  # learn to start from a zero state too (set by the position alone)
        x, y = self._window("train", self.position)
        self.position += self.context_length
        return x, y

    def _window(self, split: str, start: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.streams[split]
        T = self.context_length
        return rows[:, start:start + T], rows[:, start + 1:start + T + 1]  # (B, T), (B, T)

    def loss(self, model: Module, batch) -> Tensor:
        """The mean cross-entropy of the batch, read after the carried state (eq. 11.2); the
        state after its last token, detached, is carried to the next batch."""
        x, y = batch  # (B, T), (B, T)
        logits, state = model.forward_with_state(x, self._state_tensors(model))  # (B, T, V)
        self.state = [tuple(part.data for part in layer) for layer in state]  # detached arrays
        return cross_entropy(logits, y)

    def _state_tensors(self, model: Module):
        if self.state is None:
            return None
        device = device_of(model.parameters()[0].data)
        return [tuple(Tensor(to_device(part, device)) for part in layer) for layer in self.state]

    def evaluate(self, model: Module, split: str, iters: int, seed: int = 0) -> dict[str, float]:
        """Mean loss over the first ``iters`` batches of ``split``'s streams (at most one epoch),
        read in order from a zero state; perplexity exp(loss) (eq. 11.3). ``seed`` is not used:
        nothing is random. The training position and carried state stay as they were."""
        count = max(1, min(iters, self.batches_per_epoch(split)))
        was_training = model.training
        model.eval()  # no dropout, and the dropout generators stay untouched
        state, losses = None, []
        with no_grad():
            for k in range(count):
                x, y = self._window(split, k * self.context_length)
                logits, state = model.forward_with_state(x, state)  # (B, T, V)
                losses.append(cross_entropy(logits, y).data.astype(np.float64))  # () on device
        model.train(was_training)
        xp = get_array_module(*losses)
        loss = float(np.mean(to_numpy(xp.stack(losses))))  # (count,): one transfer, not count
        return {"loss": loss, "perplexity": math.exp(loss)}

    # --- exact resume: the position and the carried state, as arrays for the checkpoint ---------
    def state_dict(self) -> dict[str, np.ndarray]:
        """``position`` (a 0-d int64 array) and ``state.<layer>.<part>`` (B, C_h) on the host."""
        arrays = {"position": np.array(self.position, dtype=np.int64)}
        for index, layer in enumerate(self.state or []):
            for part, value in enumerate(layer):
                arrays[f"state.{index}.{part}"] = to_numpy(value).copy()
        return arrays

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_dict` gave (no ``state.*`` arrays: a zero state)."""
        if "position" not in arrays:
            raise KeyError("the task state has no 'position': it was not written by "
                           "StreamTask.state_dict")
        self.position = int(arrays["position"])
        layers: dict[int, dict[int, np.ndarray]] = {}
        for name, value in arrays.items():
            if name.startswith("state."):
                index, part = (int(i) for i in name.split(".")[1:])
                layers.setdefault(index, {})[part] = np.array(value)
        self.state = [tuple(parts[p] for p in sorted(parts))
                      for _, parts in sorted(layers.items())] or None
