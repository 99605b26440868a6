"""Fused vs composed softmax and cross-entropy, forward + backward, float32 (chapter 03).

    python benchmarks/bench_losses.py            # (N, V) = (768, 65) and (8192, 2000)
    python benchmarks/bench_losses.py --repeats 51

N = B*T rows of logits, V classes: (768, 65) is the character-level GPT of chapter 11 (B=12, T=64),
(8192, 2000) a BPE-vocabulary model. The fused op and its composed twin run in alternation
(interleaved), so a slow-down of the machine hits both alike, and the medians are compared. The last
line shows BERT's masked-LM loss, which gathers the ~15% chosen rows before the softmax ("fused"
column), against a cross-entropy with ignore_index over every row ("composed" column).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tinyllm as tl
import tinyllm.nn.functional as F
from tinyllm.nn.losses import IGNORE_INDEX
from tinyllm.objectives import mlm_loss


def forward_backward(loss_fn, logits: np.ndarray, cotangent: np.ndarray | None = None) -> float:
    """Seconds for one forward and backward pass of loss_fn on a fresh leaf holding ``logits``."""
    z = tl.tensor(logits, requires_grad=True)
    start = time.perf_counter()
    out = loss_fn(z)
    out.backward(cotangent)
    return time.perf_counter() - start


def compare(name: str, fused, composed, logits: np.ndarray, repeats: int, cotangent=None) -> None:
    """Interleaved repeats of both; print the medians in milliseconds and composed / fused."""
    times = {"fused": [], "composed": []}
    for _ in range(2):  # warm-up: first-touch page faults, caches
        forward_backward(fused, logits, cotangent)
        forward_backward(composed, logits, cotangent)
    for _ in range(repeats):
        times["fused"].append(forward_backward(fused, logits, cotangent))
        times["composed"].append(forward_backward(composed, logits, cotangent))
    fused_ms = 1e3 * float(np.median(times["fused"]))
    composed_ms = 1e3 * float(np.median(times["composed"]))
    print(f"{name:<44s} {fused_ms:9.3f} {composed_ms:11.3f} {composed_ms / fused_ms:8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=21, help="timed repeats of each op (median reported)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    print(
        f"{'forward + backward, float32':<44s} {'fused ms':>9s} {'composed ms':>11s} {'ratio':>9s}"
    )
    for rows, num_classes in [(768, 65), (8192, 2000)]:
        logits = rng.standard_normal((rows, num_classes)).astype(np.float32)
        targets = rng.integers(0, num_classes, size=rows)
        cotangent = rng.standard_normal((rows, num_classes)).astype(np.float32)
        shape = f"(N, V) = ({rows}, {num_classes})"
        compare(
            f"cross_entropy {shape}",
            lambda z: F.cross_entropy(z, targets),
            lambda z: F.cross_entropy_composed(z, targets),
            logits,
            args.repeats,
        )
        compare(f"softmax {shape}", F.softmax, F.softmax_composed, logits, args.repeats, cotangent)
        compare(
            f"log_softmax {shape}",
            F.log_softmax,
            F.log_softmax_composed,
            logits,
            args.repeats,
            cotangent,
        )

    # BERT: labels on ~15% of B*T = 8192 positions; gather those rows first, or softmax every row.
    batch, length, num_classes = 64, 128, 2000
    logits = rng.standard_normal((batch, length, num_classes)).astype(np.float32)
    labels = rng.integers(0, num_classes, size=(batch, length))
    labels[rng.random((batch, length)) >= 0.15] = IGNORE_INDEX
    compare(
        f"mlm_loss vs full CE, (B*T, V) = ({batch * length}, {num_classes})",
        lambda z: mlm_loss(z, labels),
        lambda z: F.cross_entropy(z, labels),
        logits,
        args.repeats,
    )


if __name__ == "__main__":
    main()
