"""Chapter 01, autograd from scratch: engine semantics, error messages, gradcheck, closed forms.

The engine under test is ``tinyllm/autograd.py`` (gradient mode, Function, release),
``tinyllm/tensor.py`` (``apply``, topological order, accumulation), ``tinyllm/ops.py`` (the
primitives) and ``tinyllm/gradcheck.py`` (finite differences). Every test asserts values with a
tolerance that a wrong implementation would miss.
"""

import math
import re
import warnings

import numpy as np
import pytest

import tinyllm as tl
from tinyllm.autograd import Function
from tinyllm.ops import Mul
from tinyllm.tensor import apply

pytestmark = pytest.mark.ch01


def variable(values, dtype=np.float64) -> tl.Tensor:
    """A leaf that requires a gradient (float64 unless told)."""
    return tl.tensor(np.asarray(values, dtype=dtype), requires_grad=True)


# --------------------------------------------------------------------------------------------------
# The backward pass: several paths into one node, depth, gradient mode
# --------------------------------------------------------------------------------------------------


def test_node_used_twice_gets_both_contributions():
    """y = x*x + x:  dy/dx = 2x + 1 (x reaches y along three edges: two via Mul, one via Add)."""
    x = variable([-1.5, 0.0, 2.0, 3.25])
    y = x * x + x
    y.backward(np.ones(4))
    np.testing.assert_allclose(x.grad.numpy(), [-2.0, 1.0, 5.0, 7.5], rtol=0, atol=1e-15)


def test_scalar_used_twice_in_one_op():
    """y = x * x for a scalar: dy/dx = 2x exactly."""
    x = variable(3.0)
    (x * x).backward()
    assert x.grad.item() == 6.0


def test_diamond_graph():
    """a = 2x, b = x**2, c = a*b = 2x^3:  dc/dx = 6 x^2 (both branches of the diamond meet in c)."""
    x = variable([0.5, -1.0, 2.0])
    a = x * 2
    b = x ** 2
    c = a * b
    c.backward(np.ones(3))
    np.testing.assert_allclose(x.grad.numpy(), 6 * np.array([0.5, -1.0, 2.0]) ** 2, rtol=1e-14)


def test_diamond_with_shared_intermediate():
    """h = tanh(x); y = h*h + 3h:  dy/dx = (2h + 3)(1 - h^2). The intermediate h gets one summed
    gradient."""
    values = np.array([-0.7, 0.1, 1.3])
    x = variable(values)
    h = x.tanh()
    y = (h * h + h * 3).sum()
    y.backward()
    t = np.tanh(values)
    np.testing.assert_allclose(x.grad.numpy(), (2 * t + 3) * (1 - t ** 2), rtol=1e-13)


def test_chain_of_depth_ten_thousand():
    """y = x * a * a * ... (10,000 times): dy/dx = a^10000, found without recursion (iterative)."""
    depth, a = 10_000, 0.9999
    x = variable(2.0)
    y = x
    for _ in range(depth):
        y = y * a
    y.backward()
    assert x.grad.item() == pytest.approx(a ** depth, rel=1e-10)
    assert y.item() == pytest.approx(2.0 * a ** depth, rel=1e-10)


def test_deep_chain_with_fan_in():
    """y = x + x + ... + x (10,001 terms, a chain of 10,000 Adds): dy/dx = 10,001."""
    x = variable(1.5)
    y = x
    for _ in range(10_000):
        y = y + x
    y.backward()
    assert x.grad.item() == 10_001.0


def test_no_grad_records_nothing():
    x = variable([1.0, 2.0])
    with tl.no_grad():
        assert not tl.is_grad_enabled()
        y = x * 3 + 1
    assert tl.is_grad_enabled()
    assert not y.requires_grad
    assert y.is_leaf and y._fn is None
    np.testing.assert_array_equal(y.numpy(), [4.0, 7.0])


def test_no_grad_is_restored_after_an_exception():
    with pytest.raises(ZeroDivisionError), tl.no_grad():
        raise ZeroDivisionError
    assert tl.is_grad_enabled()


def test_no_grad_as_decorator():
    @tl.no_grad()
    def update(w):
        return w * 0.5

    w = variable([4.0])
    out = update(w)
    assert not out.requires_grad and out.is_leaf
    assert out.item() == 2.0
    assert tl.is_grad_enabled()
    assert update(w).item() == 2.0  # usable more than once
    assert (w * 2).requires_grad  # and gradient mode is back on afterwards


