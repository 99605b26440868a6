"""Chapter 08: LayerNorm, GELU, the feed-forward network and the Transformer block.

Three layers of evidence: float64 gradient checks (random cotangents) of every op and layer;
hypothesis shapes for the fused ops; and the chapter's closed forms (the LayerNorm Jacobian and
backward, eq. 8.6-8.7; GELU's derivative, eq. 8.11; the block equations 8.14-8.15; the parameter
count, eq. 8.16) computed directly in NumPy and compared with autograd and with finite differences.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyllm as tl
import tinyllm.nn.functional as F
from tinyllm import nn

pytestmark = pytest.mark.ch08

EPS = 1e-5


def variable(values, dtype=np.float64, device: str = "cpu") -> tl.Tensor:
    return tl.tensor(np.asarray(values, dtype=dtype), requires_grad=True, device=device)


def numeric_gradient(f, x: np.ndarray, v: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar <v, f(x)> with respect to every entry of x (eq. 1.9)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + eps
        plus = np.sum(v * f(x))
        x[i] = saved - eps
        minus = np.sum(v * f(x))
        x[i] = saved
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def numpy_layer_norm(x: np.ndarray, gamma=None, beta=None, eps: float = EPS) -> np.ndarray:
    """The definition (eq. 8.1-8.4) as a NumPy one-liner: biased variance, eps inside the square
    root."""
    y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    return y * (1 if gamma is None else gamma) + (0 if beta is None else beta)


def numpy_gelu(x: np.ndarray) -> np.ndarray:
    """x Phi(x) with the erf of Python's math module (exact to double precision)."""
    return np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.ravel()]).reshape(
        x.shape
    )


# ==================================================================================================
# LayerNorm
# ==================================================================================================

AFFINE = [(True, True), (True, False), (False, True), (False, False)]


@pytest.mark.parametrize("with_weight, with_bias", AFFINE)
def test_layer_norm_gradcheck(with_weight, with_bias):
    rng = np.random.default_rng(1)
    x = variable(rng.standard_normal((2, 3, 5)) * 2 + 0.5)
    weight = variable(rng.standard_normal(5)) if with_weight else None
    bias = variable(rng.standard_normal(5)) if with_bias else None
    params = [p for p in (weight, bias) if p is not None]
    assert tl.gradcheck(lambda x, *_: F.layer_norm(x, weight, bias), x, *params)


@given(
    leading=st.lists(st.integers(1, 3), min_size=0, max_size=3),
    width=st.integers(1, 7),
    affine=st.sampled_from(AFFINE),
    seed=st.integers(0, 2**16),
)
def test_layer_norm_gradcheck_hypothesis_shapes(leading, width, affine, seed):
    rng = np.random.default_rng(seed)
    x = variable(rng.standard_normal((*leading, width)))
    weight = variable(rng.standard_normal(width)) if affine[0] else None
    bias = variable(rng.standard_normal(width)) if affine[1] else None
    params = [p for p in (weight, bias) if p is not None]
    assert tl.gradcheck(lambda x, *_: F.layer_norm(x, weight, bias), x, *params, seed=seed)
    np.testing.assert_allclose(
        F.layer_norm(x, weight, bias).numpy(),
        numpy_layer_norm(
            x.numpy(),
            None if weight is None else weight.numpy(),
            None if bias is None else bias.numpy(),
        ),
        atol=1e-12,
    )


