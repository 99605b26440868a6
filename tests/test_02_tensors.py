"""Chapter 02, tensors, broadcasting and the matmul gradient.

Layer 1: float64 finite differences with a random output cotangent (``tl.gradcheck``) for every
         primitive.
Layer 2: shapes from hypothesis, and every broadcasting pairing of scalar, (n,), (1,n), (m,1),
         (m,n), (k,m,n) and (k,1,n), listed explicitly so none can be missed.
Layer 3: the chapter's closed forms (dA = G B^T, dB = A^T G; unbroadcast = sum over the broadcast
         axes), plus the scatter-add, dtypes, NumPy interoperability and the constructors.

Op tests take the ``device`` fixture (tests/conftest.py): inputs are built in float64 on the host
and moved with ``.to(device)``; "cuda" is skipped cleanly on a machine without a GPU.
"""

import itertools
import math
import zlib

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinyllm as tl
from tinyllm.autograd import unbroadcast
from tinyllm.backend import scatter_add

pytestmark = pytest.mark.ch02

# The device fixture is a plain parameter (no state), so it is safe to share between hypothesis
# examples.
fixture_ok = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def leaf(values, device: str = "cpu") -> tl.Tensor:
    """A float64 variable on ``device``: made on the host, moved, then marked (a leaf there)."""
    return tl.tensor(np.asarray(values, dtype=np.float64)).to(device).requires_grad_()


def const(values, device: str = "cpu") -> tl.Tensor:
    """A constant (no gradient) on ``device``; keeps the dtype of ``values``."""
    return tl.tensor(np.asarray(values)).to(device)


def away_from_zero(rng, shape, low=0.3, high=2.0) -> np.ndarray:
    """Values with |v| in [low, high] and a random sign: safe for division, relu, integer powers."""
    return rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)


def distinct(rng, shape, spacing=0.37) -> np.ndarray:
    """Values that are pairwise at least ``spacing`` apart (no ties for max), in random order."""
    size = math.prod(shape)
    return (rng.permutation(size) * spacing - size * spacing / 2).reshape(shape)


# --------------------------------------------------------------------------------------------------
# Binary elementwise ops over every broadcasting pairing
# --------------------------------------------------------------------------------------------------

K, M, N = 2, 3, 4
PAIRING_SHAPES = {
    "scalar": (),
    "n": (N,),
    "1n": (1, N),
    "m1": (M, 1),
    "mn": (M, N),
    "kmn": (K, M, N),
    "k1n": (K, 1, N),
}
PAIRS = [pytest.param(PAIRING_SHAPES[a], PAIRING_SHAPES[b], id=f"{a}-{b}")
         for a, b in itertools.product(PAIRING_SHAPES, repeat=2)]

BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
    "maximum": (tl.maximum, np.maximum),
}


def binary_inputs(name: str, shape_a, shape_b, rng):
    a = rng.standard_normal(shape_a)
    b = away_from_zero(rng, shape_b) if name == "div" else rng.standard_normal(shape_b)
    if name == "maximum":  # every broadcast pair of entries at least 0.05 apart: no ties, no kinks
        while np.min(np.abs(np.subtract(a, b)), initial=np.inf) < 0.05:
            a, b = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    return a, b


def check_binary(name, a_values, b_values, device):
    op, reference = BINARY[name]
    a, b = leaf(a_values, device), leaf(b_values, device)
    out = op(a, b)
    assert out.shape == np.broadcast_shapes(a_values.shape, b_values.shape)
    np.testing.assert_allclose(out.numpy(), reference(a_values, b_values), rtol=1e-15, atol=0)
    assert tl.gradcheck(op, a, b)


@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("shape_a, shape_b", PAIRS)
def test_binary_every_pairing(name, shape_a, shape_b, device):
    rng = np.random.default_rng(zlib.crc32(repr((name, shape_a, shape_b)).encode()))
    check_binary(name, *binary_inputs(name, shape_a, shape_b, rng), device)


