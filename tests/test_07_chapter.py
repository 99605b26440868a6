"""Chapter 07's cost of a generation step with and without the key/value cache (eq. 7.4), counted
from the shapes of every product a MultiHeadAttention layer actually computes.
"""

import numpy as np
import pytest

import tinyllm as tl
from tinyllm import ops
from tinyllm.nn import KVCache, MultiHeadAttention, multihead

pytestmark = pytest.mark.ch07


def count_multiply_adds(monkeypatch) -> dict:
    """Patch the Linear products (ops.MatMul) and the attention call to add up multiply-adds."""
    counts = {"projections": 0, "attention": 0}
    matmul_forward = ops.MatMul.forward
    attention = multihead.scaled_dot_product_attention

    def counted_matmul(self, a, b):
        rows = int(np.prod(a.shape[:-1]))
        counts["projections"] += rows * a.shape[-1] * b.shape[-1]
        return matmul_forward(self, a, b)

    def counted_attention(q, k, v, *args, **kwargs):
        B, H, T_q, D = q.shape
        T_k = k.shape[-2]
        counts["attention"] += B * H * T_q * T_k * (D + v.shape[-1])   # Q K^T, then P V
        return attention(q, k, v, *args, **kwargs)

    monkeypatch.setattr(ops.MatMul, "forward", counted_matmul)
    monkeypatch.setattr(multihead, "scaled_dot_product_attention", counted_attention)
    return counts


def test_a_cached_step_costs_c_squared_plus_t_c(monkeypatch):
    """Eq. 7.4: the t-th new token costs 4 C^2 + 2 t C multiply-adds with the cache (four
    projections of one row, one row of scores over t keys), and 4 t C^2 + 2 t^2 C without it
    (everything recomputed for the whole prefix)."""
    C, H, t = 16, 4, 7
    mha = MultiHeadAttention(C, H, rng=np.random.default_rng(0), dtype=np.float64)
    x = tl.tensor(np.random.default_rng(1).standard_normal((1, t, C)))
    counts = count_multiply_adds(monkeypatch)
    with tl.no_grad():
        full = mha(x, is_causal=True)
        assert counts == {"projections": 4 * t * C * C, "attention": 2 * t * t * C}
        cache = KVCache(context_length=t)
        mha(x[:, : t - 1], is_causal=True, cache=cache)                     # the prefix, once
        counts.update(projections=0, attention=0)
        last = mha(x[:, t - 1 :], is_causal=True, cache=cache)              # the t-th token
    assert counts == {"projections": 4 * C * C, "attention": 2 * t * C}
    np.testing.assert_allclose(last.numpy()[0, 0], full.numpy()[0, -1], rtol=0, atol=1e-12)