@pytest.mark.parametrize("with_weight, with_bias", AFFINE)
def test_layer_norm_fused_equals_composed(with_weight, with_bias, device):
    rng = np.random.default_rng(2)
    values, g = rng.standard_normal((4, 3, 6)) * 3 - 1, rng.standard_normal((4, 3, 6))
    results = []
    for fn in (F.layer_norm, F.layer_norm_composed):
        x = variable(values, device=device)
        weight = variable(np.linspace(-1.5, 2.0, 6), device=device) if with_weight else None
        bias = variable(np.linspace(0.3, -0.7, 6), device=device) if with_bias else None
        y = fn(x, weight, bias)
        y.backward(tl.tensor(g, device=device))
        results.append(
            [y.numpy(), x.grad.numpy()] + [p.grad.numpy() for p in (weight, bias) if p is not None]
        )
    fused, composed = results
    for a, b in zip(fused, composed):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_layer_norm_backward_closed_form_vs_autograd_vs_finite_differences():
    """dx = (1/sigma_hat)(g_hat - mean(g_hat) - x_hat mean(g_hat x_hat)), g_hat = g gamma (eq. 8.7);
    eq. 8.5."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 7)) * 1.7 + 2.0
    gamma, beta = rng.standard_normal(7), rng.standard_normal(7)
    g = rng.standard_normal((3, 7))

    sigma_hat = np.sqrt(x.var(-1, keepdims=True) + EPS)
    x_hat = (x - x.mean(-1, keepdims=True)) / sigma_hat
    g_hat = g * gamma
    dx = (
        g_hat - g_hat.mean(-1, keepdims=True) - x_hat * (g_hat * x_hat).mean(-1, keepdims=True)
    ) / sigma_hat
    dgamma, dbeta = (g * x_hat).sum(0), g.sum(0)

    tx, tgamma, tbeta = variable(x), variable(gamma), variable(beta)
    F.layer_norm(tx, tgamma, tbeta).backward(g)
    np.testing.assert_allclose(tx.grad.numpy(), dx, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(tgamma.grad.numpy(), dgamma, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(tbeta.grad.numpy(), dbeta, rtol=1e-12, atol=1e-13)

    numeric = numeric_gradient(lambda x_: numpy_layer_norm(x_, gamma, beta), x.copy(), g)
    np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-8)
    numeric_gamma = numeric_gradient(lambda gm: numpy_layer_norm(x, gm, beta), gamma.copy(), g)
    np.testing.assert_allclose(dgamma, numeric_gamma, rtol=1e-6, atol=1e-8)


def test_layer_norm_jacobian_closed_form():
    """d x_hat_j / d x_i = (1/sigma_hat)(delta_ij - 1/C - x_hat_i x_hat_j / C) (eq. 8.6), row by
    row."""
    rng = np.random.default_rng(4)
    width = 5
    x = rng.standard_normal(width) * 0.8 - 0.3
    sigma_hat = np.sqrt(x.var() + EPS)
    x_hat = (x - x.mean()) / sigma_hat
    jacobian = (
        np.eye(width) - 1 / width - np.outer(x_hat, x_hat) / width
    ) / sigma_hat  # [i, j], symmetric
    for j in range(width):
        tx = variable(x)
        F.layer_norm(tx).backward(np.eye(width)[j])  # the gradient of x_hat_j
        np.testing.assert_allclose(tx.grad.numpy(), jacobian[:, j], rtol=1e-12, atol=1e-13)
    # The Jacobian kills the directions LayerNorm ignores: a shift of all entries (and, up to eps, a
    # scaling).
    np.testing.assert_allclose(jacobian @ np.ones(width), 0, atol=1e-13)
    assert np.abs(jacobian @ x_hat).max() < 1e-4 * np.abs(x_hat).max()


def test_layer_norm_rows_have_mean_zero_and_unit_variance():
    rng = np.random.default_rng(5)
    x = tl.tensor((rng.standard_normal((64, 256)) * 5 + 3).astype(np.float32))
    y = nn.LayerNorm(256)(x).numpy()
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-6)
    np.testing.assert_allclose(
        y.var(-1), 1, atol=1e-4
    )  # exactly sigma^2 / (sigma^2 + eps) ~ 1 - 4e-7


def test_layer_norm_matches_the_definition_with_biased_variance_and_eps():
    # eqs. 8.1-8.4: the mean, the biased variance, eps inside the root, gamma and beta
    """On small-variance rows the choices show: eps = 1e-5 inside the root, the variance divided by
    C."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 8)) * 3e-3  # sigma^2 ~ 1e-5, comparable to eps
    gamma, beta = rng.standard_normal(8), rng.standard_normal(8)
    y = F.layer_norm(tl.tensor(x), tl.tensor(gamma), tl.tensor(beta)).numpy()
    expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(
        x.var(-1, keepdims=True) + 1e-5
    ) * gamma + beta
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    centered = x - x.mean(-1, keepdims=True)
    unbiased = centered / np.sqrt(x.var(-1, ddof=1, keepdims=True) + 1e-5) * gamma + beta
    no_eps = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True)) * gamma + beta
    assert np.abs(y - unbiased).max() > 1e-2 and np.abs(y - no_eps).max() > 1e-2
    y_eps = F.layer_norm(tl.tensor(x), eps=1e-3).numpy()
    np.testing.assert_allclose(y_eps, numpy_layer_norm(x, eps=1e-3), rtol=1e-12, atol=1e-12)


def test_layer_norm_float32_stays_float32_and_saves_only_x_hat_and_rstd():
    rng = np.random.default_rng(7)
    x = variable(rng.standard_normal((2, 3, 16)), dtype=np.float32)
    layer = nn.LayerNorm(16)
    y = layer(x)
    saved = {name: value for name, value in vars(y._fn).items() if hasattr(value, "shape")}
    assert set(saved) == {"x_hat", "rstd", "weight"} and saved["weight"] is layer.weight.data
    assert saved["x_hat"].shape == (2, 3, 16) and saved["rstd"].shape == (2, 3, 1)
    np.testing.assert_allclose(
        saved["x_hat"], numpy_layer_norm(x.numpy().astype(np.float64)), atol=1e-5
    )
    y.backward(rng.standard_normal((2, 3, 16)).astype(np.float32))
    assert y.dtype == x.grad.dtype == layer.weight.grad.dtype == layer.bias.grad.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), numpy_layer_norm(x.numpy().astype(np.float64)), atol=1e-5)