@fixture_ok
@given(
    name=st.sampled_from(list(BINARY)),
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_binary_random_broadcastable_shapes(name, shapes, seed, device):
    rng = np.random.default_rng(seed)
    check_binary(name, *binary_inputs(name, *shapes.input_shapes, rng), device)


def test_binary_gradient_is_the_hand_sum_over_broadcast_axes():
    # eq. 2.3: the gradient summed over the broadcast axes
    """a (m,1) + b (1,n) with cotangent G (m,n): dL/da = G summed over columns, dL/db over rows."""
    rng = np.random.default_rng(3)
    a, b = leaf(rng.standard_normal((M, 1))), leaf(rng.standard_normal((1, N)))
    g = rng.standard_normal((M, N))
    (a * b).backward(g)
    np.testing.assert_allclose(a.grad.numpy(), (g * b.numpy()).sum(axis=1, keepdims=True),
                               rtol=1e-13)
    np.testing.assert_allclose(b.grad.numpy(), (g * a.numpy()).sum(axis=0, keepdims=True),
                               rtol=1e-13)


# --------------------------------------------------------------------------------------------------
# where (the condition broadcasts too)
# --------------------------------------------------------------------------------------------------

CONDITION_SHAPES = list(PAIRING_SHAPES.values())


@pytest.mark.parametrize("shape_a, shape_b", PAIRS)
def test_where_every_pairing(shape_a, shape_b, device):
    rng = np.random.default_rng(zlib.crc32(repr(("where", shape_a, shape_b)).encode()))
    for shape_c in CONDITION_SHAPES:  # every condition shape against every pair
        condition = rng.random(shape_c) < 0.5
        a_values, b_values = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
        a, b = leaf(a_values, device), leaf(b_values, device)
        cond = const(condition, device)
        out = tl.where(cond, a, b)
        np.testing.assert_array_equal(out.numpy(), np.where(condition, a_values, b_values))
        assert tl.gradcheck(lambda p, q, cond=cond: tl.where(cond, p, q), a, b)


@fixture_ok
@given(
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_where_random_broadcastable_shapes(shapes, seed, device):
    shape_c, shape_a, shape_b = shapes.input_shapes
    rng = np.random.default_rng(seed)
    cond = const(rng.random(shape_c) < 0.5, device)
    a, b = leaf(rng.standard_normal(shape_a), device), leaf(rng.standard_normal(shape_b), device)
    assert tl.where(cond, a, b).shape == shapes.result_shape
    assert tl.gradcheck(lambda p, q: tl.where(cond, p, q), a, b)


def test_where_gradient_closed_form():
    """dL/da = G * c summed to a's shape, dL/db = G * (1 - c); a Python number as one branch gets
    nothing."""
    rng = np.random.default_rng(4)
    condition = np.array([[True, False, True]])
    a = leaf(rng.standard_normal((2, 3)))
    b = leaf(rng.standard_normal(3))
    g = rng.standard_normal((2, 3))
    tl.where(condition, a, b).backward(g)
    np.testing.assert_array_equal(a.grad.numpy(), g * condition)
    np.testing.assert_array_equal(b.grad.numpy(), (g * ~condition).sum(axis=0))
    x = leaf([1.0, -2.0])
    relu = tl.where(x > 0, x, 0.0)
    relu.backward(np.array([3.0, 5.0]))
    np.testing.assert_array_equal(relu.numpy(), [1.0, 0.0])
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 0.0])


# --------------------------------------------------------------------------------------------------
# Unary elementwise ops
# --------------------------------------------------------------------------------------------------

NONZERO = st.one_of(st.floats(-2.5, -0.3), st.floats(0.3, 2.5))
NOT_NEAR_ZERO = st.one_of(st.floats(-3, -0.05), st.floats(0.05, 3))
UNARY = {  # name: (op, NumPy reference, element strategy for a smooth region)
    "exp": (lambda x: x.exp(), np.exp, st.floats(-3, 3)),
    "log": (lambda x: x.log(), np.log, st.floats(0.1, 5)),
    "sqrt": (lambda x: x.sqrt(), np.sqrt, st.floats(0.1, 5)),
    "tanh": (lambda x: x.tanh(), np.tanh, st.floats(-3, 3)),
    "relu": (lambda x: x.relu(), lambda v: np.maximum(v, 0), NOT_NEAR_ZERO),  # kink at 0
    "sigmoid": (lambda x: x.sigmoid(), lambda v: 1 / (1 + np.exp(-v)), st.floats(-6, 6)),
    "erf": (tl.erf, np.vectorize(math.erf, otypes=[float]), st.floats(-3, 3)),
    "neg": (lambda x: -x, np.negative, st.floats(-5, 5)),
}
SMALL_SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=3)


@pytest.mark.parametrize("name", list(UNARY))
@fixture_ok
@given(data=st.data())
def test_unary(name, data, device):
    op, reference, elements = UNARY[name]
    values = data.draw(hnp.arrays(np.float64, SMALL_SHAPES, elements=elements))
    x = leaf(values, device)
    out = op(x)
    assert out.shape == values.shape
    tolerance = 1e-14  # erf too: its float64 forward is Cody's (tinyllm/special.py)
    np.testing.assert_allclose(out.numpy(), reference(values), rtol=tolerance, atol=tolerance)
    assert tl.gradcheck(op, x)


INTEGER_EXPONENTS = [1, 2, 3, -1, -2]
REAL_EXPONENTS = [0.5, 1.5, 2.5, -0.5, 1 / 3]


@pytest.mark.parametrize("exponent", INTEGER_EXPONENTS + REAL_EXPONENTS)
@fixture_ok
@given(data=st.data())
def test_pow(exponent, data, device):
    # real powers need a positive base
    elements = NONZERO if exponent in INTEGER_EXPONENTS else st.floats(0.3, 2.5)
    values = data.draw(hnp.arrays(np.float64, SMALL_SHAPES, elements=elements))
    x = leaf(values, device)
    np.testing.assert_allclose((x ** exponent).numpy(), values ** exponent, rtol=1e-14)
    assert tl.gradcheck(lambda t: t ** exponent, x)


def test_pow_closed_form():
    """d(x^p)/dx = p x^(p-1), e.g. d sqrt(x)/dx = 1 / (2 sqrt x) at x = 4 is 1/4."""
    x = leaf([4.0, 9.0])
    (x ** 0.5).backward(np.ones(2))
    np.testing.assert_allclose(x.grad.numpy(), [0.25, 1 / 6], rtol=1e-15)


