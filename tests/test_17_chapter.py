"""Chapter 17's equations that tests/test_17_distributed.py and test_17_blockwise_attention.py do
not already check: the shard-mean identity (eq. 17.1) and its weighted form for unequal shards
(eq. 17.2) on a float64 GPT's gradients, the summation bound (eq. 17.3), the ring all-reduce's
bytes per rank (eq. 17.4) and the compute-to-communication ratio (eq. 17.5) on a ring simulated
with NumPy arrays, the online softmax by hand (eqs. 17.6-17.9), the FLOP count (eq. 17.14) against
the matrix products a forward pass actually runs, and the arithmetic intensities (eq. 17.16).
"""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyllm as tl
import tinyllm.nn.functional as F
from tinyllm.bench.training import matmul_weights, training_flops_per_token
from tinyllm.models import GPT, GPTConfig, gpt_parameter_count
from tinyllm.ops import MatMul

pytestmark = pytest.mark.ch17

TINY = GPTConfig(vocab_size=11, context_length=8, num_layers=2, num_heads=2, d_model=16)


def tiny_gradients(rows: np.ndarray, ids: np.ndarray, model: GPT) -> list[np.ndarray]:
    """The gradients of the mean loss over the sequences ``ids[rows]``."""
    model.zero_grad()
    _, loss = model(ids[rows, :-1], ids[rows, 1:])
    loss.backward()
    return [p.grad.numpy().copy() for p in model.parameters()]


@pytest.fixture(scope="module")
def batch_and_model():
    model = GPT(TINY, rng=np.random.default_rng(0), dtype=np.float64)
    ids = np.random.default_rng(1).integers(0, TINY.vocab_size, (12, TINY.context_length + 1))
    return ids, model, tiny_gradients(np.arange(12), ids, model)


@pytest.mark.parametrize("ranks", [2, 3, 4, 6])
def test_the_mean_of_equal_shards_gradients_is_the_batch_gradient(batch_and_model, ranks):
    """eq. 17.1 in float64: W shards of B / W sequences."""
    ids, model, whole = batch_and_model
    size = 12 // ranks
    shards = [tiny_gradients(np.arange(r * size, (r + 1) * size), ids, model)
              for r in range(ranks)]
    for want, parts in zip(whole, zip(*shards)):
        np.testing.assert_allclose(sum(parts) / ranks, want, rtol=1e-12, atol=1e-15)


def test_unequal_shards_need_the_weighted_mean(batch_and_model):
    """eq. 17.2: weights B_r / B; the plain mean of the shards' means is wrong."""
    ids, model, whole = batch_and_model
    sizes = (1, 4, 7)
    starts = np.cumsum((0,) + sizes[:-1])
    shards = [tiny_gradients(np.arange(s, s + n), ids, model) for s, n in zip(starts, sizes)]
    weighted = [sum(n / 12 * g for n, g in zip(sizes, parts)) for parts in zip(*shards)]
    plain = [sum(parts) / 3 for parts in zip(*shards)]
    for want, got in zip(whole, weighted):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert max(np.abs(a - b).max() for a, b in zip(whole, plain)) > 1e-4


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 8), st.integers(1, 2 ** 16), st.booleans())
def test_two_summation_orders_differ_within_the_bound(ranks, seed, cancelling):
    """eq. 17.3: float32 sums of W partial gradients in two orders (one process's sequential order,
    a ring's chunked order) differ by at most 2 gamma_{n-1} sum |x_j|, and agree with float64."""
    rng = np.random.default_rng(seed)
    terms = rng.standard_normal((ranks, 64)).astype(np.float32)
    if not cancelling:
        terms = np.abs(terms)
    sequential = terms[0].copy()
    for term in terms[1:]:
        sequential = sequential + term
    reversed_order = terms[-1].copy()
    for term in terms[-2::-1]:
        reversed_order = reversed_order + term
    u = 2.0 ** -24
    gamma = (ranks - 1) * u / (1 - (ranks - 1) * u)
    bound = gamma * np.abs(terms.astype(np.float64)).sum(axis=0)
    exact = terms.astype(np.float64).sum(axis=0)
    assert np.all(np.abs(sequential - exact) <= bound)
    assert np.all(np.abs(reversed_order - exact) <= bound)
    assert np.all(np.abs(sequential - reversed_order) <= 2 * bound)