def test_layer_norm_module():
    layer = nn.LayerNorm(6, eps=1e-6)
    np.testing.assert_array_equal(layer.weight.numpy(), np.ones(6, np.float32))
    np.testing.assert_array_equal(layer.bias.numpy(), np.zeros(6, np.float32))
    assert layer.num_parameters() == 12 and layer.weight.dtype == np.float32
    no_bias = nn.LayerNorm(6, bias=False, dtype=np.float64)
    assert (
        no_bias.bias is None
        and no_bias.num_parameters() == 6
        and no_bias.weight.dtype == np.float64
    )
    assert list(no_bias.state_dict()) == ["weight"]
    assert repr(layer) == "LayerNorm(d_model=6, eps=1e-06, bias=True)"
    x = tl.tensor(np.random.default_rng(8).standard_normal((3, 6)))
    np.testing.assert_allclose(layer(x).numpy(), numpy_layer_norm(x.numpy(), eps=1e-6), atol=1e-6)


def test_layer_norm_errors():
    x = tl.tensor(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"weight expected shape \(C,\) = \(5,\).*got \(4,\)"):
        F.layer_norm(x, tl.tensor(np.ones(4)))
    with pytest.raises(ValueError, match=r"bias expected shape \(C,\) = \(5,\).*got \(1, 5\)"):
        F.layer_norm(x, None, tl.tensor(np.ones((1, 5))))
    with pytest.raises(TypeError, match="floating-point inputs, got dtype int64"):
        F.layer_norm(tl.tensor(np.arange(6).reshape(2, 3)))
    with pytest.raises(ValueError, match="at least one axis, got a scalar"):
        F.layer_norm(tl.tensor(1.0))
    with pytest.raises(
        ValueError,
        match=r"LayerNorm\(d_model=4\) expected inputs \(\.\.\., C\) with C = 4, "
        r"got \(2, 5\)",
    ):
        nn.LayerNorm(4)(x)
    with pytest.raises(ValueError, match="positive width C, got 0"):
        nn.LayerNorm(0)


# ==================================================================================================
# GELU and ReLU
# ==================================================================================================


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_gradcheck(approximate):
    x = variable(np.random.default_rng(9).standard_normal((3, 7)) * 3)
    assert tl.gradcheck(lambda x: F.gelu(x, approximate), x)


@given(
    shape=st.lists(st.integers(1, 4), min_size=0, max_size=3),
    approximate=st.sampled_from(["none", "tanh"]),
    scale=st.floats(0.1, 6.0),
    seed=st.integers(0, 2**16),
)
def test_gelu_gradcheck_hypothesis_shapes(shape, approximate, scale, seed):
    x = variable(np.random.default_rng(seed).standard_normal(shape) * scale)
    assert tl.gradcheck(lambda x: F.gelu(x, approximate), x, seed=seed)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_fused_equals_composed(approximate, device):
    rng = np.random.default_rng(10)
    values, g = rng.standard_normal((5, 8)) * 4, rng.standard_normal((5, 8))
    outs = []
    for fn in (F.gelu, F.gelu_composed):
        x = variable(values, device=device)
        y = fn(x, approximate)
        y.backward(tl.tensor(g, device=device))
        outs.append((y.numpy(), x.grad.numpy()))
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(outs[0][1], outs[1][1], rtol=1e-13, atol=1e-15)


def test_gelu_exact_values_and_derivative_closed_form():
    """GELU(x) = x Phi(x) (eq. 8.10) and GELU'(x) = Phi(x) + x phi(x) (eq. 8.11), against
    math.erf."""
    x = np.linspace(-6, 6, 241)
    y = F.gelu(tl.tensor(x)).numpy()
    # float64: Cody's erfc, relative error ~1e-15 (tinyllm/special.py)
    np.testing.assert_allclose(y, numpy_gelu(x), rtol=1e-14, atol=1e-15)
    assert F.gelu(tl.tensor(np.array([0.0]))).item() == 0.0
    np.testing.assert_allclose(
        F.gelu(tl.tensor(np.array([1.0, -1.0]))).numpy(),
        [0.8413447460685429, -0.15865525393145707],
        rtol=1e-15,
    )

    phi = np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    cdf = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    tx = variable(x)
    F.gelu(tx).backward(np.ones_like(x))
    np.testing.assert_allclose(tx.grad.numpy(), cdf + x * phi, rtol=0, atol=1e-15)
    numeric = (
        numpy_gelu(x + 1e-6) - numpy_gelu(x - 1e-6)
    ) / 2e-6  # elementwise central differences
    np.testing.assert_allclose(cdf + x * phi, numeric, rtol=0, atol=1e-8)