def test_relu_and_maximum_at_the_kink():
    """The chosen subgradients: relu'(0) = 0; maximum splits a tie half-half."""
    x = leaf([0.0, 2.0, -1.0])
    x.relu().backward(np.ones(3))
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 1.0, 0.0])
    a, b = leaf([1.0, 2.0]), leaf([1.0, 3.0])
    tl.maximum(a, b).backward(np.array([4.0, 4.0]))
    np.testing.assert_array_equal(a.grad.numpy(), [2.0, 0.0])
    np.testing.assert_array_equal(b.grad.numpy(), [2.0, 4.0])


# --------------------------------------------------------------------------------------------------
# Reductions
# --------------------------------------------------------------------------------------------------

REDUCTIONS = {"sum": np.sum, "mean": np.mean, "max": np.max}
EVERY_AXIS_3D = [None, 0, 1, 2, -1, -3, (0,), (0, 1), (0, 2), (1, 2), (0, 1, 2), (2, 0), (-1, 0)]


def check_reduction(name, values, axis, keepdims, device):
    x = leaf(values, device)
    def op(t):
        return getattr(t, name)(axis=axis, keepdims=keepdims)

    out = op(x)
    expected = REDUCTIONS[name](values, axis=axis, keepdims=keepdims)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-13)
    assert tl.gradcheck(op, x)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", EVERY_AXIS_3D, ids=str)
@pytest.mark.parametrize("name", list(REDUCTIONS))
def test_reduction_every_axis(name, axis, keepdims, device):
    rng = np.random.default_rng(5)
    values = distinct(rng, (K, M, N)) if name == "max" else rng.standard_normal((K, M, N))
    check_reduction(name, values, axis, keepdims, device)


@st.composite
def shape_and_axis(draw):
    shape = draw(SMALL_SHAPES)
    ndim = len(shape)
    if ndim == 0:
        return shape, None
    single = st.integers(-ndim, ndim - 1)
    several = st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple)
    return shape, draw(st.one_of(st.none(), single, several))


