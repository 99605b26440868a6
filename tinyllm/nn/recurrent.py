"""Recurrent layers: the Elman RNN and the LSTM, cells and their unrolling over time (chapter 18).

A recurrent network reads a sequence one step at a time and carries a state from step to step:

    Elman (1990):   h_t = tanh(x_t W_x + h_{t-1} W_h + b)                               (eq. 18.8)

Backpropagation through time (BPTT) is the ordinary backward pass through the unrolled graph; its
gradient dL/dh_t holds the product of the step Jacobians dh_{s}/dh_{s-1} = diag(1 - h_s^2) W_h^T,
which shrinks or grows geometrically with s - t (eq. 18.10: vanishing or exploding gradients;
``benchmarks/bptt_gradients.py`` draws it). The LSTM (Hochreiter & Schmidhuber 1997, with the
forget gate of Gers et al. 2000) adds a cell state c_t that is updated additively (eq. 18.11):

    [i, f, g, o] = [x_t, h_{t-1}] W + b              W: (C_in + C_h, 4 C_h), one product
    i = sigmoid(.), f = sigmoid(.), g = tanh(.), o = sigmoid(.)    input, forget, cell, output
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

so dc_t/dc_{t-1} = diag(f): the gradient along the cells is scaled by the forget gates, not by a
weight matrix and a saturating derivative. The forget-gate biases start at 1 (Jozefowicz et al.
2015), so f ~ sigmoid(1) = 0.73 at initialisation and the cell remembers.

Everything is composed from the engine's primitives (MatMul, Add, Mul, Sigmoid, Tanh, slicing,
concatenation): there is no fused step, so autograd derives BPTT by itself. A layer's state is a
tuple of Tensors (B, C_h): ``(h,)`` for the RNN, ``(h, c)`` for the LSTM. The loop over time steps
is the recurrence itself; nothing loops over the batch or the features.
"""

from __future__ import annotations

import math

import numpy as np

from tinyllm.backend import get_array_module
from tinyllm.creation import concatenate, default_rng, split, stack
from tinyllm.nn.module import Module, Parameter
from tinyllm.tensor import DEFAULT_DTYPE, Tensor


def _uniform(rng: np.random.Generator, bound: float, shape, dtype) -> Parameter:
    return Parameter(rng.uniform(-bound, bound, shape).astype(dtype))


def _check_step(x: Tensor, state: tuple[Tensor, ...], input_size: int, hidden_size: int,
                name: str) -> None:
    if x.ndim != 2 or x.shape[1] != input_size:
        raise ValueError(f"{name} expected an input x_t of shape (B, {input_size}), got {x.shape}")
    for part in state:
        if part.shape != (x.shape[0], hidden_size):
            raise ValueError(f"{name} expected a state of shape (B, C_h) = ({x.shape[0]}, "
                             f"{hidden_size}), got {part.shape}")


class RNNCell(Module):
    """One Elman step (eq. 18.8): ``cell(x, (h,))`` -> ``(h',)`` with h' = tanh(x W_x + h W_h + b).

    x (B, C_in), h (B, C_h). Every weight starts uniform in [-1/sqrt(C_h), 1/sqrt(C_h)] (PyTorch's
    ``nn.RNNCell``); ``weight_h`` is kept apart from ``weight_x`` because its spectrum decides
    whether gradients through time vanish or explode (eq. 18.10).
    """

    state_size = 1  # the state is (h,)

    def __init__(self, input_size: int, hidden_size: int, rng: np.random.Generator | None = None,
                 dtype=DEFAULT_DTYPE):
        rng = rng or default_rng()
        bound = 1 / math.sqrt(hidden_size)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_x = _uniform(rng, bound, (input_size, hidden_size), dtype)  # (C_in, C_h)
        self.weight_h = _uniform(rng, bound, (hidden_size, hidden_size), dtype)  # (C_h, C_h)
        self.bias = _uniform(rng, bound, (hidden_size,), dtype)  # (C_h,)

    def forward(self, x: Tensor, state: tuple[Tensor]) -> tuple[Tensor]:
        _check_step(x, state, self.input_size, self.hidden_size, "RNNCell")
        (h,) = state
        return ((x @ self.weight_x + h @ self.weight_h + self.bias).tanh(),)  # (B, C_h)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}"


