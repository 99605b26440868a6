"""A recurrent language model: embedding -> L LSTM (or Elman) layers -> linear head (chapter 18).

    ids (B, T) -> x_t = E[ids_t] (B, C) -> L recurrent layers, h_t^l (B, C_h) -> logits h_t^L W_out
    (B, T, V), with W_out = E^T when ``tie_weights`` (Press & Wolf 2017; Inan et al. 2017)

Dropout sits on the non-recurrent connections only, as in Zaremba et al. (2014): after the
embedding, between layers and before the head; the recurrence h_{t-1} -> h_t is never dropped.
Unlike the GPT, the model has no context limit: its state (one tuple per layer, ``(h, c)`` for an
LSTM and ``(h,)`` for an RNN, each (B, C_h)) summarises everything read so far.
``forward_with_state`` continues from a given state and returns the new one; training with
truncated BPTT (``tinyllm.objectives.streams``) carries it from batch to batch, and ``generate``
carries it from token to token, so generation needs no cache: each new token costs one step.
Initialisation: the embedding (and an untied head) uniform in [-0.1, 0.1] (Zaremba et al. 2014),
the cells as in ``tinyllm.nn.recurrent`` (forget-gate bias 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import tinyllm.nn.functional as F
from tinyllm.backend import device_of, to_numpy
from tinyllm.creation import default_rng, spawn_rng, stack
from tinyllm.nn import LSTM, RNN, Dropout, Embedding, Module, Parameter
from tinyllm.nn.embedding import EmbeddingFunction, check_token_ids
from tinyllm.sampling import append_stream, check_generation, prompt_ids, sample_next
from tinyllm.tensor import DEFAULT_DTYPE, Tensor, apply, no_grad

RECURRENT_CELLS = {"lstm": LSTM, "rnn": RNN}  # LSTMConfig.cell -> the layer class
GATES = {"lstm": 4, "rnn": 1}  # weight blocks of width C_h per layer (i, f, g, o for the LSTM)


@dataclass(frozen=True)
class LSTMConfig:
    """The shape of a recurrent language model. ``vocab_size`` comes from the tokenizer."""

    vocab_size: int = 70  # V: distinct tokens (the 70 characters of our Shakespeare corpus)
    context_length: int = 64  # T: tokens per stream per batch, where BPTT is truncated
    num_layers: int = 2  # L: stacked recurrent layers
    d_model: int = 224  # C: embedding width
    hidden_size: int = 224  # C_h: state width of every layer
    dropout: float = 0.0  # on the embedding, between layers and before the head (training only)
    tie_weights: bool = True  # the head is the embedding transposed (needs d_model = hidden_size)
    cell: str = "lstm"  # "lstm" (Hochreiter & Schmidhuber 1997) or "rnn" (Elman 1990)


LSTM_PRESETS = {
    # about the parameters of GPT_PRESETS["shakespeare-char"] (0.82M against 0.80M)
    "shakespeare-lstm": LSTMConfig(),
    # the same shape with Elman cells: what the LSTM's gates are for
    "shakespeare-rnn": LSTMConfig(cell="rnn"),
}


def lstm_parameter_count(config: LSTMConfig) -> int:
    """Closed form (eq. 18.12): V C for the embedding; per layer l, G (C_in + C_h + 1) C_h with
    G = 4 gates for an LSTM, 1 for an RNN (C_in = C for the first layer, C_h above); C_h V for an
    untied head."""
    V, C, H = config.vocab_size, config.d_model, config.hidden_size
    gates = GATES[config.cell]
    layers = sum(gates * ((C if layer == 0 else H) + H + 1) * H
                 for layer in range(config.num_layers))
    return V * C + layers + (0 if config.tie_weights else H * V)


State = list[tuple[Tensor, ...]]  # one tuple per layer: (h, c) for an LSTM, (h,) for an RNN


class LSTMLanguageModel(Module):
    """``model(ids)`` gives logits (B, T, V) from a zero state, ``model(ids, targets)`` also the
    loss; ``model.forward_with_state(ids, state)`` continues from ``state``."""

    def __init__(self, config: LSTMConfig, rng: np.random.Generator | None = None,
                 dtype=DEFAULT_DTYPE):
        if config.cell not in RECURRENT_CELLS:
            raise ValueError(f"unknown cell {config.cell!r}; expected one of "
                             f"{sorted(RECURRENT_CELLS)}")
        if config.tie_weights and config.d_model != config.hidden_size:
            raise ValueError(f"tie_weights needs d_model = hidden_size, got {config.d_model} and "
                             f"{config.hidden_size}: make them equal or set tie_weights=False")
        rng = rng or default_rng()
        self.config = config
        C, H, V = config.d_model, config.hidden_size, config.vocab_size
        self.wte = Embedding(V, C, rng=rng, dtype=dtype)
        self.wte.weight.data = rng.uniform(-0.1, 0.1, (V, C)).astype(dtype)  # (V, C)
        layer = RECURRENT_CELLS[config.cell]
        self.layers = [layer(C if index == 0 else H, H, rng=rng, dtype=dtype)
                       for index in range(config.num_layers)]
        # drops[0] after the embedding, drops[l + 1] after layer l
        self.drops = [Dropout(config.dropout, rng=spawn_rng(rng))
                      for _ in range(config.num_layers + 1)]
        self.head = None
        if not config.tie_weights:
            self.head = Parameter(rng.uniform(-0.1, 0.1, (H, V)).astype(dtype))  # (C_h, V)

    def forward(self, ids, targets=None):
        """ids (B, T) -> logits (B, T, V) from a zero state; with ``targets`` (B, T) also the mean
        cross-entropy."""
        logits, _ = self.forward_with_state(ids, None)
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits, targets)

    def forward_with_state(self, ids, state: State | None) -> tuple[Tensor, State]:
        """ids (B, T) read after ``state`` (zeros if None) -> logits (B, T, V) and the state
        after the last token. Gradients flow into a given state's tensors if they require them;
        truncated BPTT passes detached ones."""
        ids = ids.data if isinstance(ids, Tensor) else ids
        ids = ids if hasattr(ids, "dtype") else np.asarray(ids)  # host or device ids, as given
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ValueError(f"{type(self).__name__} expects token ids (B, T) with T >= 1, got "
                             f"shape {ids.shape}; for one sequence use ids[None]")
        if state is not None and len(state) != len(self.layers):
            raise ValueError(f"the state has {len(state)} layer(s), the model "
                             f"{len(self.layers)}: pass the state this model returned")
        weight = self.wte.weight  # (V, C)
        ids = check_token_ids(ids, weight.shape[0], device_of(weight.data))  # once; moved up once
        xs = [self.drops[0](apply(EmbeddingFunction(ids[:, t]), weight))  # the embedding's op
              for t in range(ids.shape[1])]  # T x (B, C)
        new_state = []
        for index, layer in enumerate(self.layers):
            xs, layer_state = layer.unroll(xs, None if state is None else state[index])
            xs = [self.drops[index + 1](x) for x in xs]  # T x (B, C_h)
            new_state.append(layer_state)
        h = stack(xs, axis=1)  # (B, T, C_h)
        head = self.wte.weight.T if self.head is None else self.head  # (C_h, V)
        return h @ head, new_state  # (B, T, V)

    def generate(self, ids, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, rng: np.random.Generator | None = None,
                 use_cache: bool = True) -> np.ndarray:
        """Continue each row of ``ids`` (B, T0) by ``max_new_tokens`` sampled tokens: (B, T0 + new).

        The same arguments as ``GPT.generate``; ``use_cache`` changes nothing (the carried state is
        the cache, and there is no window to slide). Temperature 0 is greedy.
        """
        ids = prompt_ids(ids)
        return append_stream(ids, self.generate_stream(ids, max_new_tokens, temperature, top_k,
                                                       top_p, rng, use_cache))

    def generate_stream(self, ids, max_new_tokens: int, temperature: float = 1.0,
                        top_k: int | None = None, top_p: float | None = None,
                        rng: np.random.Generator | None = None, use_cache: bool = True):
        """Like :meth:`generate`, but yield each new column of token ids (B,) as soon as it is
        drawn. The arguments are checked at once."""
        ids = prompt_ids(ids)
        check_generation(max_new_tokens, temperature, top_k, top_p)
        return self._sample_loop(ids, max_new_tokens, temperature, top_k, top_p,
                                 rng or default_rng())

    def _sample_loop(self, ids, max_new_tokens, temperature, top_k, top_p, rng):
        """The generator behind generate_stream: the prompt once, then one step per token."""
        was_training, state, step_ids = self.training, None, ids
        self.eval()
        try:
            for _ in range(max_new_tokens):
                with no_grad():  # not held across the yield: the caller may use autograd meanwhile
                    logits, state = self.forward_with_state(step_ids, state)  # (B, T, V)
                next_ids = sample_next(to_numpy(logits.data[:, -1, :]), rng, temperature,
                                       top_k, top_p)  # (B,)
                step_ids = next_ids[:, None]  # (B, 1): the next step reads only the new token
                yield next_ids
        finally:
            self.train(was_training)

    def extra_repr(self) -> str:
        c = self.config
        return (f"cell={c.cell}, V={c.vocab_size}, T={c.context_length}, L={c.num_layers}, "
                f"C={c.d_model}, C_h={c.hidden_size}, tied={c.tie_weights}")