def test_gelu_tanh_derivative_closed_form():
    """eq. 8.13 in NumPy vs autograd vs finite differences of eq. 8.12."""
    x = np.linspace(-5, 5, 101)
    c = math.sqrt(2 / math.pi)

    def gelu_tanh(v):
        return 0.5 * v * (1 + np.tanh(c * (v + 0.044715 * v**3)))

    th = np.tanh(c * (x + 0.044715 * x**3))
    derivative = 0.5 * (1 + th) + 0.5 * x * (1 - th**2) * c * (1 + 3 * 0.044715 * x**2)
    tx = variable(x)
    y = F.gelu(tx, approximate="tanh")
    np.testing.assert_allclose(y.numpy(), gelu_tanh(x), rtol=1e-14, atol=1e-15)
    y.backward(np.ones_like(x))
    np.testing.assert_allclose(tx.grad.numpy(), derivative, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(
        derivative, (gelu_tanh(x + 1e-6) - gelu_tanh(x - 1e-6)) / 2e-6, atol=1e-8
    )


def test_gelu_exact_vs_tanh_approximation():
    """The tanh form is within 5e-4 of the exact GELU; the largest gap, 4.73e-4, sits at |x| ~
    2.70."""
    x = np.linspace(-8, 8, 160_001)
    gap = np.abs(F.gelu(tl.tensor(x)).numpy() - F.gelu(tl.tensor(x), approximate="tanh").numpy())
    assert 4.6e-4 < gap.max() < 4.8e-4 < 1e-3
    assert 2.6 < abs(x[gap.argmax()]) < 2.8
    assert gap[np.abs(x) > 6].max() < 1e-6  # both are x for large x and 0 for very negative x


def test_gelu_float32_stays_float32():
    x = variable(np.linspace(-3, 3, 12).reshape(3, 4), dtype=np.float32)
    for approximate in ("none", "tanh"):
        x.grad = None
        y = F.gelu(x, approximate)
        y.backward(np.ones((3, 4), np.float32))
        assert y.dtype == x.grad.dtype == np.float32
        in_float64 = F.gelu(tl.tensor(x.numpy().astype(np.float64)), approximate).numpy()
        np.testing.assert_allclose(y.numpy(), in_float64, atol=1e-6)


def test_relu_and_activation_modules():
    x = variable([-2.0, -0.5, 0.0, 0.5, 3.0])
    y = F.relu(x)
    np.testing.assert_array_equal(y.numpy(), [0, 0, 0, 0.5, 3.0])
    y.backward(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0, 0, 4.0, 5.0])
    np.testing.assert_array_equal(nn.ReLU()(x).numpy(), y.numpy())
    np.testing.assert_array_equal(nn.GELU()(x).numpy(), F.gelu(x).numpy())
    np.testing.assert_array_equal(nn.GELU("tanh")(x).numpy(), F.gelu(x, approximate="tanh").numpy())
    assert repr(nn.GELU("tanh")) == "GELU(approximate='tanh')" and nn.GELU().num_parameters() == 0


def test_gelu_errors():
    with pytest.raises(ValueError, match="'none' \\(exact erf form\\) or 'tanh'.*got 'erf'"):
        F.gelu(tl.tensor([1.0]), approximate="erf")
    with pytest.raises(ValueError, match="got 'fast'"):
        nn.GELU("fast")


# ==================================================================================================
# The feed-forward network
# ==================================================================================================


def float64_ff(activation="gelu", dropout=0.0, seed=0) -> nn.FeedForward:
    return nn.FeedForward(
        4,
        6,
        activation=activation,
        dropout=dropout,
        rng=np.random.default_rng(seed),
        dtype=np.float64,
    )


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "relu"])
def test_feed_forward_gradcheck(activation):
    ff = float64_ff(activation)
    x = variable(np.random.default_rng(11).standard_normal((2, 3, 4)))
    assert tl.gradcheck(
        lambda x, *_: ff(x), x, ff.fc1.weight, ff.fc1.bias, ff.fc2.weight, ff.fc2.bias
    )


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "relu"])
def test_feed_forward_is_eq_8_13(activation):
    """FF(x) = act(x W1 + b1) W2 + b2 (eq. 8.9), token by token."""
    ff = float64_ff(activation)
    x = np.random.default_rng(12).standard_normal((2, 3, 4))
    h = x @ ff.fc1.weight.numpy() + ff.fc1.bias.numpy()
    c = math.sqrt(2 / math.pi)
    act = {
        "gelu": numpy_gelu,
        "relu": lambda h: np.maximum(h, 0),
        "gelu_tanh": lambda h: 0.5 * h * (1 + np.tanh(c * (h + 0.044715 * h**3))),
    }[activation]
    expected = act(h) @ ff.fc2.weight.numpy() + ff.fc2.bias.numpy()
    np.testing.assert_allclose(ff(tl.tensor(x)).numpy(), expected, rtol=1e-6, atol=1e-7)
    assert list(ff.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert ff.fc1.weight.shape == (4, 6) and ff.fc2.weight.shape == (6, 4)


def test_feed_forward_acts_on_each_token_alone():
    ff = float64_ff()
    x = np.random.default_rng(13).standard_normal((1, 5, 4))
    y = ff(tl.tensor(x)).numpy()
    x[0, 2] += 1.0
    changed = np.abs(ff(tl.tensor(x)).numpy() - y).max(axis=-1)[0]  # (T,)
    assert changed[2] > 1e-3 and np.all(np.delete(changed, 2) == 0)


def test_feed_forward_dropout_is_seeded_and_off_in_eval():
    x = tl.tensor(np.random.default_rng(14).standard_normal((3, 4, 4)))
    a, b, plain = (
        float64_ff(dropout=0.5, seed=1),
        float64_ff(dropout=0.5, seed=1),
        float64_ff(seed=1),
    )
    ya, yb = a(x).numpy(), b(x).numpy()
    np.testing.assert_array_equal(ya, yb)  # same seed, same masks
    expected = plain(x).numpy()
    dropped = ya == 0
    assert 0.3 < dropped.mean() < 0.7
    # kept entries scaled 1/(1-p)
    np.testing.assert_allclose(ya[~dropped], 2 * expected[~dropped], rtol=1e-12)
    np.testing.assert_array_equal(a.eval()(x).numpy(), expected)


def test_feed_forward_errors():
    with pytest.raises(
        ValueError,
        match=r"unknown activation 'swish'; expected one of \('gelu', 'gelu_tanh', 'relu'\)",
    ):
        nn.FeedForward(4, 8, activation="swish")
    with pytest.raises(
        ValueError,
        match=r"FeedForward expected inputs \(\.\.\., C\) with C = d_model = 4, got \(2, 3\)",
    ):
        nn.FeedForward(4, 8)(tl.zeros(2, 3))
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\), got 1.5"):
        nn.FeedForward(4, 8, dropout=1.5)


