"""Scaling study: time and peak memory of a GPT training step against width, depth and context,
tinyllm and PyTorch in the same run, up to a GPT-2-small-shaped step (chapter 17, "Scale").

    PYTHONPATH=. /tmp/venv_torch/bin/python benchmarks/scaling_study.py   # ~17 min, 2 busy cores
    PYTHONPATH=. /tmp/venv_torch/bin/python benchmarks/scaling_study.py --plot-only

A step is ``tinyllm.train.train_step`` (forward, mean cross-entropy, backward, clipping, AdamW) as
``tinyllm bench`` times it (``tinyllm.bench.training``), against the PyTorch twin with the same
weights, batches and recipe (``tinyllm.bench.torch_twin``), float32, on random tokens.

- Sweeps (vocabulary V = 65, heads H = C / 64): width C = 128 ... 768 (L = 4, T = 256, B = 8);
  depth L = 2 ... 12 (C = 256); context T = 64 ... 2048 (C = 256, L = 4, B T = 2048 tokens per
  step; tinyllm with the fused attention op and with blockwise attention); GPT-2 small (L = 12,
  C = 768, H = 12, T = 1024, V = 50257, B = 1: 124M parameters).
- One thread for BLAS and for PyTorch: the machine is shared, and two-thread timings under load
  measure the load. Time: medians of ``--repeats`` steps per framework, interleaved one by one
  (tinyllm, PyTorch, tinyllm, ...), after one warm-up step each; wall and CPU time.
- Peak memory: each (configuration, framework) in a fresh subprocess: the RSS high-water growth
  over the process after its imports, while it builds the model and optimizer and runs two steps
  (weights, gradients, AdamW moments, activations; ``tinyllm.bench.memory.measure_peak``), and for
  tinyllm tracemalloc's peak (NumPy's arrays, exactly).
- FLOPs per step: B T (6 N_mm + 12 L T C) (``tinyllm.bench.training.training_flops_per_token``;
  Kaplan et al. 2020, sec. 2.1; Chowdhery et al. 2022, PaLM, appendix B), divided by the median
  wall time, against the best float32 2048^3 product of NumPy and PyTorch (``tinyllm.bench.peak``),
  measured before and after the sweeps.

Writes ``benchmarks/results/scaling_study.json`` and ``benchmarks/scaling_*.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"  # before NumPy is imported: one BLAS thread

import numpy as np  # noqa: E402

from tinyllm.bench.memory import measure_peak  # noqa: E402
from tinyllm.bench.peak import matmul_gflops, torch_matmul_gflops  # noqa: E402
from tinyllm.bench.training import (  # noqa: E402
    TinyllmStep,
    interleaved_times,
    training_flops_per_token,
)
from tinyllm.models import GPTConfig  # noqa: E402
from tinyllm.runtime import keep_freed_memory  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "scaling_study.json"
VOCAB = 65  # a character vocabulary: the sweeps measure the blocks, not the output layer
TOKENS = 2048  # B T of every step of the sweeps
SWEEPS = {"width": [128, 256, 384, 512, 768], "depth": [2, 4, 8, 12],
          "context": [64, 256, 1024, 2048], "gpt2": [1024]}
QUICK_SWEEPS = {"width": [64, 128], "depth": [1, 2], "context": [64, 128], "gpt2": []}  # smoke


def point_config(sweep: str, value: int) -> tuple[GPTConfig, int]:
    """(the model shape, batch size B) of one point of a sweep."""
    if sweep == "gpt2":  # GPT-2 small's shape (Radford et al. 2019), without biases
        return GPTConfig(vocab_size=50257, context_length=1024, num_layers=12, num_heads=12,
                         d_model=768), 1
    width = value if sweep == "width" else 256
    depth = value if sweep == "depth" else 4
    context = value if sweep == "context" else 256
    return GPTConfig(vocab_size=VOCAB, context_length=context, num_layers=depth,
                     num_heads=width // 64, d_model=width), TOKENS // context


def frameworks_of(sweep: str, have_torch: bool) -> list[str]:
    names = ["tinyllm", "tinyllm blockwise"] if sweep == "context" else ["tinyllm"]
    return names + (["PyTorch"] if have_torch else [])


def runner(framework: str, config: GPTConfig, batch_size: int, reference: TinyllmStep | None):
    """An object with ``step()``; PyTorch copies ``reference``'s weights, batches and recipe."""
    if framework == "PyTorch":
        from tinyllm.bench.torch_twin import TorchStep

        return TorchStep(config, reference.model.state_dict(), reference.task, reference.recipe,
                         reference.scheduler.schedule, reference.seed, threads=1)
    attention = "blockwise" if framework == "tinyllm blockwise" else "fused"
    return TinyllmStep(dataclasses.replace(config, attention=attention), batch_size)


