"""Linear and Dropout (tinyllm/nn/layers.py), dropout under tl.manual_seed, the Module call protocol
and the mixed-device error."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyllm as tl
import tinyllm.nn.functional as F
from tinyllm.nn import Dropout, Linear, Module, MultiHeadAttention, TransformerBlock
from tinyllm.ops import Add
from tinyllm.tensor import apply

pytestmark = pytest.mark.ch08


def _x(shape, seed=0):
    return tl.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


# --- Linear
# --------------------------------------------------------------------------------------------


@given(
    leading=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    width_in=st.integers(1, 4),
    width_out=st.integers(1, 4),
    bias=st.booleans(),
    seed=st.integers(0, 100),
)
def test_linear_gradcheck_over_leading_shapes(leading, width_in, width_out, bias, seed):
    layer = Linear(
        width_in, width_out, bias=bias, rng=np.random.default_rng(seed), dtype=np.float64
    )
    x = _x((*leading, width_in), seed)
    params = [layer.weight] + ([layer.bias] if bias else [])
    assert tl.gradcheck(lambda x, *p: layer(x), x, *params)


def test_linear_is_x_times_weight_plus_bias():
    layer = Linear(3, 5, rng=np.random.default_rng(0), dtype=np.float64)
    assert layer.weight.shape == (3, 5) and layer.bias.shape == (5,)  # (in_features, out_features)
    x = np.random.default_rng(1).standard_normal((2, 4, 3))
    expected = x @ layer.weight.numpy() + layer.bias.numpy()
    np.testing.assert_allclose(layer(tl.tensor(x)).numpy(), expected, rtol=1e-12)


def test_linear_closed_form_gradients():
    """dL/dW = x^T G summed over the leading axes, dL/db = sum of G, dL/dx = G W^T (eq. 2.6)."""
    rng = np.random.default_rng(2)
    layer = Linear(3, 4, rng=rng, dtype=np.float64)
    x = _x((2, 5, 3), 3)
    g = rng.standard_normal((2, 5, 4))
    layer(x).backward(g)
    np.testing.assert_allclose(
        layer.weight.grad.numpy(), np.einsum("btc,btd->cd", x.numpy(), g), rtol=1e-12
    )
    np.testing.assert_allclose(layer.bias.grad.numpy(), g.sum(axis=(0, 1)), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), g @ layer.weight.numpy().T, rtol=1e-12)


def test_linear_initialisation_bound_and_no_bias():
    layer = Linear(64, 32, bias=False, rng=np.random.default_rng(0))
    assert layer.bias is None and layer.weight.dtype == np.float32
    assert np.abs(layer.weight.numpy()).max() <= 1 / np.sqrt(64)
    assert np.abs(layer.weight.numpy()).max() > 0.9 / np.sqrt(64)  # uniform over the whole range
    assert repr(layer) == "Linear(in_features=64, out_features=32, bias=False)"


def test_linear_wrong_width_is_a_clear_error():
    layer = Linear(4, 2)
    with pytest.raises(ValueError, match=r"Linear expected inputs \(\.\.\., 4\), got \(3, 5\)"):
        layer(tl.randn(3, 5))


# --- Dropout
# ------------------------------------------------------------------------------------------


def test_dropout_gradcheck_with_a_fixed_mask():
    x = _x((3, 4))
    assert tl.gradcheck(lambda x: F.dropout(x, 0.3, True, np.random.default_rng(5)), x)


def test_dropout_keeps_or_zeroes_and_scales():
    """y_i is 0 or x_i / (1 - p); the kept fraction is about 1 - p, so E[y] = x (chapter 08)."""
    p = 0.25
    x = tl.tensor(np.full((400, 500), 2.0))
    y = F.dropout(x, p, True, np.random.default_rng(0)).numpy()
    assert set(np.unique(y)) == {0.0, 2.0 / (1 - p)}
    assert abs((y != 0).mean() - (1 - p)) < 0.005
    assert abs(y.mean() - 2.0) < 0.02


def test_dropout_off_in_eval_and_at_zero():
    x = tl.randn(4, 4)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0, training=True) is x
    layer = Dropout(0.5, rng=np.random.default_rng(0)).eval()
    assert layer(x) is x


def test_dropout_layer_is_seeded():
    x = tl.ones(8, 8)
    first = Dropout(0.5, rng=np.random.default_rng(7))(x).numpy()
    again = Dropout(0.5, rng=np.random.default_rng(7))(x).numpy()
    other = Dropout(0.5, rng=np.random.default_rng(8))(x).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def _under_seed(seed: int, make):
    """``make()`` right after ``tl.manual_seed(seed)``, as a NumPy array."""
    tl.manual_seed(seed)
    return make().numpy()


def test_dropout_without_rng_follows_manual_seed():
    """nn.Dropout() spawns its generator from the one tl.manual_seed seeds: same seed, same mask."""
    x = tl.ones(16, 16)
    first, again, other = (_under_seed(s, lambda: Dropout(0.5)(x)) for s in (0, 0, 1))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert set(np.unique(first)) == {0.0, 2.0}
    layer = Dropout(0.5)
    assert not np.array_equal(layer(x).numpy(), layer(x).numpy())  # a fresh mask every call
    first, again = (_under_seed(0, lambda: F.dropout(x, 0.5)) for _ in range(2))
    np.testing.assert_array_equal(first, again)  # the function draws from the seeded generator


def test_attention_dropout_follows_manual_seed():
    x = tl.tensor(np.random.default_rng(2).standard_normal((2, 5, 8)))
    q = tl.tensor(np.random.default_rng(3).standard_normal((2, 2, 5, 4)))
    for make in (
        lambda: MultiHeadAttention(8, 2, dropout=0.5, dtype=np.float64)(x),
        lambda: F.scaled_dot_product_attention(q, q, q, dropout_p=0.5),
    ):
        first, again, other = (_under_seed(s, make) for s in (0, 0, 1))
        np.testing.assert_array_equal(first, again)
        assert np.abs(first - other).max() > 1e-3


def test_transformer_block_with_dropout_is_reproducible_under_manual_seed():
    """One seed fixes a whole block: its initial weights and every dropout mask in it."""
    x = tl.tensor(np.random.default_rng(4).standard_normal((2, 5, 8)))

    def block_output():
        return TransformerBlock(8, 2, dropout=0.3, dtype=np.float64)(x, is_causal=True)

    first, again, other = (_under_seed(s, block_output) for s in (0, 0, 1))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3
    # the same weights with masks from another seed: only the dropout masks differ
    tl.manual_seed(0)
    block = TransformerBlock(8, 2, dropout=0.3, dtype=np.float64)
    tl.manual_seed(1)
    twin = TransformerBlock(8, 2, dropout=0.3, dtype=np.float64)
    twin.load_state_dict(block.state_dict())
    assert np.abs(block(x).numpy() - twin(x).numpy()).max() > 1e-3
    np.testing.assert_array_equal(block.eval()(x).numpy(), twin.eval()(x).numpy())


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_probability_out_of_range(p):
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\)"):
        F.dropout(tl.randn(2), p)
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\)"):
        Dropout(p)


# --- Module protocol and devices
# ----------------------------------------------------------------------


def test_module_without_forward_says_so():
    class Empty(Module):
        pass

    with pytest.raises(TypeError, match="Empty has no forward\\(\\); define it"):
        Empty()(tl.randn(2))


class _FakeGPUArray(np.ndarray):
    """A host array that the backend takes for a CuPy array (its class lives in a 'cupy' module)."""


_FakeGPUArray.__module__ = "cupy._core.fake"


def test_mixing_devices_is_a_clear_error():
    """An op refuses inputs on two devices before computing anything, and names the fix."""
    on_cpu = tl.tensor([1.0, 2.0])
    on_gpu = tl.Tensor(np.array([1.0, 2.0], dtype=np.float32).view(_FakeGPUArray))
    assert on_cpu.device == "cpu" and on_gpu.device == "cuda"
    with pytest.raises(
        tl.DeviceError,
        match=r"Add got tensors on 'cpu' and 'cuda'; move one with "
        r"\.to\('cpu'\) first",
    ):
        apply(Add(), on_cpu, on_gpu)