@pytest.mark.parametrize("name", list(REDUCTIONS))
@fixture_ok
@given(shape_axis=shape_and_axis(), keepdims=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_reduction_random(name, shape_axis, keepdims, seed, device):
    shape, axis = shape_axis
    rng = np.random.default_rng(seed)
    values = distinct(rng, shape) if name == "max" else rng.standard_normal(shape)
    check_reduction(name, values, axis, keepdims, device)


def test_reduction_closed_forms():
    # eq. 2.4: sum, mean, and max with a tie shared equally
    """d sum/dx = 1, d mean/dx = 1/n, d max/dx = indicator of the arg-max (ties share equally)."""
    x = leaf([[1.0, 5.0, 5.0], [2.0, 0.0, -1.0]])
    x.max(axis=1).backward(np.array([6.0, 10.0]))
    np.testing.assert_array_equal(x.grad.numpy(), [[0.0, 3.0, 3.0], [10.0, 0.0, 0.0]])
    x.grad = None
    x.mean(axis=0).backward(np.array([2.0, 4.0, 6.0]))
    np.testing.assert_array_equal(x.grad.numpy(), [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    x.grad = None
    x.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((2, 3)))


# --------------------------------------------------------------------------------------------------
# Matrix product
# --------------------------------------------------------------------------------------------------

MATMUL_CASES = [
    ((4,), (4,)),
    ((4,), (4, 3)),
    ((3, 4), (4,)),
    ((3, 4), (4, 2)),
    ((2, 3, 4), (4, 2)),
    ((3, 4), (2, 4, 2)),
    ((2, 1, 3, 4), (3, 4, 2)),
    ((2, 3, 4), (2, 4, 2)),
    ((2, 1, 3, 4), (1, 2, 4, 2)),
    ((4,), (2, 4, 3)),
    ((2, 3, 4), (4,)),
]


@pytest.mark.parametrize("shape_a, shape_b", MATMUL_CASES, ids=str)
def test_matmul_cases(shape_a, shape_b, device):
    rng = np.random.default_rng(6)
    a_values, b_values = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    a, b = leaf(a_values, device), leaf(b_values, device)
    out = a @ b
    np.testing.assert_allclose(out.numpy(), np.matmul(a_values, b_values), rtol=1e-13, atol=1e-14)
    assert tl.gradcheck(lambda p, q: p @ q, a, b)


@fixture_ok
@given(
    shapes=hnp.mutually_broadcastable_shapes(signature=np.matmul.signature, max_dims=2, max_side=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_matmul_random_batched_shapes(shapes, seed, device):
    rng = np.random.default_rng(seed)
    shape_a, shape_b = shapes.input_shapes
    a_values, b_values = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    a, b = leaf(a_values, device), leaf(b_values, device)
    out = a @ b
    assert out.shape == shapes.result_shape
    np.testing.assert_allclose(out.numpy(), np.matmul(a_values, b_values), rtol=1e-13, atol=1e-14)
    assert tl.gradcheck(lambda p, q: p @ q, a, b)


def test_matmul_closed_form():
    """Z = A B with cotangent G:  dL/dA = G B^T,  dL/dB = A^T G   (eq. 2.6)."""
    rng = np.random.default_rng(8)
    a_values, b_values = rng.standard_normal((5, 3)), rng.standard_normal((3, 4))
    g = rng.standard_normal((5, 4))
    a, b = leaf(a_values), leaf(b_values)
    (a @ b).backward(g)
    np.testing.assert_allclose(a.grad.numpy(), g @ b_values.T, rtol=1e-13)
    np.testing.assert_allclose(b.grad.numpy(), a_values.T @ g, rtol=1e-13)


def test_matmul_closed_form_shared_weight():
    # eq. 2.7: sum_b A_b^T G_b, and the same as one product of the folded rows
    """A (B,T,C) batch against one W (C,V): dL/dW = sum over the batch of A_b^T G_b."""
    rng = np.random.default_rng(9)
    a_values, w_values = rng.standard_normal((2, 5, 3)), rng.standard_normal((3, 4))
    g = rng.standard_normal((2, 5, 4))
    a, w = leaf(a_values), leaf(w_values)
    (a @ w).backward(g)
    np.testing.assert_allclose(w.grad.numpy(), sum(a_values[i].T @ g[i] for i in range(2)),
                               rtol=1e-13)
    folded = a_values.reshape(10, 3).T @ g.reshape(10, 4)        # the (BT, C)^T (BT, V) product
    np.testing.assert_allclose(w.grad.numpy(), folded, rtol=1e-13)
    np.testing.assert_allclose(a.grad.numpy(), g @ w_values.T, rtol=1e-13)


def test_matmul_with_constant_operand():
    """Only the operand that requires a gradient gets one; the constant stays without .grad."""
    rng = np.random.default_rng(10)
    x_values, w_values = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    g = rng.standard_normal((4, 2))
    x, w = const(x_values), leaf(w_values)
    (x @ w).backward(g)
    assert x.grad is None
    np.testing.assert_allclose(w.grad.numpy(), x_values.T @ g, rtol=1e-13)


def test_matmul_backward_skips_the_product_nobody_needs():
    """needs_input_grad: a constant operand gets None; the batched A's gradient is G W^T."""
    rng = np.random.default_rng(21)
    a, w = leaf(rng.standard_normal((2, 5, 3))), const(rng.standard_normal((3, 4)))
    out = a @ w
    g = rng.standard_normal((2, 5, 4))
    grad_a, grad_w = out._fn.backward(g)
    assert grad_w is None
    np.testing.assert_allclose(grad_a, g @ w.numpy().T, rtol=1e-13)


# --------------------------------------------------------------------------------------------------
# Shape ops: reshape, transpose
# --------------------------------------------------------------------------------------------------


def _prime_factors(n: int) -> list[int]:
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


@st.composite
def shape_and_new_shape(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4))
    factors = draw(st.permutations(_prime_factors(math.prod(shape))))
    groups = draw(st.integers(1, 4))
    cut = st.integers(0, len(factors))
    cuts = sorted(draw(st.lists(cut, min_size=groups - 1, max_size=groups - 1)))
    bounds = [0, *cuts, len(factors)]
    new_shape = [math.prod(factors[i:j]) for i, j in itertools.pairwise(bounds)]
    if draw(st.booleans()):
        new_shape[draw(st.integers(0, len(new_shape) - 1))] = -1  # let reshape infer one axis
    return shape, tuple(new_shape)


@fixture_ok
@given(shapes=shape_and_new_shape(), seed=st.integers(0, 2**32 - 1))
def test_reshape(shapes, seed, device):
    shape, new_shape = shapes
    values = np.random.default_rng(seed).standard_normal(shape)
    x = leaf(values, device)
    np.testing.assert_array_equal(x.reshape(new_shape).numpy(), values.reshape(new_shape))
    np.testing.assert_array_equal(x.reshape(*new_shape).numpy(), values.reshape(new_shape))
    assert tl.gradcheck(lambda t: t.reshape(new_shape), x)


@st.composite
def shape_and_permutation(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4))
    perm = draw(st.permutations(range(len(shape))))
    as_negative = draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)))
    return shape, tuple(a - len(shape) if negative else a for a, negative in zip(perm, as_negative))


@fixture_ok
@given(shape_perm=shape_and_permutation(), seed=st.integers(0, 2**32 - 1))
def test_transpose(shape_perm, seed, device):
    shape, perm = shape_perm
    values = np.random.default_rng(seed).standard_normal(shape)
    x = leaf(values, device)
    np.testing.assert_array_equal(x.transpose(perm).numpy(), values.transpose(perm))
    np.testing.assert_array_equal(x.transpose(*perm).numpy(), values.transpose(perm))
    assert tl.gradcheck(lambda t: t.transpose(perm), x)
    assert tl.gradcheck(lambda t: t.transpose(), x)  # no argument reverses the axes
    np.testing.assert_array_equal(x.transpose().numpy(), values.T)


# --------------------------------------------------------------------------------------------------
# Indexing: slices, gathers, masks
# --------------------------------------------------------------------------------------------------


@fixture_ok
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_basic_indexing(data, seed, device):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    index = data.draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
    values = np.random.default_rng(seed).standard_normal(shape)
    x = leaf(values, device)
    np.testing.assert_array_equal(x[index].numpy(), values[index])
    assert tl.gradcheck(lambda t: t[index], x)


@pytest.mark.parametrize(
    "index",
    [np.s_[::-1], np.s_[::-2, 1:], np.s_[-1:0:-1, ::-3], np.s_[1, ::-1], np.s_[..., -2],
     np.s_[None, 2:0:-1]],
    ids=str,
)
def test_negative_step_slices(index, device):
    values = np.random.default_rng(11).standard_normal((4, 5))
    x = leaf(values, device)
    g = np.random.default_rng(12).standard_normal(values[index].shape)
    x[index].backward(const(g, device))
    expected = np.zeros_like(values)
    expected[index] = g  # a slice reads each entry at most once: its gradient is written back
    np.testing.assert_array_equal(x.grad.numpy(), expected)
    assert tl.gradcheck(lambda t: t[index], x)