# ==================================================================================================
# The Transformer block
# ==================================================================================================

C, H, FF = 4, 2, 6  # a tiny block keeps the finite differences fast


def float64_block(norm_first=True, seed=0, **kwargs) -> nn.TransformerBlock:
    """A tiny float64 block whose LayerNorms have random scales and shifts (not the special 1 and
    0)."""
    rng = np.random.default_rng(seed)
    block = nn.TransformerBlock(
        C, H, d_ff=FF, norm_first=norm_first, rng=rng, dtype=np.float64, **kwargs
    )
    for name, p in block.named_parameters():
        if name.startswith("ln"):
            p.data = p.data + 0.3 * rng.standard_normal(p.shape)
    return block


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-LN", "post-LN"])
def test_block_gradcheck(norm_first):
    block = float64_block(norm_first)
    x = variable(np.random.default_rng(15).standard_normal((2, 3, C)))
    checked = [
        block.ln1.weight,
        block.ln1.bias,
        block.attn.q_proj.weight,
        block.attn.out_proj.bias,
        block.ln2.weight,
        block.ff.fc1.weight,
        block.ff.fc2.bias,
    ]
    assert tl.gradcheck(lambda x, *_: block(x, is_causal=True), x, *checked)


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-LN", "post-LN"])
def test_decoder_block_gradcheck(norm_first):
    block = float64_block(norm_first, cross_attention=True)
    rng = np.random.default_rng(16)
    x, context = variable(rng.standard_normal((2, 3, C))), variable(rng.standard_normal((2, 4, C)))
    context_mask = np.array([[True, True, True, True], [True, True, False, False]])
    assert tl.gradcheck(
        lambda x, c, *_: block(x, is_causal=True, context=c, context_mask=context_mask),
        x,
        context,
        block.ln_cross.weight,
        block.cross_attn.k_proj.weight,
    )


def test_block_equations_pre_and_post_ln():
    """pre-LN: x + Attn(LN1 x), then + FF(LN2 .) (eq. 8.14); post-LN: LN1(x + Attn x), LN2(. + FF .)
    (eq. 8.15)."""
    x = tl.tensor(np.random.default_rng(17).standard_normal((2, 5, C)) * 3 + 1)
    pre = float64_block(norm_first=True)
    h = x + pre.attn(pre.ln1(x), is_causal=True)
    np.testing.assert_allclose(
        pre(x, is_causal=True).numpy(), (h + pre.ff(pre.ln2(h))).numpy(), atol=1e-13
    )
    post = float64_block(norm_first=False)
    h = post.ln1(x + post.attn(x, is_causal=True))
    np.testing.assert_allclose(
        post(x, is_causal=True).numpy(), post.ln2(h + post.ff(h)).numpy(), atol=1e-13
    )


