"""Timing text generation with and without the KV cache (``tinyllm bench``; chapters 07 and 11).

On "cuda" the model is on the GPU; each new token comes to the host as it is drawn (it is the next
step's input and the caller's text), which waits for the GPU, so the wall clock is honest.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from tinyllm.bench.training import BenchSetting
from tinyllm.models import GPT


def generation_times(model: GPT, repeats: int) -> dict[str, float]:
    """ms per new token for ``context_length - 1`` tokens from a 1-token prompt, cached and not
    (interleaved), and whether both gave the same tokens."""
    new_tokens = model.config.context_length - 1
    prompt = np.zeros((1, 1), dtype=np.int64)  # (B, T0) = (1, 1)
    times: dict[bool, list[float]] = {True: [], False: []}
    outputs = {}
    for _ in range(repeats):
        for use_cache in (True, False):
            start = time.perf_counter()
            outputs[use_cache] = model.generate(prompt, new_tokens, rng=np.random.default_rng(0),
                                                use_cache=use_cache)
            times[use_cache].append(time.perf_counter() - start)
    cached, uncached = (1e3 * statistics.median(times[c]) / new_tokens for c in (True, False))
    return {"new_tokens": new_tokens, "cache_ms_per_token": round(cached, 3),
            "no_cache_ms_per_token": round(uncached, 3), "speedup": round(uncached / cached, 2),
            "same_tokens": bool(np.array_equal(outputs[True], outputs[False]))}


def print_generation(settings: list[BenchSetting], device: str = "cpu") -> list[dict]:
    """The KV-cache table, the models on ``device``; returns its rows."""
    print("\ngeneration: context_length - 1 new tokens from a 1-token prompt, batch 1, "
          "ms per new token")
    print(f"{'model':<22}{'new':>6}{'runs':>6}{'KV cache':>10}{'no cache':>10}{'speed-up':>10}"
          "  same tokens")
    rows = []
    for setting in settings:
        model = GPT(setting.config, rng=np.random.default_rng(0)).to(device)
        row = {"model": setting.name, **generation_times(model, setting.generation_repeats)}
        print(f"{setting.name:<22}{row['new_tokens']:>6}{setting.generation_repeats:>6}"
              f"{row['cache_ms_per_token']:>10.2f}{row['no_cache_ms_per_token']:>10.2f}"
              f"{row['speedup']:>9.2f}x  "
              f"{'yes' if row['same_tokens'] else 'no'}")
        rows.append(row)
    return rows