def test_gather_with_repeated_indices_sums(device):
    # eq. 2.8: the reads of one row add up
    """y = x[idx] reads row 0 three times: dL/dx[0] = g[0] + g[2] + g[3] (added, not overwritten)"""
    rng = np.random.default_rng(13)
    values, g = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    index = np.array([0, 2, 0, 0, 4])
    x = leaf(values, device)
    x[index].backward(const(g, device))
    expected = np.zeros((5, 3))
    np.add.at(expected, index, g)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-15)
    np.testing.assert_allclose(x.grad.numpy()[0], g[0] + g[2] + g[3], rtol=1e-15)
    np.testing.assert_array_equal(x.grad.numpy()[[1, 3]], 0.0)
    assert tl.gradcheck(lambda t: t[index], x)


SCATTER_INDICES = {  # name: (index into a (6, 3, 2) target, what it exercises)
    "rows": np.array([[0, 5, 5], [2, 0, 0]]),  # repeated whole rows: the flat-cell path
    "negative-rows": np.array([-1, 5, -6, 0, 0]),  # -1 is row 5, -6 is row 0
    "distinct-rows": np.array([4, 1, 3]),  # each row once: added in place
    "pairs": (np.array([0, 0, 5]), np.array([2, 2, 1])),  # a repeated (row, column) pair
    "mixed": (np.array([1, 1]), slice(None), 0),  # arrays and slices: the general path
    "mask": np.array([True, False, True, True, False, False]),
    "list": [3, 3, -3],
    "slice": np.s_[1:4, ::-1],
}


@pytest.mark.parametrize("name", list(SCATTER_INDICES))
def test_scatter_add_equals_np_add_at(name):
    """backend.scatter_add (fast paths and all) equals the unbuffered np.add.at, with repeats."""
    index = SCATTER_INDICES[name]
    rng = np.random.default_rng(19)
    target = rng.standard_normal((6, 3, 2))
    values = rng.standard_normal(target[index].shape)
    expected = target.copy()
    np.add.at(expected, index, values)
    scatter_add(target, index, values)
    np.testing.assert_allclose(target, expected, rtol=1e-15, atol=1e-15)


def test_scatter_add_of_embedding_rows_in_float32():
    """Rows of a (V, C) table for (B, T) ids, as in the embedding backward; float32 stays so."""
    rng = np.random.default_rng(20)
    ids = rng.integers(0, 7, (4, 9))
    rows = rng.standard_normal((4, 9, 5)).astype(np.float32)
    table = np.zeros((7, 5), dtype=np.float32)
    scatter_add(table, ids.reshape(-1), rows.reshape(-1, 5))
    expected = np.zeros((7, 5))
    np.add.at(expected, ids, rows.astype(np.float64))
    assert table.dtype == np.float32
    np.testing.assert_allclose(table, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "index",
    [
        np.array([[0, 1, 1], [4, 4, 4]]),  # (B, T) token ids into an embedding table
        (np.array([0, 0, 2]), np.array([1, 1, 0])),  # the same entry twice
        (np.array([3, 3]), slice(None, None, -1)),  # gather mixed with a slice
        [1, 1, -1],  # a Python list
    ],
    ids=["2d-ids", "pairs", "mixed", "list"],
)
def test_gather_variants(index, device):
    values = np.random.default_rng(14).standard_normal((5, 4))
    x = leaf(values, device)
    np.testing.assert_array_equal(x[index].numpy(), values[index])
    assert tl.gradcheck(lambda t: t[index], x)


def test_gather_with_a_tensor_index():
    values = np.arange(6.0).reshape(3, 2)
    x = leaf(values)
    ids = tl.tensor([2, 2, 0])
    out = x[ids]
    np.testing.assert_array_equal(out.numpy(), values[[2, 2, 0]])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[1.0, 1.0], [0.0, 0.0], [2.0, 2.0]])


@fixture_ok
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_integer_array_indexing_random(data, seed, device):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    result_shape = hnp.array_shapes(min_dims=1, max_dims=2)
    index = data.draw(hnp.integer_array_indices(shape, result_shape=result_shape))
    values = np.random.default_rng(seed).standard_normal(shape)
    x = leaf(values, device)
    np.testing.assert_array_equal(x[index].numpy(), values[index])
    assert tl.gradcheck(lambda t: t[index], x)


def test_boolean_mask(device):
    rng = np.random.default_rng(15)
    values = rng.standard_normal((3, 4))
    mask = rng.random((3, 4)) < 0.5
    x = leaf(values, device)
    mask_on_device = const(mask, device)
    out = x[mask_on_device]
    np.testing.assert_array_equal(out.numpy(), values[mask])
    g = rng.standard_normal(out.shape)
    out.backward(const(g, device))
    expected = np.zeros((3, 4))
    expected[mask] = g
    np.testing.assert_array_equal(x.grad.numpy(), expected)
    assert tl.gradcheck(lambda t: t[mask_on_device], x)
    rows = const(np.array([True, False, True]), device)  # a mask on the first axis only
    assert tl.gradcheck(lambda t: t[rows], x)