def test_post_ln_output_is_normalised_and_pre_ln_output_is_not():
    """With gamma = 1, beta = 0 (the initial LayerNorm) a post-LN block ends in a LayerNorm: rows
    have mean 0 and variance 1. A pre-LN block ends in a residual addition, so its rows keep the
    input's scale."""
    x = tl.tensor(np.random.default_rng(18).standard_normal((2, 6, 16)) * 5 + 2)
    rng = np.random.default_rng(0)
    post = nn.TransformerBlock(16, 4, norm_first=False, rng=rng, dtype=np.float64)
    y = post(x).numpy()
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(
        y.var(-1), 1, atol=2e-5
    )  # sigma^2 / (sigma^2 + eps) with sigma^2 ~ 1
    pre = nn.TransformerBlock(16, 4, norm_first=True, rng=rng, dtype=np.float64)
    pre_var, in_var = pre(x).numpy().var(-1), x.numpy().var(-1)
    assert pre_var.min() > 3 and np.all(
        np.abs(pre_var / in_var - 1) < 0.5
    )  # the input's scale, not 1


def test_block_with_silent_sublayers_is_the_residual_highway():
    """If Attn and FF output 0 (out_proj and fc2 zeroed), a pre-LN block is the identity with
    Jacobian I (eq. 8.8), and a post-LN block is LN2(LN1(x)) = LayerNorm(x)."""
    rng = np.random.default_rng(19)
    x_values = rng.standard_normal((2, 3, C)) * 2
    for norm_first in (True, False):
        block = nn.TransformerBlock(C, H, norm_first=norm_first, rng=rng, dtype=np.float64)
        for p in (
            block.attn.out_proj.weight,
            block.attn.out_proj.bias,
            block.ff.fc2.weight,
            block.ff.fc2.bias,
        ):
            p.data[...] = 0
        x = variable(x_values)
        y = block(x, is_causal=True)
        g = rng.standard_normal(y.shape)
        y.backward(g)
        if norm_first:
            np.testing.assert_array_equal(y.numpy(), x_values)
            np.testing.assert_array_equal(x.grad.numpy(), g)
        else:
            once = numpy_layer_norm(x_values)
            np.testing.assert_allclose(y.numpy(), numpy_layer_norm(once), atol=1e-12)
            np.testing.assert_allclose(y.numpy(), once, atol=1e-5)


def test_causal_block_stack_never_looks_ahead():
    rng = np.random.default_rng(20)
    blocks = [nn.TransformerBlock(8, 2, rng=rng, dtype=np.float64) for _ in range(3)]

    def run(x):
        for block in blocks:
            x = block(x, is_causal=True)
        return x.numpy()

    x = rng.standard_normal((2, 6, 8))
    y = run(tl.tensor(x))
    for t in range(6):
        changed = x.copy()
        changed[:, t] += rng.standard_normal(8)  # not a constant shift: LayerNorm would ignore that
        delta = np.abs(run(tl.tensor(changed)) - y).max(axis=(0, 2))  # (T,)
        assert np.all(delta[:t] == 0), f"changing token {t} changed earlier outputs {delta[:t]}"
        assert np.all(delta[t:] > 1e-6)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_encoder_padding_mask(norm_first):
    """Changing a padded token changes no output at a real position (with the mask), and does
    without it."""
    rng = np.random.default_rng(21)
    encoder = nn.TransformerEncoder(2, 8, 2, norm_first=norm_first, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 5, 8))
    mask = np.array([[True] * 5, [True, True, True, False, False]])
    changed = x.copy()
    changed[1, 3:] = rng.standard_normal((2, 8)) * 4
    with_mask = [encoder(tl.tensor(v), mask=mask).numpy() for v in (x, changed)]
    np.testing.assert_allclose(with_mask[0][0], with_mask[1][0], rtol=0, atol=1e-13)
    np.testing.assert_allclose(with_mask[0][1, :3], with_mask[1][1, :3], rtol=0, atol=1e-13)
    assert np.abs(with_mask[0][1, 3:] - with_mask[1][1, 3:]).min() > 1e-3
    without = [encoder(tl.tensor(v)).numpy() for v in (x, changed)]
    assert (
        np.abs(without[0][1, :3] - without[1][1, :3]).max() > 1e-3
    )  # bidirectional: real tokens look right


def test_encoder_gradcheck_and_structure():
    rng = np.random.default_rng(22)
    encoder = nn.TransformerEncoder(2, C, H, d_ff=FF, rng=rng, dtype=np.float64)
    assert len(encoder.layers) == 2 and encoder.norm is None and not encoder.layers[0].norm_first
    x = variable(rng.standard_normal((2, 3, C)))
    mask = np.array([[True, True, True], [True, True, False]])
    assert tl.gradcheck(
        lambda x, *_: encoder(x, mask=mask), x, encoder.layers[0].attn.v_proj.weight
    )
    pre = nn.TransformerEncoder(2, C, H, norm_first=True, rng=rng, dtype=np.float64)
    assert isinstance(pre.norm, nn.LayerNorm)  # pre-LN stacks end with a final LayerNorm by default
    y = pre(tl.tensor(x.numpy()))
    h = tl.tensor(x.numpy())
    for layer in pre.layers:
        h = layer(h)
    np.testing.assert_allclose(y.numpy(), pre.norm(h).numpy(), atol=1e-13)
    assert nn.TransformerEncoder(1, C, H, norm_first=True, final_norm=False).norm is None