def test_detach_cuts_the_graph():
    """y = x * detach(x): only the non-detached factor carries a gradient, dy/dx = x (not 2x)."""
    x = variable([3.0, -2.0])
    d = x.detach()
    assert not d.requires_grad and d.is_leaf
    np.testing.assert_array_equal(d.numpy(), x.numpy())
    (x * d).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, -2.0])
    assert d.grad is None


def test_requires_grad_propagation():
    constant = tl.tensor(np.array([1.0, 2.0]))
    x = variable([3.0, 4.0])
    assert not constant.requires_grad
    mixed = constant * x
    assert mixed.requires_grad and not mixed.is_leaf
    only_constants = constant * 2 + constant
    assert not only_constants.requires_grad and only_constants.is_leaf
    mixed.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 2.0])
    assert constant.grad is None


def test_gradients_accumulate_across_backward_calls():
    x = variable([1.0, -2.0, 0.5])
    (x * x).sum().backward()
    first = x.grad.numpy().copy()
    np.testing.assert_array_equal(first, [2.0, -4.0, 1.0])
    (x * x).sum().backward()  # a new graph: the gradient is added to the one already there
    np.testing.assert_array_equal(x.grad.numpy(), 2 * first)


def test_accumulated_grad_is_not_aliased_to_the_graph():
    """The stored grad is a fresh copy: mutating it must not change a later backward's result."""
    x = variable([1.0, 2.0])
    y = x * 1.0
    y.backward(np.array([5.0, 7.0]), retain_graph=True)
    x.grad.data[...] = 0.0
    y.backward(np.array([5.0, 7.0]))
    np.testing.assert_array_equal(x.grad.numpy(), [5.0, 7.0])


def test_retain_graph_allows_a_second_backward():
    x = variable([2.0, 3.0])
    y = (x * x * x).sum()  # dy/dx = 3 x^2
    y.backward(retain_graph=True)
    np.testing.assert_array_equal(x.grad.numpy(), [12.0, 27.0])
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [24.0, 54.0])


def test_apply_records_the_node_only_when_a_gradient_is_needed():
    """apply(fn, ...) runs fn.forward on the arrays; it records fn (inputs, needs_input_grad) as the
    output's ._fn only when an input requires a gradient and gradient mode is on."""
    x, c = variable([1.0, 2.0]), tl.tensor(np.array([3.0, 4.0]))
    fn = Mul()
    y = apply(fn, x, c)
    np.testing.assert_array_equal(y.numpy(), [3.0, 8.0])
    assert y._fn is fn and fn.inputs == (x, c) and fn.needs_input_grad == (True, False)
    assert not fn.released
    constant = apply(Mul(), c, c)
    assert constant._fn is None and not constant.requires_grad
    with tl.no_grad():
        assert apply(Mul(), x, c)._fn is None


def test_backward_releases_what_each_op_saved():
    """After backward, every op of the graph is released: its saved arrays and inputs are gone, and
    it says so. retain_graph=True keeps them for a second pass."""
    x = variable([0.5, -1.0])
    h = x.tanh()  # Tanh saves y
    y = (h * h).sum()  # Mul saves both factors
    tanh, mul = h._fn, y._fn.inputs[0]._fn
    assert hasattr(tanh, "y") and mul.inputs == (h, h)
    y.backward(retain_graph=True)
    assert not tanh.released and hasattr(tanh, "y")
    y.backward()
    for fn in (tanh, mul, y._fn):
        assert fn.released and not hasattr(fn, "y") and fn.inputs == ()
        assert [name for name in vars(fn) if name != "released"] == []
    t = np.tanh([0.5, -1.0])
    np.testing.assert_allclose(x.grad.numpy(), 2 * 2 * t * (1 - t ** 2), rtol=1e-14)  # two passes


def test_retain_grad_on_an_intermediate():
    x = variable([1.0, 2.0, 3.0])
    h = x * 2
    h.retain_grad()
    other = x * 5  # an intermediate that did not ask: its grad stays None
    y = (h * h).sum() + other.sum()  # dy/dh = 2h = 4x
    y.backward()
    np.testing.assert_array_equal(h.grad.numpy(), [4.0, 8.0, 12.0])
    np.testing.assert_array_equal(x.grad.numpy(), [13.0, 21.0, 29.0])  # 8x + 5
    assert other.grad is None


def test_backward_with_explicit_cotangent():
    """For y = x^2 elementwise, backward(v) gives v * 2x (a vector-Jacobian product)."""
    x = variable([1.0, -3.0, 0.5])
    v = np.array([0.3, 2.0, -1.0])
    (x ** 2).backward(tl.tensor(v))
    np.testing.assert_allclose(x.grad.numpy(), v * 2 * np.array([1.0, -3.0, 0.5]), rtol=1e-15)