def ring_allreduce(buffers: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """Reduce-scatter then all-gather over a ring of W = len(buffers) ranks (Patarasuk & Yuan 2009).

    Each buffer is cut into W chunks. Reduce-scatter, step s = 0 .. W-2: rank r sends chunk
    (r - s) mod W to rank r + 1, which adds it to its own; afterwards rank r holds the full sum of
    chunk (r + 1) mod W. All-gather, step s: rank r sends chunk (r + 1 - s) mod W, which the next
    rank stores. Returns every rank's result and the bytes each rank sent.
    """
    W = len(buffers)
    chunks = [np.array_split(b.copy(), W) for b in buffers]
    sent = np.zeros(W, dtype=np.int64)
    for gather in (False, True):
        for step in range(W - 1):
            messages = [(r, (r - step + gather) % W) for r in range(W)]
            messages = [(r, c, chunks[r][c].copy()) for r, c in messages]  # all send at once
            for r, c, data in messages:
                right = (r + 1) % W
                chunks[right][c] = data if gather else chunks[right][c] + data
                sent[r] += data.nbytes
    return [np.concatenate(c) for c in chunks], sent


@pytest.mark.parametrize("ranks", [2, 3, 4, 8])
def test_the_simulated_ring_sums_and_sends_the_bytes_of_eq_17_4(ranks):
    n = 4200  # float32 elements: divisible by every W here, so the chunks are equal
    rng = np.random.default_rng(ranks)
    buffers = [rng.standard_normal(n).astype(np.float32) for _ in range(ranks)]
    results, sent = ring_allreduce(buffers)
    total = np.sum(np.array(buffers, dtype=np.float64), axis=0)
    for result in results:
        np.testing.assert_allclose(result, total, rtol=0, atol=1e-5)
    bytes_per_rank = 2 * (ranks - 1) / ranks * 4 * n  # eq. 17.4's bandwidth term, n float32 values
    np.testing.assert_array_equal(sent, bytes_per_rank)
    assert np.all(sent < 2 * 4 * n)  # below twice the gradient for any W


def test_compute_per_communicated_byte_is_eq_17_5():
    """FLOPs of a rank's share of a step over the bytes it sends in the ring (simulated), exactly
    and in the approximation 3 B T / (4 (W - 1)) for a model where N_mm ~ N."""
    config = GPTConfig(vocab_size=64, context_length=16, num_layers=4, num_heads=4, d_model=256)
    batch, ranks = 8, 4
    N = gpt_parameter_count(config)
    _, sent = ring_allreduce([np.zeros(N, dtype=np.float32) for _ in range(ranks)])
    flops_per_rank = training_flops_per_token(config) * batch * config.context_length / ranks
    L, T, C = config.num_layers, config.context_length, config.d_model
    rank_flops = (6 * matmul_weights(config) + 12 * L * T * C) * batch * T / ranks
    exact = rank_flops / (8 * N * (ranks - 1) / ranks)  # eq. 17.5, left-hand side
    assert sent.max() - sent.min() <= 4 * ranks  # chunks of N / W values, up to one element
    assert flops_per_rank / sent.mean() == pytest.approx(exact, rel=1e-6)
    approx = 3 * batch * T / (4 * (ranks - 1))
    assert exact == pytest.approx(approx, rel=0.05)  # 12 L T C and the non-product weights: small


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 600), st.sampled_from([1, 7, 64, 256]), st.integers(0, 2 ** 16),
       st.floats(0.1, 30.0))
def test_the_online_softmax_recurrence_by_hand(length, block, seed, scale):
    """eqs. 17.6-17.9 for one row: the output equals softmax(s) V and m + log l the logsumexp, for
    any block size and scores large enough to overflow a naive exp."""
    rng = np.random.default_rng(seed)
    s = scale * rng.standard_normal(length)
    values = rng.standard_normal((length, 5))
    m, ell, o = -np.inf, 0.0, np.zeros(5)
    for start in range(0, length, block):
        s_b, v_b = s[start:start + block], values[start:start + block]
        m_new = max(m, s_b.max())  # eq. 17.6
        ell = np.exp(m - m_new) * ell + np.exp(s_b - m_new).sum()  # eq. 17.7
        o = np.exp(m - m_new) * o + np.exp(s_b - m_new) @ v_b  # eq. 17.8
        m = m_new
    weights = np.exp(s - s.max())
    weights /= weights.sum()
    np.testing.assert_allclose(o / ell, weights @ values, rtol=1e-10, atol=1e-12)  # eq. 17.9
    lse = s.max() + np.log(np.exp(s - s.max()).sum())
    assert m + np.log(ell) == pytest.approx(lse, rel=1e-12, abs=1e-12)


def test_blockwise_attention_is_the_recurrence_on_every_row():
    """The library's blockwise op (eqs. 17.6-17.9 over blocks of 128 x 256) equals the recurrence
    run by hand row by row, across several key blocks."""
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((1, 1, 300, 4)) for _ in range(3))  # (B, H, T, D)
    got = F.blockwise_attention(tl.tensor(q), tl.tensor(k), tl.tensor(v)).numpy()
    scores = q[0, 0] @ k[0, 0].T / 2.0  # (T, T), sqrt(D) = 2
    for i in (0, 150, 299):
        m, ell, o = -np.inf, 0.0, np.zeros(4)
        for start in range(0, 300, 256):
            s_b, v_b = scores[i, start:start + 256], v[0, 0, start:start + 256]
            m_new = max(m, s_b.max())
            ell = np.exp(m - m_new) * ell + np.exp(s_b - m_new).sum()
            o = np.exp(m - m_new) * o + np.exp(s_b - m_new) @ v_b
            m = m_new
        np.testing.assert_allclose(got[0, 0, i], o / ell, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layers, heads, width, context, vocab",
                         [(2, 2, 16, 8, 11), (3, 4, 64, 32, 100), (1, 1, 8, 5, 3)])