# --------------------------------------------------------------------------------------------------
# concatenate, stack, split
# --------------------------------------------------------------------------------------------------


@st.composite
def pieces_along_an_axis(draw):
    """Shapes of 1-3 tensors that agree except along ``axis``."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    lengths = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    shapes = []
    for length in lengths:
        piece = list(shape)
        piece[axis] = length
        shapes.append(tuple(piece))
    return shapes, axis


@fixture_ok
@given(pieces=pieces_along_an_axis(), seed=st.integers(0, 2**32 - 1))
def test_concatenate(pieces, seed, device):
    shapes, axis = pieces
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in shapes]
    xs = [leaf(a, device) for a in arrays]
    np.testing.assert_array_equal(tl.concatenate(xs, axis=axis).numpy(),
                                  np.concatenate(arrays, axis=axis))
    assert tl.gradcheck(lambda *ts: tl.concatenate(ts, axis=axis), *xs)


@fixture_ok
@given(
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3),
    count=st.integers(1, 3),
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
)
def test_stack(shape, count, data, seed, device):
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape) for _ in range(count)]
    xs = [leaf(a, device) for a in arrays]
    np.testing.assert_array_equal(tl.stack(xs, axis=axis).numpy(), np.stack(arrays, axis=axis))
    assert tl.gradcheck(lambda *ts: tl.stack(ts, axis=axis), *xs)


@fixture_ok
@given(
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3),
    sections=st.integers(1, 3),
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_into_sections(shape, sections, data, seed, device):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    shape = list(shape)
    shape[axis] *= sections  # make the axis divisible
    values = np.random.default_rng(seed).standard_normal(shape)
    x = leaf(values, device)
    pieces = tl.split(x, sections, axis=axis)
    assert len(pieces) == sections
    for ours, theirs in zip(pieces, np.split(values, sections, axis=axis)):
        np.testing.assert_array_equal(ours.numpy(), theirs)
    assert tl.gradcheck(lambda t: tl.split(t, sections, axis=axis), x)


@fixture_ok
@given(
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5),
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_at_indices(shape, data, seed, device):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    length = shape[axis]
    cuts = sorted(data.draw(st.lists(st.integers(0, length), max_size=3)))
    values = np.random.default_rng(seed).standard_normal(shape)
    x = leaf(values, device)
    pieces = tl.split(x, cuts, axis=axis)
    expected = np.split(values, cuts, axis=axis)
    assert len(pieces) == len(expected)
    for ours, theirs in zip(pieces, expected):
        np.testing.assert_array_equal(ours.numpy(), theirs)
    assert tl.gradcheck(lambda t: tl.split(t, cuts, axis=axis), x)


def test_error_stack_axis_out_of_range():
    with pytest.raises(ValueError, match="stack: axis 3 is out of bounds for array of dimension 3"):
        tl.stack([tl.ones(2, 2), tl.ones(2, 2)], axis=3)


def test_split_pieces_fill_the_whole_gradient():
    """Using only some pieces: the unused piece's part of dL/dx is zero, the used parts are their
    cotangents."""
    x = leaf(np.arange(12.0).reshape(3, 4))
    left, middle, right = tl.split(x, [1, 3], axis=1)
    (left * 2).sum().backward(retain_graph=True)
    (right * 5).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[2, 0, 0, 5]] * 3)
    assert middle.shape == (3, 2)


# --------------------------------------------------------------------------------------------------
# unbroadcast: the one place where broadcasting is undone (eq. 2.3)
# --------------------------------------------------------------------------------------------------

UNBROADCAST_CASES = [  # (gradient shape, target shape, the hand-written sum)
    ((K, M, N), (), lambda g: g.sum()),
    ((K, M, N), (N,), lambda g: g.sum(axis=(0, 1))),
    ((K, M, N), (1, N), lambda g: g.sum(axis=(0, 1))[None, :]),
    ((K, M, N), (M, 1), lambda g: g.sum(axis=(0, 2))[:, None]),
    ((K, M, N), (M, N), lambda g: g.sum(axis=0)),
    ((K, M, N), (K, 1, N), lambda g: g.sum(axis=1, keepdims=True)),
    ((K, M, N), (K, M, 1), lambda g: g.sum(axis=2)[:, :, None]),
    ((K, M, N), (1, 1, 1), lambda g: g.sum().reshape(1, 1, 1)),
    ((M, N), (M, 1), lambda g: g.sum(axis=1)[:, None]),
    ((M, N), (), lambda g: g.sum()),
    ((M, 1), (1,), lambda g: g.sum(axis=0)),
    ((K, M, N), (K, M, N), lambda g: g),
]


@pytest.mark.parametrize("grad_shape, shape, hand_sum", UNBROADCAST_CASES,
                         ids=lambda v: str(v)[:14])
def test_unbroadcast_is_the_sum_over_broadcast_axes(grad_shape, shape, hand_sum):
    # eq. 2.3
    g = np.random.default_rng(16).standard_normal(grad_shape)
    reduced = unbroadcast(g, shape)
    assert reduced.shape == shape
    np.testing.assert_allclose(reduced, hand_sum(g), rtol=1e-13)


@given(
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=3),
    seed=st.integers(0, 99),
)
def test_unbroadcast_inverts_broadcast_to(shapes, seed):
    """<unbroadcast(g), x> == <g, broadcast_to(x)>: unbroadcast is the adjoint of broadcasting."""
    shape = shapes.input_shapes[0]
    rng = np.random.default_rng(seed)
    g, x = rng.standard_normal(shapes.result_shape), rng.standard_normal(shape)
    reduced = unbroadcast(g, shape)
    assert reduced.shape == shape
    adjoint = np.sum(g * np.broadcast_to(x, g.shape))
    assert np.sum(reduced * x) == pytest.approx(adjoint, rel=1e-12, abs=1e-12)


# --------------------------------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------------------------------

MASK = np.array([[True, False, True], [False, True, True]])
EVERY_OP = {  # name: function of two (2, 3) tensors a, b with b > 0
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "neg": lambda a, b: -a,
    "pow2": lambda a, b: a ** 2,
    "pow-half": lambda a, b: b ** 0.5,
    "scalar-ops": lambda a, b: 2 * a + 1 - a / 3 + 1 / b - 0.5 * b,
    "exp": lambda a, b: a.exp(),
    "log": lambda a, b: b.log(),
    "sqrt": lambda a, b: b.sqrt(),
    "tanh": lambda a, b: a.tanh(),
    "relu": lambda a, b: a.relu(),
    "sigmoid": lambda a, b: a.sigmoid(),
    "erf": lambda a, b: tl.erf(a),
    "maximum": lambda a, b: tl.maximum(a, b),
    "maximum-scalar": lambda a, b: tl.maximum(a, 0.0),
    "where": lambda a, b: tl.where(MASK, a, b),
    "where-scalar": lambda a, b: tl.where(MASK, a, 0.0),
    "sum": lambda a, b: a.sum(axis=1),
    "mean": lambda a, b: a.mean(axis=0, keepdims=True),
    "max": lambda a, b: a.max(),
    "matmul": lambda a, b: a @ b.T,
    "matmul-vector": lambda a, b: a[0] @ b[1],
    "reshape": lambda a, b: a.reshape(3, 2),
    "transpose": lambda a, b: a.transpose(1, 0),
    "T": lambda a, b: a.T,
    "slice": lambda a, b: a[:, ::-2],
    "gather": lambda a, b: a[[1, 1, 0]],
    "mask": lambda a, b: a[MASK],
    "concatenate": lambda a, b: tl.concatenate([a, b], axis=1),
    "stack": lambda a, b: tl.stack([a, b], axis=-1),
    "split": lambda a, b: tl.split(a, 3, axis=1)[1],
    "to-cpu": lambda a, b: a.to("cpu") * b,
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(EVERY_OP))
def test_dtype_is_kept_by_every_op_and_its_gradient(name, dtype):
    rng = np.random.default_rng(17)
    a = tl.tensor(rng.standard_normal((2, 3)).astype(dtype), requires_grad=True)
    b = tl.tensor(rng.uniform(0.5, 2.0, (2, 3)).astype(dtype), requires_grad=True)
    out = EVERY_OP[name](a, b)
    assert out.dtype == dtype, f"{name} gave {out.dtype}"
    out.backward(np.ones(out.shape, dtype=dtype))
    touched = [t for t in (a, b) if t.grad is not None]
    assert touched, f"{name}: no input received a gradient"
    for t in touched:
        assert t.grad.dtype == dtype, (
            f"{name}: gradient dtype {t.grad.dtype} for a {dtype.__name__} input")
    # the float32 result agrees with the float64 computation to float32 precision
    a64, b64 = tl.tensor(a.numpy().astype(np.float64)), tl.tensor(b.numpy().astype(np.float64))
    np.testing.assert_allclose(out.numpy(), EVERY_OP[name](a64, b64).numpy(), rtol=2e-6, atol=1e-6)


def test_float32_grad_dtype_survives_accumulation_with_float64_constant():
    """x (float32) meets a float64 NumPy array, so the output is float64 (NumPy promotion) and so is
    the gradient flowing back. x.grad must still be float32 after the second backward adds to the
    first."""
    x = tl.tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    scale = np.array([1.0, 2.0, 3.0])  # float64
    (x * scale).sum().backward()
    assert x.grad.dtype == np.float32
    (x * scale).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0, 6.0])


# --------------------------------------------------------------------------------------------------
# NumPy interoperability and constructors
# --------------------------------------------------------------------------------------------------


def test_python_scalars_and_numpy_arrays_mix_like_numpy():
    x = tl.tensor([1.0, 2.0, 4.0], requires_grad=True)
    for result, expected in [
        (2 * x, [2.0, 4.0, 8.0]),
        (x * 2, [2.0, 4.0, 8.0]),
        (x + np.ones(3), [2.0, 3.0, 5.0]),
        (np.ones(3) + x, [2.0, 3.0, 5.0]),
        (np.ones(3) - x, [0.0, -1.0, -3.0]),
        (np.full(3, 2.0) * x, [2.0, 4.0, 8.0]),
        (1 / x, [1.0, 0.5, 0.25]),
        (1 - x, [0.0, -1.0, -3.0]),
        (x / 2, [0.5, 1.0, 2.0]),
        (np.eye(3) @ x, [1.0, 2.0, 4.0]),
    ]:
        assert isinstance(result, tl.Tensor)
        assert result.requires_grad
        np.testing.assert_array_equal(result.numpy(), expected)
    assert (2 * x).dtype == np.float32 and (1 / x).dtype == np.float32  # Python numbers are weak
    (1 / x).sum().backward()  # d(1/x)/dx = -1/x^2
    np.testing.assert_array_equal(x.grad.numpy(), [-1.0, -0.25, -0.0625])


def test_comparisons_give_masks():
    x = tl.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    for mask, expected in [(x > 0, [0, 0, 1]), (x >= 0, [0, 1, 1]), (x < 0, [1, 0, 0]),
                           (x <= 0, [1, 1, 0])]:
        assert mask.dtype == bool and not mask.requires_grad
        np.testing.assert_array_equal(mask.numpy(), np.array(expected, dtype=bool))


def test_tensor_constructor_dtypes():
    assert tl.tensor([1.0, 2.0]).dtype == np.float32
    assert tl.tensor(1.5).dtype == np.float32 and tl.tensor(1.5).shape == ()
    assert tl.tensor([[1.0, 2], [3, 4]]).dtype == np.float32
    assert tl.tensor([1, 2, 3]).dtype == np.int64
    assert tl.tensor(7).dtype == np.int64
    assert tl.tensor(np.ones(2, dtype=np.float64)).dtype == np.float64  # an array keeps its dtype
    assert tl.tensor(np.ones(2, dtype=np.float16)).dtype == np.float16
    assert tl.tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert tl.tensor([True, False]).dtype == bool
    t = tl.tensor([1.0, 2.0], requires_grad=True)
    assert t.requires_grad and t.is_leaf
    assert tl.tensor(t).dtype == np.float32 and not tl.tensor(t).requires_grad


def test_factories():
    z = tl.zeros(2, 3)
    assert z.shape == (2, 3) and z.dtype == np.float32 and not z.numpy().any()
    o = tl.ones((2, 3), dtype=np.float64, requires_grad=True)
    assert o.shape == (2, 3) and o.dtype == np.float64 and o.requires_grad
    np.testing.assert_array_equal(o.numpy(), 1.0)
    np.testing.assert_array_equal(tl.arange(5).numpy(), [0, 1, 2, 3, 4])
    assert tl.arange(5).dtype == np.int64
    np.testing.assert_array_equal(tl.arange(1, 7, 2).numpy(), [1, 3, 5])
    np.testing.assert_array_equal(tl.arange(0, 1, 0.25, dtype=np.float32).numpy(),
                                  [0, 0.25, 0.5, 0.75])


def test_randn_is_reproducible_and_standard_normal():
    a = tl.randn(100, 100, rng=np.random.default_rng(0))
    b = tl.randn((100, 100), rng=np.random.default_rng(0))
    assert a.dtype == np.float32 and a.shape == (100, 100)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert abs(a.numpy().mean()) < 0.03 and abs(a.numpy().std() - 1) < 0.03
    tl.manual_seed(123)
    c = tl.randn(4, dtype=np.float64)
    tl.manual_seed(123)
    d = tl.randn(4, dtype=np.float64, requires_grad=True)
    assert c.dtype == np.float64 and d.requires_grad
    np.testing.assert_array_equal(c.numpy(), d.numpy())


def test_manual_seed_makes_spawn_rng_reproducible():
    """spawn_rng() seeds a fresh generator from the one manual_seed seeds; spawn_rng(parent) from
    parent. Same seed: the same sequence of generators, so every layer's own stream is fixed too."""
    def spawned_draws():
        return [tl.spawn_rng().standard_normal(3) for _ in range(3)]

    tl.manual_seed(7)
    first = spawned_draws()
    tl.manual_seed(7)
    again = spawned_draws()
    tl.manual_seed(8)
    other = spawned_draws()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first[0], first[1])  # each spawned generator has its own stream
    assert not np.array_equal(first[0], other[0])
    parent_draws = [tl.spawn_rng(np.random.default_rng(3)).integers(1000, size=4) for _ in range(2)]
    np.testing.assert_array_equal(*parent_draws)