def test_backward_on_a_leaf():
    x = variable(4.0)
    x.backward()
    assert x.grad.item() == 1.0


# --------------------------------------------------------------------------------------------------
# Errors teach: each message is checked
# --------------------------------------------------------------------------------------------------


def test_error_backward_on_non_scalar_without_gradient():
    y = variable([1.0, 2.0]) * 2
    with pytest.raises(RuntimeError, match=r"non-scalar tensor of shape \(2,\).*\.sum\(\)"):
        y.backward()


def test_error_second_backward_through_freed_graph():
    x = variable([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="already freed.*retain_graph=True"):
        y.backward()


def test_error_backward_through_freed_intermediate():
    x = variable([1.0, 2.0])
    h = x * x
    h.sum().backward()
    with pytest.raises(RuntimeError, match="already freed"):
        (h * 3).sum().backward()


def test_error_backward_without_requires_grad():
    y = tl.tensor([1.0, 2.0]).sum()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_error_backward_under_no_grad():
    x = variable([1.0])
    with tl.no_grad():
        y = (x * 2).sum()
    with pytest.raises(RuntimeError, match="does not require grad.*no_grad"):
        y.backward()


def test_error_requires_grad_on_integer_tensor():
    with pytest.raises(TypeError, match="only floating-point tensors can require gradients.*int64"):
        tl.tensor([1, 2, 3], requires_grad=True)
    with pytest.raises(TypeError, match="floating-point"):
        tl.arange(4).requires_grad_()


def test_error_gradient_of_wrong_shape():
    y = variable([1.0, 2.0, 3.0]) * 2
    with pytest.raises(ValueError, match=r"gradient of shape \(2,\) for a tensor of shape \(3,\)"):
        y.backward(np.ones(2))


def test_error_gradcheck_on_float32():
    x = tl.tensor([1.0, 2.0], requires_grad=True)  # float32 by default
    with pytest.raises(TypeError, match="gradcheck needs float64 inputs.*float32"):
        tl.gradcheck(lambda t: t * 2, x)


def test_error_gradcheck_with_no_variable():
    with pytest.raises(ValueError, match="no input has requires_grad=True"):
        tl.gradcheck(lambda t: t * 2, tl.tensor(np.ones(2)))


def test_error_item_on_multi_element_tensor():
    with pytest.raises(ValueError,
                       match=r"item\(\) needs a tensor with one element, got shape \(2, 2\)"):
        tl.ones(2, 2).item()


def test_item_on_one_element_tensors():
    assert tl.tensor([[2.5]]).item() == 2.5
    assert isinstance(tl.tensor([3]).item(), int)


def test_error_pow_with_tensor_exponent():
    x = variable([2.0])
    with pytest.raises(TypeError, match=r"Python number as exponent.*exp\(y \* log\(x\)\)"):
        x ** tl.tensor([2.0])


@pytest.mark.parametrize("axes", [(0, 0), (0, 1, 2), (1,)])
def test_error_transpose_with_bad_permutation(axes):
    x = tl.tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match="not a permutation of the 2 axes"):
        x.transpose(*axes)


def test_error_transpose_with_out_of_range_axis():
    """(0, 3) is not a permutation of the axes (0, 1) of a matrix; the teaching error should say so.

    The check ``sorted(a % ndim ...)`` alone maps 3 to 1 and lets it through, so NumPy's AxisError
    would surface instead.
    """
    x = tl.tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match="not a permutation of the 2 axes"):
        x.transpose(0, 3)


def test_error_split_into_unequal_sections():
    x = tl.tensor(np.ones((5, 2)))
    with pytest.raises(ValueError, match="axis 0 of length 5 does not divide into 2 equal"):
        tl.split(x, 2)


@pytest.mark.skipif(tl.cuda_available(), reason="this machine has a GPU, so 'cuda' is available")
def test_error_cuda_without_gpu():
    with pytest.raises(tl.DeviceError,
                       match="device 'cuda' requested but unavailable.*device='cpu'"):
        tl.zeros(2, device="cuda")
    with pytest.raises(tl.DeviceError, match="'cuda' requested but unavailable"):
        tl.tensor([1.0]).to("cuda")
    assert not tl.cuda_available()


def test_error_unknown_device():
    with pytest.raises(tl.DeviceError,
                       match=r"unknown device 'tpu'; expected one of \('cpu', 'cuda'\)"):
        tl.ones(2, device="tpu")
    with pytest.raises(tl.DeviceError, match="unknown device 'gpu'"):
        tl.tensor([1.0]).to("gpu")


