"""The three plots of chapter 16 from the JSON files the compress_*.py scripts write (chapter 16,
section 16.6).

    cd benchmarks
    python compress_quantize.py --checkpoint /tmp/gpt-run --json results/compress_quantize.json
    python compress_prune.py --checkpoint /tmp/gpt-run --json results/compress_prune.json
    python compress_plots.py          # reads results/*.json, writes the three PNGs below

- ``compress_bits.png``: validation loss against bits per stored weight (float32, int8, int4),
  one marker per scheme (per channel, per group of g = 32 and 64): the error bound of eq. 16.6,
  half a step Delta = absmax / (2^(b-1) - 1) per entry, grows 2^4 / 1 = 16x from 8 to 4 bits;
- ``compress_sparsity.png``: validation loss against the fraction s of weights set to zero by
  global magnitude pruning (eq. 16.12), before and after a short fine-tune;
- ``compress_heads.png``: validation loss against the number of attention heads removed, in order
  of importance |dL/dxi_h| (eq. 16.13), raw scores against scores l2-normalised per layer.

Each plot draws the unpruned, float32 loss of the same JSON file as a dashed line. Nothing is
measured here: the figures are exactly those of the JSON files (``benchmarks/results/`` holds the
ones the chapter shows).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def read(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"{path}: no such file; write it with the compress_*.py script's "
                         "--json PATH, or pass this script the path of one that exists")
    return json.loads(path.read_text())


def figure(title: str, xlabel: str):
    """A small Figure (no pyplot, no display needed) and its one axis, labelled."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.8))
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation loss (nats/token)")
    ax.grid(alpha=0.3)
    return fig, ax


def save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")


def plot_bits(quantize: dict, path: Path) -> None:
    """Loss against bits per stored weight (the scale's bits not counted), one marker a scheme."""
    rows = quantize["rows"]
    base = next(row for row in rows if row["bits"] == 32)
    fig, ax = figure("post-training quantization (symmetric absmax)", "bits per weight")
    ax.axhline(base["val_loss"], color="gray", linestyle="--")
    markers = {None: "o", 32: "s", 64: "^"}  # by group size (None: per output channel)
    most = max(row.get("eval_iters", 0) for row in rows)  # the batches most rows average over
    for row in rows:
        if row["bits"] == 32:
            continue
        label = row["scheme"] + f" ({row['bytes'] / 1e3:,.0f} kB)"
        if row.get("eval_iters", most) != most:
            label += f", {row['eval_iters']} batches only"
        ax.plot(row["bits"], row["val_loss"], markers[row["group_size"]], label=label,
                fillstyle="none" if row["matmul"] == "int8" else "full", markersize=7)
    ax.plot(32, base["val_loss"], "kD", label=f"float32 ({base['bytes'] / 1e3:,.0f} kB)")
    ax.set_xscale("log", base=2)
    ax.set_xticks([4, 8, 16, 32], ["4", "8", "16", "32"])
    ax.legend(fontsize=7)
    save(fig, path)


def plot_sparsity(prune: dict, path: Path) -> None:
    """Loss against sparsity s: magnitude-pruned, then after the fine-tune the JSON names."""
    rows = prune["sparsity"]
    s = [row["sparsity"] for row in rows]
    fig, ax = figure("global magnitude pruning", "sparsity (fraction of weights set to 0)")
    ax.axhline(rows[0]["val_loss"], color="gray", linestyle="--", label="unpruned")
    ax.plot(s, [row["val_loss"] for row in rows], "o-", label="pruned, no fine-tune")
    ax.plot(s, [row["finetuned_val_loss"] for row in rows], "s-",
            label=f"pruned, then {prune['finetune']} fine-tune steps (masks kept)")
    ax.legend(fontsize=8)
    save(fig, path)


def plot_heads(prune: dict, path: Path) -> None:
    """Loss against heads removed, least important first, for the two orders of eq. 16.13."""
    rows = prune["heads"]
    removed = [row["removed"] for row in rows]
    fig, ax = figure(f"head pruning by importance ({rows[0]['of']} heads in all)",
                     "attention heads removed")
    ax.axhline(rows[0]["raw"], color="gray", linestyle="--", label="all heads")
    ax.plot(removed, [row["raw"] for row in rows], "o-", label="raw |dL/dxi| (global order)")
    ax.plot(removed, [row["normalised"] for row in rows], "s-",
            label="l2-normalised per layer")
    ax.set_xticks(removed)
    ax.legend(fontsize=8)
    save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quantize", default=str(RESULTS / "compress_quantize.json"),
                        help="compress_quantize.py --json output")
    parser.add_argument("--prune", default=str(RESULTS / "compress_prune.json"),
                        help="compress_prune.py --json output")
    parser.add_argument("--out", default=str(HERE), help="folder for the PNGs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prune = read(args.prune)
    plot_bits(read(args.quantize), out / "compress_bits.png")
    plot_sparsity(prune, out / "compress_sparsity.png")
    plot_heads(prune, out / "compress_heads.png")


if __name__ == "__main__":
    main()
