"""Chapter 07, multi-head attention: heads as reshapes, masks, dropout, and the KV cache.

Under test: ``tinyllm/nn/attention.py`` (``MultiHeadAttention``, ``KVCache``). The reference
computes every head separately in NumPy with a Python loop (what the reshapes replace) and compares.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyllm as tl
from tinyllm.nn import KVCache, MultiHeadAttention

pytestmark = pytest.mark.ch07


def make_mha(d_model=8, num_heads=2, dtype=np.float64, seed=0, **kwargs) -> MultiHeadAttention:
    return MultiHeadAttention(
        d_model, num_heads, rng=np.random.default_rng(seed), dtype=dtype, **kwargs
    )


def per_head_reference(mha: MultiHeadAttention, x, context=None, allowed=None):
    """Eqs. 7.1-7.2 with a loop over heads: head h uses columns h*D:(h+1)*D of each projection."""
    context = x if context is None else context
    p = {name: param.numpy() for name, param in mha.named_parameters()}
    q = x @ p["q_proj.weight"] + p["q_proj.bias"]
    k = context @ p["k_proj.weight"] + p["k_proj.bias"]
    v = context @ p["v_proj.weight"] + p["v_proj.bias"]
    D = mha.head_dim
    heads, weights = [], []
    for h in range(mha.num_heads):
        cols = slice(h * D, (h + 1) * D)
        scores = q[..., cols] @ np.swapaxes(k[..., cols], -1, -2) / math.sqrt(D)  # (B, T_q, T_k)
        if allowed is not None:
            scores = np.where(allowed, scores, -np.inf)
        e = np.exp(scores - scores.max(-1, keepdims=True))
        P = e / e.sum(-1, keepdims=True)
        heads.append(P @ v[..., cols])
        weights.append(P)
    out = np.concatenate(heads, axis=-1) @ p["out_proj.weight"] + p["out_proj.bias"]
    return out, np.stack(weights, axis=1)  # (B, T_q, C), (B, H, T_q, T_k)


# --------------------------------------------------------------------------------------------------
# Finite differences with respect to inputs and every projection weight
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["plain", "causal", "padding", "padding+causal"])
def test_gradcheck_self_attention(setting):
    rng = np.random.default_rng(1)
    mha = make_mha()
    x = tl.tensor(rng.standard_normal((2, 4, 8)), requires_grad=True)
    mask = None
    if "padding" in setting:
        mask = np.array([[True, True, True, False], [True, True, True, True]])  # (B, T_k)
    is_causal = "causal" in setting
    assert tl.gradcheck(
        lambda x, *params: mha(x, mask=mask, is_causal=is_causal), x, *mha.parameters()
    )


def test_gradcheck_cross_attention():
    rng = np.random.default_rng(2)
    mha = make_mha(d_model=6, num_heads=3)
    x = tl.tensor(rng.standard_normal((2, 3, 6)), requires_grad=True)
    context = tl.tensor(rng.standard_normal((2, 5, 6)), requires_grad=True)
    mask = np.array(
        [[True] * 5, [True, True, False, False, False]]
    )  # the context's padding (B, T_k)
    assert tl.gradcheck(
        lambda x, c, *params: mha(x, context=c, mask=mask), x, context, *mha.parameters()
    )


def test_gradcheck_with_dropout_in_training():
    """The module's generator is reseeded before every call, so each call uses the same
    keep-mask."""
    rng = np.random.default_rng(3)
    mha = make_mha(dropout=0.3)
    x = tl.tensor(rng.standard_normal((2, 4, 8)), requires_grad=True)

    def f(x, *params):
        mha.rng = np.random.default_rng(5)
        return mha(x, is_causal=True)

    assert tl.gradcheck(f, x, *mha.parameters())


# --------------------------------------------------------------------------------------------------
# Heads as reshapes == a loop over heads
# --------------------------------------------------------------------------------------------------


@given(
    st.integers(1, 3),
    st.integers(1, 5),
    st.integers(1, 5),
    st.integers(1, 4),
    st.integers(1, 4),
    st.booleans(),
    st.integers(0, 2**31 - 1),
)
def test_reshaped_heads_equal_a_loop_over_heads(B, T_q, T_k, H, D, cross, seed):
    # eqs. 7.1, 7.2: projections, one softmax per head, concatenation, W_O
    rng = np.random.default_rng(seed)
    mha = make_mha(d_model=H * D, num_heads=H, seed=seed)
    x = rng.standard_normal((B, T_q, H * D))
    context = rng.standard_normal((B, T_k, H * D)) if cross else None
    context_tensor = None if context is None else tl.tensor(context)
    out, weights = mha(tl.tensor(x), context=context_tensor, return_weights=True)
    expected, expected_weights = per_head_reference(mha, x, context)
    assert out.shape == (B, T_q, H * D)
    assert weights.shape == (B, H, T_q, T_k if cross else T_q)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(weights.numpy(), expected_weights, rtol=1e-10, atol=1e-12)


def test_causal_reference_and_weights():
    rng = np.random.default_rng(4)
    mha = make_mha(d_model=12, num_heads=3)
    x = rng.standard_normal((2, 5, 12))
    out, weights = mha(tl.tensor(x), is_causal=True, return_weights=True)
    expected, expected_weights = per_head_reference(
        mha, x, allowed=np.tril(np.ones((5, 5), dtype=bool))
    )
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(weights.numpy(), expected_weights, rtol=1e-10, atol=1e-13)
    assert np.all(weights.numpy()[:, :, np.triu_indices(5, 1)[0], np.triu_indices(5, 1)[1]] == 0.0)


# --------------------------------------------------------------------------------------------------
# Parameters, masks, causality
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d_model, num_heads", [(8, 2), (12, 3), (64, 8)])
def test_parameter_count_closed_form(d_model, num_heads):
    """Eq. 7.3: four C x C projections with biases, 4 (C^2 + C), whatever the number of heads."""
    C = d_model
    assert make_mha(d_model, num_heads).num_parameters() == 4 * (C * C + C)
    assert make_mha(d_model, num_heads, bias=False).num_parameters() == 4 * C * C
    names = [name for name, _ in make_mha(d_model, num_heads).named_parameters()]
    assert names == [
        f"{p}.{w}" for p in ("q_proj", "k_proj", "v_proj", "out_proj") for w in ("weight", "bias")
    ]


def test_causal_output_ignores_later_inputs():
    rng = np.random.default_rng(5)
    mha = make_mha(d_model=8, num_heads=4)
    x = rng.standard_normal((2, 6, 8))
    base = mha(tl.tensor(x), is_causal=True).numpy()
    for t in range(6):
        changed = x.copy()
        changed[:, t + 1 :] = rng.standard_normal(changed[:, t + 1 :].shape) * 5
        out = mha(tl.tensor(changed), is_causal=True).numpy()
        np.testing.assert_array_equal(out[:, : t + 1], base[:, : t + 1])
    x_var = tl.tensor(x, requires_grad=True)
    out = mha(x_var, is_causal=True)
    out[:, 2].sum().backward()
    np.testing.assert_array_equal(x_var.grad.numpy()[:, 3:], 0.0)
    assert np.all(np.abs(x_var.grad.numpy()[:, :3]).sum(-1) > 0)


def test_padding_mask_forms_agree_and_hide_padded_tokens():
    """(B, T_k) is broadcast as (B, 1, 1, T_k); the same as a (B, T_q, T_k) or (B, H, T_q, T_k)
    mask."""
    rng = np.random.default_rng(6)
    mha = make_mha()
    x = rng.standard_normal((2, 5, 8))
    padding = np.array([[True, True, True, False, False], [True, True, True, True, True]])
    out, weights = mha(tl.tensor(x), mask=padding, return_weights=True)
    assert np.all(weights.numpy()[0, :, :, 3:] == 0.0)
    np.testing.assert_allclose(weights.numpy().sum(-1), 1, rtol=1e-13)
    for same in (
        tl.tensor(padding),
        np.broadcast_to(padding[:, None, :], (2, 5, 5)),
        np.broadcast_to(padding[:, None, None, :], (2, 2, 5, 5)),
    ):
        np.testing.assert_array_equal(mha(tl.tensor(x), mask=same).numpy(), out.numpy())
    changed = x.copy()
    changed[0, 3:] = 100.0  # the padded tokens' content does not reach the real ones
    out2 = mha(tl.tensor(changed), mask=padding).numpy()
    np.testing.assert_array_equal(out2[0, :3], out.numpy()[0, :3])


def test_dropout_only_in_training_and_seeded():
    rng = np.random.default_rng(7)
    x = tl.tensor(rng.standard_normal((2, 6, 8)))
    with_dropout, without = make_mha(dropout=0.5, seed=3), make_mha(dropout=0.0, seed=3)
    with_dropout.eval()
    np.testing.assert_array_equal(with_dropout(x).numpy(), without(x).numpy())
    np.testing.assert_array_equal(with_dropout(x).numpy(), with_dropout(x).numpy())
    with_dropout.train()
    a, b = with_dropout(x).numpy(), with_dropout(x).numpy()
    assert not np.allclose(a, b)  # new masks every call
    assert not np.allclose(a, without(x).numpy())
    twin = make_mha(dropout=0.5, seed=3)  # same seed: same weights and same sequence of masks
    np.testing.assert_array_equal(twin(x).numpy(), a)
    np.testing.assert_array_equal(twin(x).numpy(), b)


def test_float32_stays_float32():
    mha = make_mha(dtype=np.float32)
    x = tl.randn(2, 3, 8, requires_grad=True, rng=np.random.default_rng(0))
    out, weights = mha(x, is_causal=True, return_weights=True)
    out.sum().backward()
    assert out.dtype == weights.dtype == x.grad.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in mha.parameters())


def test_on_device(device):
    rng = np.random.default_rng(8)
    mha = make_mha().to(device)
    x = rng.standard_normal((2, 4, 8))
    context = rng.standard_normal((2, 3, 8))
    out = mha(
        tl.tensor(x, device=device),
        context=tl.tensor(context, device=device),
        mask=np.array([[True, True, False], [True, True, True]]),
    )
    assert out.device == device
    mha.to("cpu")
    expected, _ = per_head_reference(
        mha, x, context, allowed=np.array([[[True, True, False]], [[True] * 3]])
    )
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# The KV cache
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, atol", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_kv_cache_token_by_token_equals_full_causal(dtype, atol):
    """Not bit-exact: a (1, T) row of scores and a (T, T) matrix go through different BLAS kernels
    whose sums round in another order; the difference is a few units in the last place."""
    rng = np.random.default_rng(9)
    mha = make_mha(d_model=16, num_heads=4, dtype=dtype)
    x = tl.tensor(rng.standard_normal((3, 9, 16)).astype(dtype))
    with tl.no_grad():
        full = mha(x, is_causal=True).numpy()
        cache = KVCache(context_length=12)
        steps = [mha(x[:, t : t + 1], is_causal=True, cache=cache).numpy() for t in range(9)]
    assert cache.length == 9
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=0, atol=atol)


def test_kv_cache_prompt_then_tokens_and_weights():
    """A prompt of 4 tokens in one call (bottom-right causal alignment), then one token at a
    time."""
    rng = np.random.default_rng(10)
    mha = make_mha(d_model=8, num_heads=2)
    x = tl.tensor(rng.standard_normal((2, 7, 8)))
    with tl.no_grad():
        full, full_weights = mha(x, is_causal=True, return_weights=True)
        cache = KVCache(context_length=7)
        outs = [mha(x[:, :4], is_causal=True, cache=cache).numpy()]
        for t in range(4, 7):
            out, weights = mha(x[:, t : t + 1], is_causal=True, cache=cache, return_weights=True)
            assert weights.shape == (2, 2, 1, t + 1)
            np.testing.assert_allclose(
                weights.numpy()[:, :, 0], full_weights.numpy()[:, :, t, : t + 1], rtol=0, atol=1e-12
            )
            outs.append(out.numpy())
    np.testing.assert_allclose(np.concatenate(outs, axis=1), full.numpy(), rtol=0, atol=1e-12)


def test_kv_cache_is_preallocated_and_resets():
    rng = np.random.default_rng(11)
    mha = make_mha()
    cache = KVCache(context_length=5)
    with tl.no_grad():
        mha(tl.tensor(rng.standard_normal((2, 1, 8))), is_causal=True, cache=cache)
        keys = cache.keys
        assert keys.shape == (2, 2, 5, 4) and cache.values.shape == (2, 2, 5, 4)
        for _ in range(4):
            mha(tl.tensor(rng.standard_normal((2, 1, 8))), is_causal=True, cache=cache)
        assert cache.keys is keys  # written in place: no copy of the past per token
        assert cache.length == 5
        with pytest.raises(
            ValueError, match=r"KV cache full: 5 cached \+ 1 new positions > context_length = 5"
        ):
            mha(tl.tensor(rng.standard_normal((2, 1, 8))), is_causal=True, cache=cache)
        cache.reset()
        assert cache.length == 0 and cache.keys is None
        mha(
            tl.tensor(rng.standard_normal((3, 2, 8))), is_causal=True, cache=cache
        )  # a new batch size
        assert cache.keys.shape == (3, 2, 5, 4) and cache.length == 2


def test_one_cache_per_layer():
    """Two stacked layers, each with its own cache (how a GPT holds them), match the uncached
    stack."""
    rng = np.random.default_rng(12)
    layers = [make_mha(seed=s) for s in (1, 2)]
    x = tl.tensor(rng.standard_normal((2, 5, 8)))
    with tl.no_grad():
        full = x
        for layer in layers:
            full = layer(full, is_causal=True)
        caches = [KVCache(context_length=5) for _ in layers]
        outs = []
        for t in range(5):
            h = x[:, t : t + 1]
            for layer, cache in zip(layers, caches):
                h = layer(h, is_causal=True, cache=cache)
            outs.append(h.numpy())
    np.testing.assert_allclose(np.concatenate(outs, axis=1), full.numpy(), rtol=0, atol=1e-12)


def test_kv_cache_errors():
    rng = np.random.default_rng(13)
    mha = make_mha()
    x = tl.tensor(rng.standard_normal((2, 1, 8)))
    with pytest.raises(
        RuntimeError, match=r"for generation only: call the model under `with tl.no_grad\(\):`"
    ):
        mha(x, is_causal=True, cache=KVCache(4))
    with tl.no_grad():
        with pytest.raises(ValueError, match=r"cross-attention takes no cache"):
            mha(x, context=x, cache=KVCache(4))
        cache = KVCache(4)
        mha(x, is_causal=True, cache=cache)
        with pytest.raises(
            ValueError, match=r"KV cache holds keys \(B, H, T, D\) = \(2, 2, 1, 4\).*reset"
        ):
            mha(tl.tensor(rng.standard_normal((3, 1, 8))), is_causal=True, cache=cache)
        with pytest.raises(
            ValueError, match=r"a 2-D mask is a key padding mask \(B, T_k\) = \(2, 2\)"
        ):
            mha(x, cache=cache, mask=np.ones((2, 5), dtype=bool))
        assert cache.length == 1  # a rejected call leaves the cache as it was
    with pytest.raises(ValueError, match=r"KVCache needs context_length >= 1"):
        KVCache(0)


# --------------------------------------------------------------------------------------------------
# Errors that teach
# --------------------------------------------------------------------------------------------------


def test_errors_name_the_shapes():
    with pytest.raises(
        ValueError,
        match=r"d_model = 10 is not divisible by num_heads = 4; choose num_heads "
        r"among \[1, 2, 5, 10\]",
    ):
        MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\), got 1.5"):
        MultiHeadAttention(8, 2, dropout=1.5)
    mha = make_mha()
    x = tl.tensor(np.ones((2, 3, 8)))
    with pytest.raises(
        ValueError, match=r"expected x \(B, T, C\) with C = d_model = 8, got \(2, 3, 6\)"
    ):
        mha(tl.tensor(np.ones((2, 3, 6))))
    with pytest.raises(
        ValueError, match=r"expected context \(B, T, C\) with C = d_model = 8, got \(2, 8\)"
    ):
        mha(x, context=tl.tensor(np.ones((2, 8))))
    with pytest.raises(ValueError, match=r"x and context batch sizes differ: 2 vs 3"):
        mha(x, context=tl.tensor(np.ones((3, 4, 8))))
    padding_rule = r"a 2-D mask is a key padding mask \(B, T_k\) = \(2, 3\).*mask\[None\]"
    with pytest.raises(ValueError, match=padding_rule):
        mha(x, mask=np.ones((3, 4), dtype=bool))
    with pytest.raises(
        ValueError, match=r"mask expected \(B, T_k\), \(B, T_q, T_k\) or \(B, H, T_q, T_k\)"
    ):
        mha(x, mask=np.ones(3, dtype=bool))
    with pytest.raises(
        ValueError,
        match=r"does not broadcast to the attention scores \(B, H, T_q, T_k\) = "
        r"\(2, 2, 3, 3\)",
    ):
        mha(x, mask=np.ones((2, 3, 2, 3), dtype=bool))