# --------------------------------------------------------------------------------------------------
# gradcheck itself: it must catch a wrong backward and pass a right one
# --------------------------------------------------------------------------------------------------


class _BrokenSquare(Function):
    """y = x**2 with a deliberately wrong backward: it forgets the factor 2 (returns g * x)."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, grad):
        return grad * self.x


def test_gradcheck_catches_a_wrong_backward():
    values = np.array([[0.5, -1.25, 2.0], [1.5, -0.75, 0.25]])
    x = variable(values)
    with pytest.raises(tl.GradcheckError) as info:
        tl.gradcheck(lambda t: apply(_BrokenSquare(), t), x, seed=0)
    message = str(info.value)

    # Rebuild what gradcheck saw: cotangent v from the same seed; analytic v*x, true (numeric) 2vx.
    v = np.random.default_rng(0).standard_normal(values.shape)
    analytic, numeric = v * values, 2 * v * values
    error = np.abs(analytic - numeric) - (1e-5 + 1e-4 * np.abs(numeric))
    worst = np.unravel_index(np.argmax(error), error.shape)

    found = re.search(r"at index \((\d+), (\d+)\): analytic (\S+), numeric (\S+) ", message)
    assert found, message
    assert (int(found[1]), int(found[2])) == tuple(int(i) for i in worst)
    assert float(found[3]) == pytest.approx(analytic[worst], rel=1e-7)
    assert float(found[4].rstrip(",")) == pytest.approx(numeric[worst], rel=1e-6)
    assert "input 0 (shape (2, 3))" in message


def test_gradcheck_catches_a_wrong_second_input():
    """Only the second input's gradient is wrong (sign flipped): the message names input 1."""

    class BrokenSub(Function):
        def forward(self, a, b):
            return a - b

        def backward(self, grad):
            return grad, grad  # should be -grad for b

    a, b = variable([1.0, 2.0]), variable([3.0, -1.0])
    with pytest.raises(tl.GradcheckError, match=r"input 1 \(shape \(2,\)\)"):
        tl.gradcheck(lambda p, q: apply(BrokenSub(), p, q), a, b)


def test_gradcheck_passes_correct_ops():
    rng = np.random.default_rng(1)
    a = variable(rng.standard_normal((3, 4)))
    b = variable(rng.standard_normal((4, 2)))
    c = variable(rng.uniform(0.5, 2.0, (3, 2)))
    assert tl.gradcheck(lambda p, q, r: ((p @ q).tanh() * r.log()).sigmoid() / r, a, b, c)
    # inputs that do not require grad are held constant and not checked
    assert tl.gradcheck(lambda p, q: p * q.exp(), a, tl.tensor(rng.standard_normal((3, 4))))


def test_gradcheck_restores_the_inputs():
    values = np.array([0.3, -0.2, 1.1])
    x = variable(values)
    tl.gradcheck(lambda t: (t * t).exp(), x)
    np.testing.assert_array_equal(x.numpy(), values)


# --------------------------------------------------------------------------------------------------
# Chapter 01 closed forms
# --------------------------------------------------------------------------------------------------


def test_neuron_tanh_closed_form():
    # eq. 1.7: the local derivative 1 - tanh^2 = 1 - y^2
    """f = tanh(w·x + b):  df/dw = (1 - f^2) x,  df/dx = (1 - f^2) w,  df/db = 1 - f^2."""
    rng = np.random.default_rng(7)
    w_values, x_values, b_value = rng.standard_normal(5), rng.standard_normal(5), 0.3
    w, x, b = variable(w_values), variable(x_values), variable(b_value)
    f = ((w * x).sum() + b).tanh()
    f.backward()

    f_hand = math.tanh(float(w_values @ x_values) + b_value)
    local = 1 - f_hand ** 2
    assert f.item() == pytest.approx(f_hand, rel=1e-14)
    np.testing.assert_allclose(w.grad.numpy(), local * x_values, rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), local * w_values, rtol=1e-12)
    assert b.grad.item() == pytest.approx(local, rel=1e-12)
    # and the same through the matrix product, checked by finite differences
    assert tl.gradcheck(lambda p, q, r: (p @ q + r).tanh(), w, x, b)