def test_numpy_item_T_and_to_cpu():
    values = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    x = tl.tensor(values, requires_grad=True)
    host = x.numpy()
    assert isinstance(host, np.ndarray)
    np.testing.assert_array_equal(host, values)
    assert x.sum().item() == 15.0 and isinstance(x.sum().item(), float)
    np.testing.assert_array_equal(x.T.numpy(), values.T)
    assert x.T.shape == (3, 2)
    assert x.to("cpu") is x and x.device == "cpu"
    assert (x.shape, x.ndim, x.size, len(x)) == ((2, 3), 2, 6, 2)
    x.T.backward(np.arange(6.0, dtype=np.float32).reshape(3, 2))
    np.testing.assert_array_equal(x.grad.numpy(), np.arange(6.0).reshape(3, 2).T)


def test_astype_is_differentiable():
    x = tl.tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    y = x.astype(np.float64)
    assert y.dtype == np.float64
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])


def test_gradcheck_on_every_device(device):
    """to(device) round trip is differentiable; gradcheck reads device gradients via to_numpy."""
    rng = np.random.default_rng(18)
    a, b = leaf(rng.standard_normal((3, 2)), device), leaf(rng.standard_normal((2, 3)), device)
    assert a.device == device and a.is_leaf
    assert tl.gradcheck(lambda p, q: (p @ q).tanh().sum(axis=0) * q[0], a, b)
    host = leaf(rng.standard_normal(3))
    assert tl.gradcheck(lambda t: t.to(device).exp().to("cpu"), host)