def time_point(frameworks: list[str], config: GPTConfig, batch_size: int, repeats: int) -> dict:
    """Median wall and CPU ms per step of each framework, interleaved; the losses' agreement."""
    first = runner("tinyllm", config, batch_size, None)
    runners = {name: first if name == "tinyllm" else runner(name, config, batch_size, first)
               for name in frameworks}
    times = interleaved_times({name: r.step for name, r in runners.items()}, repeats, block=1,
                              warmup=1)
    losses = [r.losses for r in runners.values()]
    return {"ms": {n: 1e3 * statistics.median(w for w, _ in t) for n, t in times.items()},
            "cpu_ms": {n: 1e3 * statistics.median(c for _, c in t) for n, t in times.items()},
            "max_loss_difference": max(abs(a - b) for other in losses[1:]
                                       for a, b in zip(losses[0], other))}


def memory_worker(framework: str, sweep: str, value: int) -> dict:
    """In this fresh process: peak memory of building the model and optimizer and two steps."""
    config, batch_size = point_config(sweep, value)
    if framework == "PyTorch":
        import torch

        torch.set_num_threads(1)
        reference = runner("tinyllm", config, batch_size, None)  # its weights, before measuring
    else:
        reference = None

    def work():
        steps = runner(framework, config, batch_size, reference)
        return [steps.step() for _ in range(2)]

    memory = measure_peak(work)
    return memory if framework != "PyTorch" else {**memory, "tracemalloc_mib": None}


def memory_point(framework: str, sweep: str, value: int) -> dict:
    """``memory_worker`` in a fresh Python process (this one's freed memory would hide a peak)."""
    command = [sys.executable, __file__, "--memory-worker", framework, sweep, str(value)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=900)
    return json.loads(done.stdout.strip().splitlines()[-1])


def peaks(have_torch: bool) -> dict[str, float]:
    found = {"NumPy": matmul_gflops(np, 2048, 5)}
    if have_torch:
        found["PyTorch"] = torch_matmul_gflops(2048, 5)
    return found


def run(sweeps: list[str], repeats: int, gpt2_repeats: int, values=SWEEPS,
        partial: Path | None = None) -> dict:
    """Every point of ``sweeps`` (their ``values``): times, peak memory, GFLOP/s (module doc);
    the points so far are written to ``partial`` after each one (a long run stopped keeps them)."""
    try:
        import torch

        torch.set_num_threads(1)
        have_torch, torch_version = True, torch.__version__
    except ImportError:
        have_torch, torch_version = False, None
    keep_freed_memory()  # as the trainer does (tinyllm.runtime)
    start, load_before = time.perf_counter(), os.getloadavg()
    before = peaks(have_torch)
    done: dict[tuple, dict] = {}  # (config, B) -> figures: a shape shared by two sweeps runs once
    points = []
    for sweep in sweeps:
        for value in values[sweep]:
            config, batch_size = point_config(sweep, value)
            frameworks = frameworks_of(sweep, have_torch)
            key = (config, batch_size, tuple(frameworks))
            if key not in done:
                figures = time_point(frameworks, config, batch_size,
                                     gpt2_repeats if sweep == "gpt2" else repeats)
                figures["memory"] = {name: memory_point(name, sweep, value)
                                     for name in frameworks}
                done[key] = figures
            figures = done[key]
            tokens = batch_size * config.context_length
            point = {"sweep": sweep, "value": value, "width": config.d_model,
                     "depth": config.num_layers, "context": config.context_length,
                     "heads": config.num_heads, "vocab": config.vocab_size,
                     "batch_size": batch_size, "tokens": tokens,
                     "gflop_per_step": training_flops_per_token(config) * tokens / 1e9,
                     "max_loss_difference": figures["max_loss_difference"],
                     "frameworks": {name: {"ms": figures["ms"][name],
                                           "cpu_ms": figures["cpu_ms"][name],
                                           **figures["memory"][name]}
                                    for name in frameworks}}
            points.append(point)
            print(f"{sweep:>7} {value:>5}: B={batch_size:<3} {point['gflop_per_step']:8.1f} GFLOP"
                  + "".join(f"  {name} {f['ms']:9.1f} ms {f['rss_mib']:8.1f} MiB"
                            for name, f in point["frameworks"].items()), flush=True)
            if partial is not None:
                partial.write_text(json.dumps({"peak_gflops": before, "points": points}) + "\n")
    after = peaks(have_torch)
    peak = {name: max(before[name], after[name]) for name in before}
    best = max(peak.values())
    for point in points:
        for figures in point["frameworks"].values():
            figures["gflops"] = point["gflop_per_step"] / (figures["ms"] / 1e3)  # wall clock
            figures["peak_fraction"] = figures["gflops"] / best
            figures["gflops_cpu"] = point["gflop_per_step"] / (figures["cpu_ms"] / 1e3)
            figures["peak_fraction_cpu"] = figures["gflops_cpu"] / best
    return {"threads": 1, "repeats": repeats, "gpt2_repeats": gpt2_repeats,
            "numpy": np.__version__, "torch": torch_version,
            "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "peak_gflops": {"before": before, "after": after, "best": peak},
            "wall_seconds": time.perf_counter() - start, "points": points}


