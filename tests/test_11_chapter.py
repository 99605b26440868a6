"""Chapter 11's equations that tests/test_11_gpt.py does not check one by one: the autoregressive
factorisation (eq. 11.1), the forward pass as composed in the chapter (eq. 11.4), the residual
stream's variance at initialisation (eq. 11.5), and the cost of a cached generation step
(eq. 11.12). All float64 unless the eval path needs otherwise.
"""

import numpy as np
import pytest

import tinyllm as tl
from tinyllm import ops
from tinyllm.models import GPT, GPTConfig
from tinyllm.nn import KVCache, multihead

pytestmark = pytest.mark.ch11

TINY = GPTConfig(vocab_size=11, context_length=16, num_layers=2, num_heads=2, d_model=8)


def tiny_gpt(config: GPTConfig = TINY, seed: int = 0) -> GPT:
    return GPT(config, rng=np.random.default_rng(seed)).astype(np.float64).eval()


def log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def test_the_sequence_probability_is_the_product_of_the_next_token_ones():
    """Eq. 11.1: ln p(x_1..x_T) = sum_t ln p(x_t | x_<t), each factor computed by running the
    model on the prefix x_<t alone, equals the sum read off one causal pass over the sequence."""
    model = tiny_gpt()
    ids = np.random.default_rng(1).integers(0, TINY.vocab_size, (1, 9))
    with tl.no_grad():
        one_pass = log_softmax(model(ids).numpy()[0])                          # (T, V)
        by_prefix = [log_softmax(model(ids[:, :t]).numpy()[0, -1])[ids[0, t]]
                     for t in range(1, 9)]
    from_one_pass = one_pass[np.arange(8), ids[0, 1:]]                         # (T - 1,)
    np.testing.assert_allclose(by_prefix, from_one_pass, rtol=1e-12, atol=1e-12)
    assert sum(by_prefix) == pytest.approx(from_one_pass.sum(), rel=1e-12)


def test_the_forward_pass_is_the_composition_of_eq_11_4():
    """Eq. 11.4: h0_t = W_te[x_t] + W_pe[t]; h_l = Block_l(h_{l-1}); z_t = LN_f(h_L) W_te^T, with
    the LayerNorm and the tied output layer written out in NumPy."""
    model = tiny_gpt()
    ids = np.random.default_rng(2).integers(0, TINY.vocab_size, (2, 7))
    weights = {name: p.numpy() for name, p in model.named_parameters()}
    with tl.no_grad():
        h = weights["wte.weight"][ids] + weights["wpe.weight"][:7]             # (B, T, C)
        for block in model.blocks:
            h = block(tl.tensor(h), is_causal=True).numpy()                    # (B, T, C)
        logits = model(ids).numpy()
    mean = h.mean(-1, keepdims=True)
    normalised = (h - mean) / np.sqrt(h.var(-1, keepdims=True) + model.ln_f.eps)
    final = normalised * weights["ln_f.weight"] + weights.get("ln_f.bias", 0.0)
    np.testing.assert_allclose(logits, final @ weights["wte.weight"].T, rtol=1e-10, atol=1e-12)


def test_the_residual_stream_adds_the_variances_of_its_branches():
    """Eq. 11.5 at initialisation: h_L = h_0 + sum of the 2L branch outputs b_i (exactly, for a
    pre-LN stack), and Var(h_L) is close to Var(h_0) + sum_i Var(b_i) (the branches are nearly
    uncorrelated)."""
    config = GPTConfig(vocab_size=50, context_length=32, num_layers=4, num_heads=4, d_model=64)
    model = tiny_gpt(config, seed=3)
    ids = np.random.default_rng(4).integers(0, 50, (8, 32))
    with tl.no_grad():
        h0 = model.wpe(model.wte(ids))                                         # (B, T, C)
        h, branches = h0, []
        for block in model.blocks:
            attention = block.attn(block.ln1(h), is_causal=True)
            branches.append(attention.numpy())
            h = h + attention
            feed_forward = block.ff(block.ln2(h))
            branches.append(feed_forward.numpy())
            h = h + feed_forward
    final = h0.numpy() + sum(branches)
    np.testing.assert_allclose(h.numpy(), final, rtol=1e-12, atol=1e-14)
    with tl.no_grad():
        stacked = h0
        for block in model.blocks:
            stacked = block(stacked, is_causal=True)                           # the library's own
    np.testing.assert_allclose(stacked.numpy(), final, rtol=1e-10, atol=1e-12)
    predicted = h0.numpy().var() + sum(b.var() for b in branches)
    assert final.var() == pytest.approx(predicted, rel=0.1)


def test_a_cached_generation_step_costs_l_times_c_squared_plus_t_c(monkeypatch):
    """Eq. 11.12: the t-th token costs L (12 C^2 + 2 t C) multiply-adds with the caches (four C x C
    projections and the 8 C^2 of the feed-forward, one row of scores) and L (12 t C^2 + 2 t^2 C)
    without them; the tied output layer adds C V (t C V) to both."""
    counts = {"products": 0}
    matmul_forward = ops.MatMul.forward
    attention = multihead.scaled_dot_product_attention

    def counted_matmul(self, a, b):
        counts["products"] += int(np.prod(a.shape[:-1])) * a.shape[-1] * b.shape[-1]
        return matmul_forward(self, a, b)

    def counted_attention(q, k, v, *args, **kwargs):
        counts["products"] += int(np.prod(q.shape[:-1])) * k.shape[-2] * (q.shape[-1]
                                                                         + v.shape[-1])
        return attention(q, k, v, *args, **kwargs)

    monkeypatch.setattr(ops.MatMul, "forward", counted_matmul)
    monkeypatch.setattr(multihead, "scaled_dot_product_attention", counted_attention)
    model, t = tiny_gpt(), 9
    L, C, V = TINY.num_layers, TINY.d_model, TINY.vocab_size
    ids = np.random.default_rng(5).integers(0, V, (1, t))
    with tl.no_grad():
        full = model(ids).numpy()
        assert counts["products"] == L * (12 * t * C * C + 2 * t * t * C) + t * C * V
        caches = [KVCache(TINY.context_length) for _ in range(L)]
        model(ids[:, : t - 1], caches=caches)
        counts["products"] = 0
        last = model(ids[:, t - 1 :], caches=caches).numpy()
    assert counts["products"] == L * (12 * C * C + 2 * t * C) + C * V
    np.testing.assert_allclose(last[0, 0], full[0, -1], rtol=1e-10, atol=1e-12)