class LSTMCell(Module):
    """One LSTM step (eq. 18.11): ``cell(x, (h, c))`` -> ``(h', c')``.

        [z_i, z_f, z_g, z_o] = [x, h] W + b     (B, 4 C_h): the four gates from one product
        c' = sigmoid(z_f) * c + sigmoid(z_i) * tanh(z_g);    h' = sigmoid(z_o) * tanh(c')

    ``weight`` is (C_in + C_h, 4 C_h) with the gates in the order i, f, g, o (PyTorch's), uniform in
    [-1/sqrt(C_h), 1/sqrt(C_h)]; ``bias`` (4 C_h) is zero except the forget gate's, which is 1
    (Jozefowicz et al. 2015). Parameters: (C_in + C_h + 1) 4 C_h (eq. 18.12).
    """

    state_size = 2  # the state is (h, c)

    def __init__(self, input_size: int, hidden_size: int, rng: np.random.Generator | None = None,
                 dtype=DEFAULT_DTYPE):
        rng = rng or default_rng()
        H = hidden_size
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight = _uniform(rng, 1 / math.sqrt(H), (input_size + H, 4 * H), dtype)
        bias = np.zeros(4 * H, dtype=dtype)
        bias[H:2 * H] = 1.0  # the forget gate: remember by default
        self.bias = Parameter(bias)  # (4 C_h,)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        _check_step(x, state, self.input_size, self.hidden_size, "LSTMCell")
        h, c = state
        z = concatenate([x, h], axis=-1) @ self.weight + self.bias  # (B, C_in + C_h) -> (B, 4 C_h)
        z_i, z_f, z_g, z_o = split(z, 4, axis=-1)  # 4 x (B, C_h)
        c = z_f.sigmoid() * c + z_i.sigmoid() * z_g.tanh()  # (B, C_h)
        h = z_o.sigmoid() * c.tanh()  # (B, C_h)
        return h, c

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}"


class _Recurrent(Module):
    """A cell unrolled over T steps: ``layer(x, state)`` -> outputs (B, T, C_h), final state."""

    cell: RNNCell | LSTMCell

    def initial_state(self, batch_size: int, like: Tensor) -> tuple[Tensor, ...]:
        """Zeros (B, C_h) for every part of the state, on ``like``'s device, in its dtype."""
        xp = get_array_module(like.data)
        shape = (batch_size, self.cell.hidden_size)
        return tuple(Tensor(xp.zeros(shape, dtype=like.dtype)) for _ in range(self.cell.state_size))

    def unroll(self, xs: list[Tensor], state: tuple[Tensor, ...] | None = None,
               ) -> tuple[list[Tensor], tuple[Tensor, ...]]:
        """Run the cell over the inputs x_1 .. x_T, each (B, C_in), from ``state`` (zeros if None).

        Returns the T outputs h_1 .. h_T, each (B, C_h), and the final state. Models call this
        with a list: slicing a (B, T, C) tensor at every step would give each slice's backward a
        whole (B, T, C) gradient array, T^2 B C work in all.
        """
        if not xs:
            raise ValueError("a recurrent layer needs at least one time step, got T = 0")
        state = self.initial_state(xs[0].shape[0], xs[0]) if state is None else tuple(state)
        if len(state) != self.cell.state_size:
            raise ValueError(f"{type(self).__name__} expects a state of {self.cell.state_size} "
                             f"tensor(s) (B, C_h), got {len(state)}")
        outputs = []
        for x in xs:  # the recurrence: step t needs the state of step t - 1
            state = self.cell(x, state)
            outputs.append(state[0])  # h_t (B, C_h)
        return outputs, state

    def forward(self, x: Tensor, state: tuple[Tensor, ...] | None = None,
                ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """x (B, T, C_in) -> outputs (B, T, C_h) and the final state, each part (B, C_h)."""
        if x.ndim != 3:
            raise ValueError(f"{type(self).__name__} expected inputs (B, T, C_in), got {x.shape}")
        outputs, state = self.unroll([x[:, t] for t in range(x.shape[1])], state)
        return stack(outputs, axis=1), state  # (B, T, C_h)

    def extra_repr(self) -> str:
        return f"input_size={self.cell.input_size}, hidden_size={self.cell.hidden_size}"


class RNN(_Recurrent):
    """An Elman RNN layer: :class:`RNNCell` unrolled over time; the state is ``(h,)``."""

    def __init__(self, input_size: int, hidden_size: int, rng: np.random.Generator | None = None,
                 dtype=DEFAULT_DTYPE):
        self.cell = RNNCell(input_size, hidden_size, rng=rng, dtype=dtype)


class LSTM(_Recurrent):
    """An LSTM layer: :class:`LSTMCell` unrolled over time; the state is ``(h, c)``."""

    def __init__(self, input_size: int, hidden_size: int, rng: np.random.Generator | None = None,
                 dtype=DEFAULT_DTYPE):
        self.cell = LSTMCell(input_size, hidden_size, rng=rng, dtype=dtype)