def plot(result: dict, folder: Path = HERE) -> list[Path]:
    """One figure per sweep (ms per step and peak memory) and the GFLOP/s of every point.

    Times are drawn as CPU time (solid) and wall-clock time (dotted): with one thread the CPU time
    is the work, while on a shared machine the wall clock also holds the waits for a free core.
    """
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    labels = {"width": "width C (L = 4, T = 256, B = 8)", "depth": "depth L (C = 256, T = 256)",
              "context": "context T (C = 256, L = 4, B T = 2048)"}
    for sweep, label in labels.items():
        points = [p for p in result["points"] if p["sweep"] == sweep]
        if not points:
            continue
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for index, name in enumerate(points[0]["frameworks"]):
            xs, color = [p["value"] for p in points], f"C{index}"
            left.plot(xs, [p["frameworks"][name]["cpu_ms"] for p in points], "o-", color=color,
                      label=name)
            left.plot(xs, [p["frameworks"][name]["ms"] for p in points], ":", color=color)
            right.plot(xs, [p["frameworks"][name]["rss_mib"] for p in points], "o-",
                       color=color, label=name)
        for axis, title in ((left, "ms per step (solid: CPU time, dotted: wall)"),
                            (right, "peak RSS growth, MiB (model + AdamW + step)")):
            axis.set(xscale="log", yscale="log", xlabel=label, title=title)
            axis.set_xticks(xs, [str(x) for x in xs])
            axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())  # only the swept values
            axis.grid(alpha=0.3)
            axis.legend()
        figure.tight_layout()
        path = folder / f"scaling_{sweep}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    figure, axis = plt.subplots(figsize=(7, 4))
    names = sorted({n for p in result["points"] for n in p["frameworks"]})
    for index, name in enumerate(names):
        chosen = [p for p in result["points"] if name in p["frameworks"]]
        flops = [p["gflop_per_step"] for p in chosen]
        axis.plot(flops, [g / (p["frameworks"][name]["cpu_ms"] / 1e3)
                          for g, p in zip(flops, chosen)], "o", color=f"C{index}", label=name)
        axis.plot(flops, [g / (p["frameworks"][name]["ms"] / 1e3) for g, p in zip(flops, chosen)],
                  "o", color=f"C{index}", fillstyle="none", alpha=0.5)
    for name, value in result["peak_gflops"]["best"].items():
        axis.axhline(value, linestyle="--", color="gray")
        axis.text(0.01, value, f"{name} 2048³ matmul peak {value:.0f}", fontsize=8, va="bottom",
                  transform=axis.get_yaxis_transform())  # x in axes fractions, y in GFLOP/s
    axis.set(xscale="log", xlabel="GFLOP per training step (6 N + 12 L T C per token)",
             ylabel="GFLOP/s (filled: by CPU time, hollow: by wall)",
             title="training steps against the matmul peak, 1 thread")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    path = folder / "scaling_flops.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return written + [path]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", nargs="+", choices=list(SWEEPS), default=list(SWEEPS))
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per framework")
    parser.add_argument("--gpt2-repeats", type=int, default=2, help="timed steps, GPT-2 small")
    parser.add_argument("--quick", action="store_true", help="tiny sweeps: a smoke test")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--plot-only", action="store_true", help="redraw from the JSON")
    parser.add_argument("--memory-worker", nargs=3, help=argparse.SUPPRESS)  # the subprocess
    args = parser.parse_args()
    if args.memory_worker:
        framework, sweep, value = args.memory_worker
        print(json.dumps(memory_worker(framework, sweep, int(value))))
        return
    if not args.plot_only:
        result = run(args.sweeps, args.repeats, args.gpt2_repeats,
                     QUICK_SWEEPS if args.quick else SWEEPS, args.json.with_suffix(".partial"))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        args.json.with_suffix(".partial").unlink(missing_ok=True)  # the run is complete
        print(f"wrote {args.json} ({result['wall_seconds']:.0f} s)")
    for path in plot(json.loads(args.json.read_text())):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