def test_decoder_gradcheck_causality_and_memory_mask():
    rng = np.random.default_rng(23)
    decoder = nn.TransformerDecoder(2, C, H, d_ff=FF, rng=rng, dtype=np.float64)
    assert all(layer.cross_attn is not None for layer in decoder.layers)
    x, memory = variable(rng.standard_normal((2, 3, C))), variable(rng.standard_normal((2, 4, C)))
    memory_mask = np.array([[True, True, True, True], [True, True, True, False]])
    assert tl.gradcheck(lambda x, m: decoder(x, m, memory_mask), x, memory)

    y = decoder(x, memory, memory_mask).numpy()
    changed = memory.numpy().copy()
    changed[1, 3] += 5.0  # a padded memory position
    np.testing.assert_allclose(
        decoder(x, tl.tensor(changed), memory_mask).numpy(), y, rtol=0, atol=1e-13
    )
    changed[1, 0] += 1.0  # a real one
    assert np.abs(decoder(x, tl.tensor(changed), memory_mask).numpy()[1] - y[1]).min() > 1e-6
    later = x.numpy().copy()
    later[:, 2] += 1.0  # the last target token: earlier positions must not see it
    np.testing.assert_array_equal(
        decoder(tl.tensor(later), memory, memory_mask).numpy()[:, :2], y[:, :2]
    )


def test_encoder_and_decoder_are_one_stack():
    """TransformerEncoder / TransformerDecoder are TransformerStack's two settings, with its
    names."""
    rng = np.random.default_rng(25)
    encoder, decoder = nn.TransformerEncoder(2, C, H), nn.TransformerDecoder(2, C, H)
    assert isinstance(encoder, nn.TransformerStack) and isinstance(decoder, nn.TransformerStack)
    assert (encoder.cross_attention, encoder.is_causal) == (False, False)
    assert (decoder.cross_attention, decoder.is_causal) == (True, True)
    assert list(decoder.state_dict())[:2] == ["layers.0.ln1.weight", "layers.0.ln1.bias"]
    assert "layers.1.cross_attn.q_proj.weight" in decoder.state_dict()
    # a causal stack without cross-attention (GPT's blocks) equals its blocks called with is_causal
    stack = nn.TransformerStack(2, C, H, norm_first=True, is_causal=True, rng=rng, dtype=np.float64)
    x = tl.tensor(rng.standard_normal((2, 4, C)))
    h = x
    for block in stack.layers:
        h = block(h, is_causal=True)
    np.testing.assert_allclose(stack(x).numpy(), stack.norm(h).numpy(), rtol=0, atol=1e-13)
    # the decoder's self-attention takes a target mask too; it combines with causality by "and"
    decoder = nn.TransformerDecoder(1, C, H, rng=rng, dtype=np.float64)
    memory = tl.tensor(rng.standard_normal((2, 3, C)))
    everything = np.ones((2, 4), dtype=bool)
    np.testing.assert_array_equal(
        decoder(x, memory, mask=everything).numpy(), decoder(x, memory).numpy()
    )


def test_block_kv_cache_matches_the_full_causal_pass():
    """Feeding tokens one at a time with a KV cache gives the outputs of one causal pass over all of
    them."""
    rng = np.random.default_rng(24)
    block = nn.TransformerBlock(8, 2, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 6, 8))
    with tl.no_grad():
        full = block(tl.tensor(x), is_causal=True).numpy()
        cache = nn.KVCache(context_length=6)
        steps = [
            block(tl.tensor(x[:, t : t + 1]), is_causal=True, cache=cache).numpy() for t in range(6)
        ]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-12, atol=1e-12)


def test_block_dropout_is_seeded_and_off_in_eval():
    x = tl.tensor(np.random.default_rng(25).standard_normal((2, 5, 8)))

    def make(p, seed=3):
        return nn.TransformerBlock(
            8, 2, dropout=p, rng=np.random.default_rng(seed), dtype=np.float64
        )

    a, b, plain = (
        make(0.3),
        make(0.3),
        make(0.0),
    )  # the same seed gives the same weights whatever p is
    first = a(x, is_causal=True).numpy()
    np.testing.assert_array_equal(first, b(x, is_causal=True).numpy())  # seeded masks
    assert np.abs(a(x, is_causal=True).numpy() - first).max() > 1e-3  # fresh masks on the next call
    reference = plain(x, is_causal=True).numpy()
    assert np.abs(first - reference).max() > 1e-3
    a.eval()
    assert not a.ff.dropout.training and not a.attn.training
    np.testing.assert_array_equal(a(x, is_causal=True).numpy(), reference)
    tl.manual_seed(7)
    c = nn.TransformerBlock(8, 2, dropout=0.3, dtype=np.float64)
    tl.manual_seed(7)
    d = nn.TransformerBlock(8, 2, dropout=0.3, dtype=np.float64)
    np.testing.assert_array_equal(
        c(x).numpy(), d(x).numpy()
    )  # tl.manual_seed fixes weights and masks