def test_the_flop_count_is_the_matrix_products_of_a_forward_pass(monkeypatch, layers, heads,
                                                                  width, context, vocab):
    """eq. 17.14: the MatMul ops of a forward pass make 2 N_mm FLOPs per token (2 m k n each,
    counted from their operands), the fused attention op 4 L T C, and the bench counter is three
    times their sum; N_mm is the parameter count (eq. 11.7) less the weights in no product."""
    config = GPTConfig(vocab_size=vocab, context_length=context, num_layers=layers,
                       num_heads=heads, d_model=width)
    counted = []
    original = MatMul.forward

    def counting(op, a, b):
        out = original(op, a, b)
        counted.append(2 * out.size * a.shape[-1])  # 2 m k n for every product in the batch
        return out

    monkeypatch.setattr(MatMul, "forward", counting)
    batch = 3
    model = GPT(config, rng=np.random.default_rng(0))
    model(np.random.default_rng(1).integers(0, vocab, (batch, context)))
    tokens = batch * context
    L, T, C, V = layers, context, width, vocab
    assert sum(counted) == 2 * matmul_weights(config) * tokens
    no_products = T * C + 2 * L * C + C  # the position table, the LayerNorm weights
    assert matmul_weights(config) == gpt_parameter_count(config) - no_products
    assert matmul_weights(config) == 12 * L * C**2 + V * C
    assert training_flops_per_token(config) == 3 * (sum(counted) / tokens + 4 * L * T * C)
    assert training_flops_per_token(config) == 6 * matmul_weights(config) + 12 * L * T * C


@pytest.mark.parametrize("m, k, n", [(2048, 2048, 2048), (8, 768, 3072), (1024, 768, 50257)])
def test_the_arithmetic_intensity_of_a_product_and_of_an_addition(m, k, n):
    """eq. 17.16 from the operands' bytes: 2 m k n FLOPs over the float32 bytes read and written;
    an addition's 1 FLOP per element over 3 arrays of 4 bytes."""
    a, b = np.empty((m, k), np.float32), np.empty((k, n), np.float32)
    out_bytes = m * n * 4
    intensity = 2 * m * k * n / (a.nbytes + b.nbytes + out_bytes)
    assert intensity == pytest.approx(2 * m * k * n / (4 * (m * k + k * n + m * n)))
    if m == k == n:
        assert intensity == pytest.approx(n / 6)
    x = np.empty(1000, np.float32)
    assert x.size / (3 * x.nbytes) == pytest.approx(1 / 12)


def test_the_compute_roof_bounds_every_recorded_step_of_the_scaling_study():
    """eq. 17.15: P(I) = min(pi, I beta) <= pi, so no recorded training step of the scaling study
    (benchmarks/results/scaling_study.json) runs above the machine's matrix-product peak measured in
    the same run, the better of NumPy's and PyTorch's (the chapter's pi; FLOPs of eq. 17.14 over CPU
    time; 5% for the timer's rounding)."""
    study = json.loads((Path(__file__).resolve().parent.parent / "benchmarks" / "results"
                        / "scaling_study.json").read_text())
    peak = study["peak_gflops"]["best"]
    assert set(peak) == {"NumPy", "PyTorch"} and len(study["points"]) >= 10
    roof = max(peak.values())  # GFLOP/s
    for point in study["points"]:
        for name, run in point["frameworks"].items():
            achieved = point["gflop_per_step"] / (run["cpu_ms"] / 1000)  # GFLOP/s
            assert 0 < achieved <= 1.05 * roof, (point["sweep"], point["value"], name)


PEAK_SCRIPT = """
import json
import numpy as np
from tinyllm.bench.memory import measure_peak

before = np.ones(4 * 2**20, dtype=np.float64)  # 32 MiB, alive throughout

def work():
    inside = np.ones(4 * 2**20, dtype=np.float64)  # 32 MiB, touched: resident
    return float(inside.sum())

print(json.dumps({**measure_peak(work), "before": float(before[0])}))
"""


def test_measure_peak_sees_an_array_made_and_freed_inside_the_work():
    """tinyllm.bench.memory: a 32 MiB array written and freed during the work is in both peaks; one
    made before the call is in neither. In a fresh process, as the benchmarks measure: a test
    worker that ran other tests may hold freed pages that the new array reuses without the
    resident set growing."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT], capture_output=True, text=True,
                            timeout=120, check=True)
    memory = json.loads(result.stdout)
    assert 32 <= memory["tracemalloc_mib"] < 40
    assert 28 <= memory["rss_mib"] < 64
    assert memory["before"] == 1.0
