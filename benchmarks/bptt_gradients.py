"""Gradient norms through time at initialisation: why plain RNNs forget and LSTMs remember
(chapter 18, eq. 18.10).

A loss that reads only the last state, L = <v, h_T> with a random v, sends its gradient back
through every step; ||dL/dh_t|| for t = T .. 1 shows the product of the step Jacobians:

- an Elman RNN whose recurrent matrix W_h has spectral radius rho: for small rho the norm shrinks
  geometrically (vanishing), for large rho it can grow (exploding) until tanh saturates;
- an LSTM at its initialisation (forget-gate bias 1): the path through the cells is scaled by the
  forget gates, so the norm decays much more slowly.

    python benchmarks/bptt_gradients.py                 # writes benchmarks/bptt_gradients.png
    python benchmarks/bptt_gradients.py --steps 200 --out /tmp/grads.png

Prints the ratio ||dL/dh_1|| / ||dL/dh_T|| for every curve.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import tinyllm as tl
from tinyllm import nn

B, C_IN, C_H = 8, 32, 64  # batch, input width, state width


def gradient_norms(layer, steps: int, seed: int = 0) -> np.ndarray:
    """||dL/dh_t|| for t = 1 .. T (mean over the batch rows) with L = <v, h_T>."""
    rng = np.random.default_rng(seed)
    xs = [tl.tensor(rng.standard_normal((B, C_IN)), dtype=np.float64) for _ in range(steps)]
    state = layer.initial_state(B, xs[0])
    hs = []
    for x in xs:
        state = layer.cell(x, state)
        state[0].retain_grad()  # keep dL/dh_t, an intermediate tensor's gradient
        hs.append(state[0])
    hs[-1].backward(rng.standard_normal((B, C_H)))
    return np.array([np.linalg.norm(h.grad.numpy(), axis=1).mean() for h in hs])


def rnn_with_radius(radius: float, seed: int = 0) -> nn.RNN:
    """An Elman layer whose W_h is a random orthogonal matrix times ``radius`` (every singular
    value equals rho, so the linearised step scales a gradient by at most rho)."""
    layer = nn.RNN(C_IN, C_H, rng=np.random.default_rng(seed)).astype(np.float64)
    q, _ = np.linalg.qr(np.random.default_rng(seed + 1).standard_normal((C_H, C_H)))
    layer.cell.weight_h.data = radius * q
    return layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="time steps T (default 100)")
    parser.add_argument("--out", default=str(Path(__file__).with_suffix(".png")))
    args = parser.parse_args()
    curves = {f"RNN, rho(W_h) = {rho}": gradient_norms(rnn_with_radius(rho), args.steps)
              for rho in (0.5, 1.0, 1.5, 3.0)}
    default_rnn = nn.RNN(C_IN, C_H, rng=np.random.default_rng(0)).astype(np.float64)
    curves["RNN, default init"] = gradient_norms(default_rnn, args.steps)
    lstm = nn.LSTM(C_IN, C_H, rng=np.random.default_rng(0)).astype(np.float64)
    curves["LSTM, default init (forget bias 1)"] = gradient_norms(lstm, args.steps)

    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    lags = np.arange(args.steps)[::-1]  # T - t: steps back from the loss
    for label, norms in curves.items():
        ax.semilogy(lags, norms, label=label)
        print(f"{label:38s} ||dL/dh_1|| / ||dL/dh_T|| = {norms[0] / norms[-1]:.3g}")
    ax.set_xlabel("T - t (steps back from the loss)")
    ax.set_ylabel("||dL/dh_t|| (mean over the batch)")
    ax.set_title(f"BPTT gradient norms at initialisation (T = {args.steps}, C_h = {C_H})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