def block_parameters(width: int, d_ff: int, bias: bool = True, cross: bool = False) -> int:
    """eq. 8.16: attention 4(C^2 + C), feed-forward 2 C d_ff + d_ff + C, two LayerNorms 2 * 2C."""
    b = 1 if bias else 0
    attention = 4 * (width * width + b * width)
    feed_forward = 2 * width * d_ff + b * (d_ff + width)
    norms = 2 * (width + b * width)
    extra = attention + width + b * width if cross else 0  # cross-attention and its LayerNorm
    return attention + feed_forward + norms + extra


@pytest.mark.parametrize("width, heads", [(8, 2), (16, 4), (24, 3)])
def test_parameter_count_closed_form(width, heads):
    """Pre- or post-LN with bias and d_ff = 4C: 12 C^2 + 13 C; without bias: 12 C^2 + 2 C (eq.
    8.16)."""
    for norm_first in (True, False):
        block = nn.TransformerBlock(width, heads, norm_first=norm_first)
        assert (
            block.num_parameters()
            == 12 * width**2 + 13 * width
            == block_parameters(width, 4 * width)
        )
    assert (
        nn.TransformerBlock(width, heads, bias=False).num_parameters() == 12 * width**2 + 2 * width
    )
    assert nn.TransformerBlock(width, heads, d_ff=40).num_parameters() == block_parameters(
        width, 40
    )
    decoder_block = nn.TransformerBlock(width, heads, cross_attention=True)
    assert (
        decoder_block.num_parameters()
        == block_parameters(width, 4 * width, cross=True)
        == 16 * width**2 + 19 * width
    )
    encoder = nn.TransformerEncoder(3, width, heads, norm_first=True)
    assert encoder.num_parameters() == 3 * (12 * width**2 + 13 * width) + 2 * width
    assert nn.TransformerDecoder(2, width, heads).num_parameters() == 2 * (
        16 * width**2 + 19 * width
    )


def test_block_module_tree_and_names():
    block = nn.TransformerBlock(8, 2, cross_attention=True)
    names = list(block.state_dict())
    prefixes = [name.split(".")[0] for name in names]
    assert list(dict.fromkeys(prefixes)) == ["ln1", "attn", "ln_cross", "cross_attn", "ln2", "ff"]
    assert names[-4:] == ["ff.fc1.weight", "ff.fc1.bias", "ff.fc2.weight", "ff.fc2.bias"]
    assert "ln1.bias" not in nn.TransformerBlock(8, 2, bias=False).state_dict()
    text = repr(block)
    assert text.startswith("TransformerBlock(d_model=8, num_heads=2, d_ff=32, norm_first=True")
    for part in (
        "(ln1): LayerNorm(d_model=8",
        "(cross_attn): MultiHeadAttention",
        "(fc2): Linear(in_features=32",
    ):
        assert part in text
    encoder = nn.TransformerEncoder(2, 8, 2)
    assert [name for name, _ in encoder.named_children()] == ["layers.0", "layers.1"]
    assert list(encoder.state_dict())[0] == "layers.0.ln1.weight"


def test_block_float32_stays_float32():
    block = nn.TransformerBlock(8, 2, rng=np.random.default_rng(26))
    x = tl.randn(2, 4, 8, requires_grad=True, rng=np.random.default_rng(27))
    y = block(x, is_causal=True)
    y.backward(np.ones(y.shape, np.float32))
    assert y.dtype == x.grad.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in block.parameters())


def test_block_errors():
    block = nn.TransformerBlock(8, 2)
    with pytest.raises(
        ValueError,
        match=r"TransformerBlock expected x \(B, T, C\) "
        r"with C = d_model = 8, got \(2, 3, 4\)",
    ):
        block(tl.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"got \(3, 8\)"):
        block(tl.zeros(3, 8))
    with pytest.raises(
        ValueError, match="has no cross-attention.*build it with cross_attention=True"
    ):
        block(tl.zeros(1, 3, 8), context=tl.zeros(1, 2, 8))
    with pytest.raises(ValueError, match=r"needs context \(B, S, C\), the encoder output"):
        nn.TransformerBlock(8, 2, cross_attention=True)(tl.zeros(1, 3, 8))
    with pytest.raises(ValueError, match="d_model = 10 is not divisible by num_heads = 3"):
        nn.TransformerBlock(10, 3)
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        nn.TransformerBlock(8, 2, activation="tanh")
    with pytest.raises(ValueError, match="TransformerEncoder needs num_layers >= 1, got 0"):
        nn.TransformerEncoder(0, 8, 2)
    with pytest.raises(ValueError, match="TransformerDecoder needs num_layers >= 1, got -1"):
        nn.TransformerDecoder(-1, 8, 2)