def test_sigmoid_derivative_is_y_times_one_minus_y():
    # eq. 1.8: sigma' = sigma (1 - sigma)
    values = np.linspace(-8, 8, 33)
    x = variable(values)
    y = x.sigmoid()
    y.backward(np.ones_like(values))
    y_hand = 1 / (1 + np.exp(-values))
    np.testing.assert_allclose(y.numpy(), y_hand, rtol=1e-14)
    np.testing.assert_allclose(x.grad.numpy(), y_hand * (1 - y_hand), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_stable_at_large_inputs(dtype):
    # eq. 1.8: the two-branch form with e = exp(-|x|)
    """No overflow, division by zero or invalid value at ±1000; exp(-1000) underflowing to 0 is
    correct."""
    x = variable([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype=dtype)
    strict = np.errstate(over="raise", divide="raise", invalid="raise", under="ignore")
    with warnings.catch_warnings(), strict:
        warnings.simplefilter("error")
        y = x.sigmoid()
        y.backward(np.ones(5, dtype=dtype))
    assert y.dtype == dtype and x.grad.dtype == dtype
    assert np.all(np.isfinite(y.numpy())) and np.all(np.isfinite(x.grad.numpy()))
    np.testing.assert_allclose(y.numpy(), [0.0, np.exp(-50.0), 0.5, 1.0, 1.0],
                               atol=1e-30, rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), [0.0, np.exp(-50.0), 0.25, 0.0, 0.0],
                               atol=1e-20, rtol=1e-6)


def test_erf_matches_math_erf_on_a_dense_grid():
    edges = [0.0, -0.0, 1e-12, -1e-12, 6.0, -6.0, 30.0, -30.0]
    grid = np.concatenate([np.linspace(-6, 6, 120_001), edges])
    ours = tl.erf(tl.tensor(grid)).numpy()
    reference = np.array([math.erf(v) for v in grid])
    assert np.abs(ours - reference).max() < 1e-15  # float64: Cody (tests/test_13_erf.py)
    assert tl.erf(tl.tensor(0.0)).item() == 0.0
    assert tl.erf(tl.tensor([-30.0, 30.0])).numpy().tolist() == [-1.0, 1.0]


def test_erf_float32_stays_float32_and_accurate():
    grid = np.linspace(-6, 6, 20_001).astype(np.float32)
    ours = tl.erf(tl.tensor(grid))
    assert ours.dtype == np.float32
    reference = np.array([math.erf(float(v)) for v in grid])
    assert np.abs(ours.numpy().astype(np.float64) - reference).max() < 1e-6


def test_erf_gelu_values():
    """Exact GELU(x) = x/2 (1 + erf(x/sqrt 2)) = x Phi(x); the one-, two-, three-sigma masses."""
    sigmas = np.array([1.0, 2.0, 3.0]) / math.sqrt(2)
    np.testing.assert_allclose(
        tl.erf(tl.tensor(sigmas)).numpy(),
        [0.6826894921370859, 0.9544997361036416, 0.9973002039367398],
        rtol=1e-15,
    )
    x = np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    gelu = x / 2 * (1 + tl.erf(tl.tensor(x / math.sqrt(2))).numpy())
    phi = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    np.testing.assert_allclose(gelu, x * phi, rtol=1e-15, atol=1e-16)
    assert gelu[5] == pytest.approx(0.8413447460685429, rel=1e-15)  # GELU(1) = Phi(1)


def test_erf_derivative_closed_form():
    """d erf/dx = 2/sqrt(pi) exp(-x^2), and finite differences agree."""
    values = np.linspace(-3, 3, 13)
    x = variable(values)
    tl.erf(x).backward(np.ones_like(values))
    np.testing.assert_allclose(x.grad.numpy(), 2 / math.sqrt(math.pi) * np.exp(-values ** 2),
                               rtol=1e-14)
    assert x.grad.numpy()[6] == pytest.approx(2 / math.sqrt(math.pi), rel=1e-15)  # at x = 0
    # finite differences of the forward (Cody's, to float64 accuracy) agree with the exact slope
    assert tl.gradcheck(tl.erf, variable(values + 0.1))


def test_erf_is_continuous_at_zero():
    """The published A&S coefficients sum to 1 - 1e-9, so unnormalised they make erf jump by 2e-9
    at 0, which central differences (eps = 1e-6) see as a slope error of 1e-3. Rescaled, erf is odd
    and smooth."""
    tiny = tl.erf(tl.tensor(np.array([1e-12, -1e-12]))).numpy()
    np.testing.assert_allclose(tiny, [1.1283791670955126e-12, -1.1283791670955126e-12], rtol=1e-3)
    assert tl.gradcheck(tl.erf, variable([0.0, 1e-7, -3e-7]))
