"""Chapter 06, scaled dot-product attention: fused op, composed op, NumPy formulas and finite
differences.

Under test: ``tinyllm/nn/attention.py`` (``ScaledDotProductAttention``,
``scaled_dot_product_attention``, ``scaled_dot_product_attention_composed``). The chapter's
equations are computed here directly in NumPy (``reference_forward``, ``reference_backward``) and
compared with autograd and with finite differences.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyllm as tl
import tinyllm.nn.functional as F

pytestmark = pytest.mark.ch06


def variable(values, device: str = "cpu") -> tl.Tensor:
    return tl.tensor(np.asarray(values, dtype=np.float64), requires_grad=True, device=device)


def random_qkv(rng, lead=(2, 3), T_q=4, T_k=5, D=6, D_v=None, device="cpu"):
    D_v = D if D_v is None else D_v
    q = variable(rng.standard_normal((*lead, T_q, D)), device)
    k = variable(rng.standard_normal((*lead, T_k, D)), device)
    v = variable(rng.standard_normal((*lead, T_k, D_v)), device)
    return q, k, v


def causal_pattern(T_q: int, T_k: int) -> np.ndarray:
    """Eq. 6.7 written out: query i (absolute position T_k - T_q + i) sees key j iff j <= T_k - T_q
    + i."""
    i = np.arange(T_q)[:, None]
    j = np.arange(T_k)[None, :]
    return j <= T_k - T_q + i


def reference_forward(q, k, v, allowed=None):
    """Eqs. 6.3-6.6 and 6.8 in plain NumPy: returns O and P."""
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if allowed is None:
        allowed = np.ones(scores.shape, dtype=bool)
    allowed = np.broadcast_to(allowed, scores.shape)
    scores = np.where(allowed, scores, -np.inf)
    has_key = allowed.any(axis=-1, keepdims=True)
    shifted = np.where(
        allowed, scores - np.where(has_key, scores.max(-1, keepdims=True), 0), -np.inf
    )
    e = np.exp(shifted)
    total = e.sum(-1, keepdims=True)
    P = np.where(has_key, e / np.where(total == 0, 1, total), 0)
    return P @ v, P


def reference_backward(q, k, v, P, g):
    """Eqs. 6.10-6.12 and 6.14 in plain NumPy (no dropout): returns dQ, dK, dV."""
    scale = 1 / math.sqrt(q.shape[-1])
    dV = np.swapaxes(P, -1, -2) @ g  # eq. 6.10
    dP = g @ np.swapaxes(v, -1, -2)  # eq. 6.11
    dS = P * (dP - (dP * P).sum(-1, keepdims=True))  # eq. 6.12
    dQ = dS @ k * scale  # eq. 6.14
    dK = np.swapaxes(dS, -1, -2) @ q * scale  # eq. 6.14
    return dQ, dK, dV


MASK_CASES = [
    "none",
    "padding",
    "causal",
    "padding+causal",
    "pattern",
    "causal T_q<T_k",
    "causal T_q>T_k",
]


def mask_case(name: str, rng, B=2, T_q=4, T_k=5):
    """(T_q, T_k, mask, is_causal) for one named case; padding masks leave every row at least one
    key."""
    if name == "causal T_q<T_k":
        return 3, 6, None, True
    if name == "causal T_q>T_k":
        return 6, 4, None, True  # the first two queries see no key: fully masked rows
    if name == "causal":
        return T_k, T_k, None, True
    padding = rng.random((B, 1, 1, T_k)) > 0.4
    padding[..., 0] = True
    if name == "padding":
        return T_q, T_k, padding, False
    if name == "padding+causal":
        return T_k, T_k, padding, True
    if name == "pattern":
        pattern = rng.random((T_q, T_k)) > 0.5
        pattern[:, -1] = True
        return T_q, T_k, pattern, False
    return T_q, T_k, None, False


# --------------------------------------------------------------------------------------------------
# Layer 1: finite differences
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", MASK_CASES)
def test_gradcheck_fused(case):
    rng = np.random.default_rng(0)
    T_q, T_k, mask, is_causal = mask_case(case, rng)
    q, k, v = random_qkv(rng, T_q=T_q, T_k=T_k, D=4, D_v=3)
    assert tl.gradcheck(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, mask=mask, is_causal=is_causal),
        q,
        k,
        v,
    )


@pytest.mark.parametrize("case", ["none", "padding+causal", "causal T_q>T_k"])
def test_gradcheck_fused_with_dropout(case):
    """A fresh generator with a fixed seed in every call gives the same keep-mask, so f is a fixed
    function."""
    rng = np.random.default_rng(1)
    T_q, T_k, mask, is_causal = mask_case(case, rng)
    q, k, v = random_qkv(rng, T_q=T_q, T_k=T_k, D=4)
    assert tl.gradcheck(
        lambda q, k, v: F.scaled_dot_product_attention(
            q, k, v, mask=mask, is_causal=is_causal, dropout_p=0.4, rng=np.random.default_rng(7)
        ),
        q,
        k,
        v,
    )


def test_gradcheck_broadcast_heads_and_leading_axes():
    """k, v shared by every head (B, 1, T, D) and a 2-D (T, D) attention: the engine sums the
    gradient."""
    rng = np.random.default_rng(2)
    q = variable(rng.standard_normal((2, 3, 4, 5)))
    k = variable(rng.standard_normal((2, 1, 6, 5)))
    v = variable(rng.standard_normal((2, 1, 6, 2)))
    assert tl.gradcheck(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), q, k, v
    )
    q2, k2, v2 = (
        variable(rng.standard_normal((3, 4))),
        variable(rng.standard_normal((5, 4))),
        variable(rng.standard_normal((5, 4))),
    )
    assert tl.gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v), q2, k2, v2)


def test_gradcheck_composed():
    rng = np.random.default_rng(3)
    T_q, T_k, mask, is_causal = mask_case("padding+causal", rng)
    q, k, v = random_qkv(rng, T_q=T_q, T_k=T_k, D=3)
    composed = F.scaled_dot_product_attention_composed
    assert tl.gradcheck(lambda q, k, v: composed(q, k, v, mask=mask, is_causal=is_causal), q, k, v)


# --------------------------------------------------------------------------------------------------
# Layer 2: fused == composed on generated shapes and masks
# --------------------------------------------------------------------------------------------------


@st.composite
def attention_problems(draw):
    B, H = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    T_q, T_k = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    D, D_v = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    kv_heads = draw(st.sampled_from([H, 1]))  # 1: keys and values shared by the heads (broadcast)
    mask_shape = draw(
        st.sampled_from([None, (B, 1, 1, T_k), (T_q, T_k), (B, H, T_q, T_k), (1, 1, T_q, 1)])
    )
    is_causal = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return B, H, kv_heads, T_q, T_k, D, D_v, mask_shape, is_causal, seed


@given(attention_problems())
def test_fused_equals_composed(problem):
    # eqs. 6.3-6.6: the NumPy reference_forward, scores, mask, softmax, P V
    B, H, kv_heads, T_q, T_k, D, D_v, mask_shape, is_causal, seed = problem
    rng = np.random.default_rng(seed)
    arrays = (
        rng.standard_normal((B, H, T_q, D)),
        rng.standard_normal((B, kv_heads, T_k, D)),
        rng.standard_normal((B, kv_heads, T_k, D_v)),
    )
    mask = (
        None if mask_shape is None else rng.random(mask_shape) > 0.3
    )  # some rows may be fully masked
    g = rng.standard_normal((B, H, T_q, D_v))
    results = []
    for attention in (F.scaled_dot_product_attention, F.scaled_dot_product_attention_composed):
        q, k, v = (variable(a) for a in arrays)
        out = attention(q, k, v, mask=mask, is_causal=is_causal)
        out.backward(g)
        results.append([out.numpy(), q.grad.numpy(), k.grad.numpy(), v.grad.numpy()])
    for fused, composed in zip(*results):
        assert np.all(np.isfinite(fused))
        np.testing.assert_allclose(fused, composed, rtol=1e-10, atol=1e-12)
    allowed = None if mask is None else mask
    if is_causal:
        allowed = (
            causal_pattern(T_q, T_k) if allowed is None else allowed & causal_pattern(T_q, T_k)
        )
    expected, _ = reference_forward(*arrays, allowed)
    np.testing.assert_allclose(results[0][0], expected, rtol=1e-10, atol=1e-12)


def test_fused_equals_composed_with_dropout():
    """Both draw the keep-mask as rng.random(P.shape) >= p, so equal seeds give equal masks."""
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal(s) for s in ((2, 2, 5, 3), (2, 2, 5, 3), (2, 2, 5, 4))]
    g = rng.standard_normal((2, 2, 5, 4))
    results = []
    for attention in (F.scaled_dot_product_attention, F.scaled_dot_product_attention_composed):
        q, k, v = (variable(a) for a in arrays)
        out = attention(q, k, v, is_causal=True, dropout_p=0.3, rng=np.random.default_rng(11))
        out.backward(g)
        results.append([out.numpy(), q.grad.numpy(), k.grad.numpy(), v.grad.numpy()])
    for fused, composed in zip(*results):
        np.testing.assert_allclose(fused, composed, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# Layer 3: the chapter's closed forms
# --------------------------------------------------------------------------------------------------


def test_backward_equations_vs_autograd_vs_finite_differences():
    """Eqs. 6.10-6.14 computed in NumPy == autograd == central differences of L = <g, O>."""
    rng = np.random.default_rng(5)
    qa, ka, va = (
        rng.standard_normal((2, 4, 3)),
        rng.standard_normal((2, 5, 3)),
        rng.standard_normal((2, 5, 2)),
    )
    g = rng.standard_normal((2, 4, 2))
    allowed = causal_pattern(4, 5)
    _, P = reference_forward(qa, ka, va, allowed)
    closed_form = reference_backward(qa, ka, va, P, g)

    q, k, v = variable(qa), variable(ka), variable(va)
    F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(g)
    for formula, tensor in zip(closed_form, (q, k, v)):
        np.testing.assert_allclose(tensor.grad.numpy(), formula, rtol=1e-12, atol=1e-13)

    eps = 1e-6
    arrays = [qa, ka, va]
    for which, formula in enumerate(closed_form):
        numeric = np.zeros_like(arrays[which])
        for index in np.ndindex(numeric.shape):
            plus, minus = [a.copy() for a in arrays], [a.copy() for a in arrays]
            plus[which][index] += eps
            minus[which][index] -= eps
            numeric[index] = (
                np.sum(reference_forward(*plus, allowed)[0] * g)
                - np.sum(reference_forward(*minus, allowed)[0] * g)
            ) / (2 * eps)
        np.testing.assert_allclose(formula, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dropout_p", [0.0, 0.5])
def test_rowsum_shortcut(dropout_p):
    """Eq. 6.13: rowsum(dP * P) = rowsum(g * O), with and without dropout (then with P~ and dP~)."""
    rng = np.random.default_rng(6)
    q, k, v = (
        rng.standard_normal((3, 4, 5)),
        rng.standard_normal((3, 6, 5)),
        rng.standard_normal((3, 6, 2)),
    )
    g = rng.standard_normal((3, 4, 2))
    _, P = reference_forward(q, k, v)
    keep = rng.random(P.shape) >= dropout_p
    dropped = P * keep / (1 - dropout_p)  # eq. 6.9
    out = dropped @ v
    dP = (g @ np.swapaxes(v, -1, -2)) * keep / (1 - dropout_p)
    np.testing.assert_allclose((dP * P).sum(-1), (g * out).sum(-1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d_k", [4, 16, 64])
def test_dot_product_variance_is_d_k(d_k):
    """Eq. 6.2: for independent unit-variance entries Var(q . k) = d_k; after dividing by sqrt(d_k)
    it is 1."""
    rng = np.random.default_rng(d_k)
    samples = 200_000
    dots = np.empty(samples)
    for start in range(0, samples, 50_000):  # in chunks, to keep memory small
        q = rng.standard_normal((50_000, d_k))
        k = rng.standard_normal((50_000, d_k))
        dots[start : start + 50_000] = np.einsum("nd,nd->n", q, k)
    assert abs(dots.var() / d_k - 1) < 0.03
    assert abs((dots / math.sqrt(d_k)).var() - 1) < 0.03
    assert abs(dots.mean()) < 0.03 * math.sqrt(d_k)


def test_unscaled_scores_saturate_the_softmax():
    """Without 1/sqrt(d_k) the weights become nearly one-hot and the softmax Jacobian nearly
    vanishes."""
    rng = np.random.default_rng(7)
    d_k, T = 512, 16
    q, k = rng.standard_normal((1000, 1, d_k)), rng.standard_normal((1000, T, d_k))
    raw = (q @ np.swapaxes(k, -1, -2))[:, 0, :]  # (1000, T)

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    for scores, saturated in ((raw, True), (raw / math.sqrt(d_k), False)):
        p = softmax(scores)
        jacobian = p[:, :, None] * (np.eye(T) - p[:, None, :])  # diag(p) - p p^T per row (eq. 3.4)
        jacobian_norm = np.median(np.sqrt((jacobian**2).sum((1, 2))))  # typical Frobenius norm
        top_weight = np.median(p.max(-1))
        if saturated:
            assert top_weight > 0.99 and jacobian_norm < 0.01
        else:
            assert top_weight < 0.3 and jacobian_norm > 0.25


# --------------------------------------------------------------------------------------------------
# Masks and the conventions of the chapter
# --------------------------------------------------------------------------------------------------


def test_causal_output_ignores_the_future():
    """Changing q, k, v after position t leaves the outputs at positions <= t exactly unchanged."""
    rng = np.random.default_rng(8)
    arrays = [rng.standard_normal((2, 3, 7, 4)) for _ in range(3)]
    base = F.scaled_dot_product_attention(*(tl.tensor(a) for a in arrays), is_causal=True).numpy()
    for t in range(7):
        changed = [a.copy() for a in arrays]
        for a in changed:
            a[..., t + 1 :, :] = rng.standard_normal(a[..., t + 1 :, :].shape) * 10
        out = F.scaled_dot_product_attention(
            *(tl.tensor(a) for a in changed), is_causal=True
        ).numpy()
        np.testing.assert_array_equal(out[..., : t + 1, :], base[..., : t + 1, :])
        if t < 6:
            assert not np.allclose(out[..., t + 1 :, :], base[..., t + 1 :, :])


def test_causal_is_bottom_right_aligned():
    """T_q < T_k: the queries are the last T_q positions, so the result is the full attention's last
    rows."""
    rng = np.random.default_rng(9)
    q, k, v = (tl.tensor(rng.standard_normal((2, 3, 6, 4))) for _ in range(3))
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True).numpy()
    last, weights = F.scaled_dot_product_attention(
        q[:, :, 4:], k, v, is_causal=True, return_weights=True
    )
    np.testing.assert_allclose(last.numpy(), full[:, :, 4:], rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(
        weights.numpy() > 0, np.broadcast_to(causal_pattern(2, 6), (2, 3, 2, 6))
    )
    np.testing.assert_array_equal(causal_pattern(2, 6), [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])


def test_masked_keys_get_exactly_zero_weight():
    # eq. 6.5: a forbidden key gets weight exactly 0
    rng = np.random.default_rng(10)
    q, k, v = (rng.standard_normal((2, 2, 5, 3)) for _ in range(3))
    mask = rng.random((2, 1, 1, 5)) > 0.5
    mask[..., 2] = True
    out, weights = F.scaled_dot_product_attention(
        tl.tensor(q), tl.tensor(k), tl.tensor(v), mask=mask, return_weights=True
    )
    w = weights.numpy()
    assert np.all(w[np.broadcast_to(~mask, w.shape)] == 0.0)
    assert np.all(w[np.broadcast_to(mask, w.shape)] > 0)
    np.testing.assert_allclose(w.sum(-1), 1, rtol=1e-14)
    v_changed = v.copy()
    v_changed[np.broadcast_to(~mask[..., 0, :, None], v.shape)] = 1e6
    out2 = F.scaled_dot_product_attention(
        tl.tensor(q), tl.tensor(k), tl.tensor(v_changed), mask=mask
    )
    np.testing.assert_array_equal(out2.numpy(), out.numpy())


@pytest.mark.parametrize(
    "attention", [F.scaled_dot_product_attention, F.scaled_dot_product_attention_composed]
)
def test_fully_masked_row_is_zero_not_nan(attention):
    """Eq. 6.8: a query that may see no key gets output 0, weights 0, and gradient 0."""
    rng = np.random.default_rng(11)
    q, k, v = random_qkv(rng, lead=(2,), T_q=3, T_k=4, D=3)
    mask = np.ones((2, 3, 4), dtype=bool)
    mask[0, 1] = False  # example 0, query 1 sees nothing
    out = attention(q, k, v, mask=mask)
    out.backward(rng.standard_normal(out.shape))
    assert np.all(np.isfinite(out.numpy()))
    np.testing.assert_array_equal(out.numpy()[0, 1], 0.0)
    assert np.all(out.numpy()[0, 0] != 0)
    for t in (q, k, v):
        assert np.all(np.isfinite(t.grad.numpy()))
    np.testing.assert_array_equal(q.grad.numpy()[0, 1], 0.0)
    if attention is F.scaled_dot_product_attention:
        _, weights = attention(q, k, v, mask=mask, return_weights=True)
        np.testing.assert_array_equal(weights.numpy()[0, 1], 0.0)


def test_mask_as_bool_tensor_equals_mask_as_array():
    rng = np.random.default_rng(12)
    q, k, v = (tl.tensor(rng.standard_normal((2, 4, 3))) for _ in range(3))
    mask = rng.random((4, 4)) > 0.3
    a = F.scaled_dot_product_attention(q, k, v, mask=mask).numpy()
    b = F.scaled_dot_product_attention(q, k, v, mask=tl.tensor(mask)).numpy()
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------------
# Dropout, returned weights, dtypes, devices
# --------------------------------------------------------------------------------------------------


def test_dropout_is_seeded_and_scaled():
    rng = np.random.default_rng(13)
    q, k, v = (tl.tensor(rng.standard_normal((4, 2, 16, 8))) for _ in range(3))
    plain = F.scaled_dot_product_attention(q, k, v).numpy()
    a = F.scaled_dot_product_attention(
        q, k, v, dropout_p=0.25, rng=np.random.default_rng(1)
    ).numpy()
    b = F.scaled_dot_product_attention(
        q, k, v, dropout_p=0.25, rng=np.random.default_rng(1)
    ).numpy()
    c = F.scaled_dot_product_attention(
        q, k, v, dropout_p=0.25, rng=np.random.default_rng(2)
    ).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a, plain)
    zero = F.scaled_dot_product_attention(
        q, k, v, dropout_p=0.0, rng=np.random.default_rng(1)
    ).numpy()
    np.testing.assert_array_equal(zero, plain)
    # E[P~] = P: the average over many masks approaches the plain output
    draws = [
        F.scaled_dot_product_attention(
            q, k, v, dropout_p=0.25, rng=np.random.default_rng(s)
        ).numpy()
        for s in range(200)
    ]
    mean = np.mean(draws, axis=0)
    assert np.abs(mean - plain).mean() < 0.05 * np.abs(plain).mean() + 0.01


def test_return_weights_is_a_plain_tensor():
    rng = np.random.default_rng(14)
    q, k, v = random_qkv(rng, T_q=3, T_k=5)
    out, weights = F.scaled_dot_product_attention(q, k, v, return_weights=True)
    _, expected = reference_forward(q.numpy(), k.numpy(), v.numpy())
    assert (
        isinstance(weights, tl.Tensor)
        and not weights.requires_grad
        and weights.shape == (2, 3, 3, 5)
    )
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-13)
    weights.data[...] = 0
    out.backward(np.ones(out.shape))
    q2, k2, v2 = (variable(t.numpy()) for t in (q, k, v))
    F.scaled_dot_product_attention(q2, k2, v2).backward(np.ones(out.shape))
    np.testing.assert_array_equal(q.grad.numpy(), q2.grad.numpy())


def test_float32_stays_float32():
    rng = np.random.default_rng(15)
    arrays = [rng.standard_normal((2, 2, 6, 4)) for _ in range(3)]
    q, k, v = (tl.tensor(a.astype(np.float32), requires_grad=True) for a in arrays)
    out = F.scaled_dot_product_attention(
        q, k, v, is_causal=True, dropout_p=0.1, rng=np.random.default_rng(0)
    )
    out.backward(np.ones(out.shape, dtype=np.float32))
    assert out.dtype == np.float32
    assert all(t.grad.dtype == np.float32 for t in (q, k, v))
    out64 = F.scaled_dot_product_attention(
        *(tl.tensor(a) for a in arrays), is_causal=True, dropout_p=0.1, rng=np.random.default_rng(0)
    )
    np.testing.assert_allclose(out.numpy(), out64.numpy(), rtol=1e-5, atol=1e-6)


def test_on_device(device):
    rng = np.random.default_rng(16)
    arrays = [rng.standard_normal((2, 3, 5, 4)) for _ in range(3)]
    mask = rng.random((2, 1, 1, 5)) > 0.3
    mask[..., 0] = True
    q, k, v = (variable(a, device) for a in arrays)
    out = F.scaled_dot_product_attention(q, k, v, mask=mask, is_causal=True)
    g = rng.standard_normal(out.shape)
    out.backward(tl.tensor(g, device=device))
    assert out.device == device and q.grad.device == device
    allowed = mask & causal_pattern(5, 5)
    expected, P = reference_forward(*arrays, allowed)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)
    for tensor, formula in zip((q, k, v), reference_backward(*arrays, P, g)):
        np.testing.assert_allclose(tensor.grad.numpy(), formula, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# Errors that teach
# --------------------------------------------------------------------------------------------------


def test_errors_name_the_shapes():
    rng = np.random.default_rng(17)
    q = tl.tensor(rng.standard_normal((2, 4, 3, 16)))
    k = tl.tensor(rng.standard_normal((2, 4, 5, 32)))
    v = tl.tensor(rng.standard_normal((2, 4, 5, 16)))
    with pytest.raises(ValueError, match=r"q and k head widths differ: 16 vs 32"):
        F.scaled_dot_product_attention(q, k, v)
    with pytest.raises(ValueError, match=r"k and v sequence lengths differ: 3 vs 6"):
        F.scaled_dot_product_attention(q, q, tl.tensor(rng.standard_normal((2, 4, 6, 16))))
    with pytest.raises(ValueError, match=r"expects q of shape \(\.\.\., T, D\).*got \(16,\)"):
        F.scaled_dot_product_attention(tl.tensor(np.ones(16)), v, v)
    with pytest.raises(
        ValueError,
        match=r"mask of shape \(2, 5\) does not broadcast to the attention scores "
        r"\(B, H, T_q, T_k\) = \(2, 4, 3, 5\)",
    ):
        F.scaled_dot_product_attention(q, v, v, mask=np.ones((2, 5), dtype=bool))
    with pytest.raises(TypeError, match=r"mask must be boolean.*got dtype float64"):
        F.scaled_dot_product_attention(q, v, v, mask=np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\), got 1"):
        F.scaled_dot_product_attention(q, v, v, dropout_p=1)
    with pytest.raises(TypeError, match=r"share one dtype, got float32, float64, float64"):
        F.scaled_dot_product_attention(q.astype(np.float32), v, v)
    with pytest.raises(ValueError, match=r"leading \(B, H\) axes .* do not broadcast"):
        F.scaled_dot_product_attention(
            q, tl.tensor(np.ones((3, 4, 5, 16))), tl.tensor(np.ones((3, 4, 5, 16)))
        )
    with pytest.raises(TypeError, match=r"expects Tensors for q, k, v; k is a ndarray"):
        F.scaled_dot_product_attention(q, np.ones((2, 4, 5, 16)), v)
