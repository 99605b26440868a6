"""Chapter 02: where a Tensor uses a NumPy name, it behaves exactly as NumPy does, errors included.

NumPy is the oracle: each test runs the same call on an array and on a tensor, on shapes and axes
from hypothesis (negative, out-of-range and repeated axes included), and asserts the same values
or an error of NumPy's type (``AxisError``, ``ValueError``, ``TypeError``). Then the rules NumPy
does not define: the gradient of ``x ** 0``, the tie rules of ``max`` and ``maximum``, tensors
that refuse NumPy functions, ``tl.tensor`` copying and ``tl.from_numpy`` sharing, and an op object
applied twice.
"""

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from numpy.exceptions import AxisError

import tinyllm as tl
from tinyllm.ops import Mul
from tinyllm.tensor import apply

pytestmark = pytest.mark.ch02

SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=3)


def outcome(call, *args):
    """("ok", value as an array) or ("error", the exception) of call(*args)."""
    try:
        value = call(*args)
    except (TypeError, ValueError, IndexError) as error:
        return "error", error
    if isinstance(value, list):  # the pieces of split
        return "ok", [np.asarray(v.numpy() if isinstance(v, tl.Tensor) else v) for v in value]
    return "ok", np.asarray(value.numpy() if isinstance(value, tl.Tensor) else value)


def assert_same_outcome(ours, theirs):
    """Same values, or an error of NumPy's type (AxisError is a ValueError and an IndexError)."""
    (our_kind, our_value), (their_kind, their_value) = ours, theirs
    assert our_kind == their_kind, f"tinyllm gave {ours}, NumPy {theirs}"
    if our_kind == "error":
        assert isinstance(our_value, type(their_value)), f"{our_value!r} vs {their_value!r}"
        assert isinstance(our_value, AxisError) == isinstance(their_value, AxisError)
    elif isinstance(their_value, list):
        assert len(our_value) == len(their_value)
        for mine, reference in zip(our_value, their_value):
            np.testing.assert_allclose(mine, reference, rtol=1e-13)
    else:
        assert our_value.shape == their_value.shape and our_value.dtype == their_value.dtype
        np.testing.assert_allclose(our_value, their_value, rtol=1e-13)


@st.composite
def shape_and_any_axis(draw, extra_axes: int = 0):
    """A shape and an axis for it that may be None, an int, or a tuple with repeats, in or out of
    range (from -ndim - 2 to ndim + 1, for ops that make ``extra_axes`` new axes)."""
    shape = draw(SHAPES)
    ndim = len(shape) + extra_axes
    one = st.integers(-ndim - 2, ndim + 1)
    return shape, draw(st.one_of(st.none(), one, st.lists(one, max_size=4).map(tuple)))


def values(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# --------------------------------------------------------------------------------------------------
# 1. Axes: checked as NumPy checks them
# --------------------------------------------------------------------------------------------------

REDUCTIONS = ["sum", "mean", "max", "any", "all"]


@pytest.mark.parametrize("name", REDUCTIONS)
@given(shape_axis=shape_and_any_axis(), keepdims=st.booleans())
def test_reductions_check_axes_as_numpy(name, shape_axis, keepdims):
    shape, axis = shape_axis
    # NumPy's legacy rule lets a 0-d array be reduced over the int axis 0 or -1; tinyllm's
    # differentiable reductions say that a 0-d tensor has no axis (the test below)
    assume(not (shape == () and isinstance(axis, int) and name in ("sum", "mean", "max")))
    array = values(shape)
    ours = outcome(lambda: getattr(tl.tensor(array), name)(axis=axis, keepdims=keepdims))
    theirs = outcome(lambda: getattr(array, name)(axis=axis, keepdims=keepdims))
    assert_same_outcome(ours, theirs)


def test_the_issue_cases_raise_numpys_errors():
    t = tl.tensor(np.arange(6.0).reshape(2, 3))
    with pytest.raises(AxisError, match="sum: axis 2 is out of bounds for array of dimension 2"):
        t.sum(axis=2)  # it used to return the sum over axis 0 (2 % 2)
    with pytest.raises(AxisError, match=r"axis -3 .* in range\(-2, 2\)"):
        t.max(axis=-3)
    with pytest.raises(ValueError, match=r"repeated axis in \(0, -2\)"):
        t.mean(axis=(0, -2))
    with pytest.raises(TypeError):
        t.sum(axis=1.0)
    with pytest.raises(TypeError, match="an axis must be an integer, got True"):
        t.sum(axis=True)  # not axis 1


def test_a_0d_tensor_has_no_axis():
    """A documented difference: NumPy reduces a 0-d array over axis 0 (a legacy rule that it does
    not apply to axis=(0,)); tinyllm refuses both, as NumPy's normalize_axis_tuple does."""
    with pytest.raises(AxisError, match=r"range\(0, 0\)"):
        tl.tensor(2.0).sum(axis=0)
    with pytest.raises(AxisError):
        np.ones(()).sum(axis=(0,))
    np.testing.assert_array_equal(tl.tensor(2.0).sum(axis=()).numpy(), 2.0)


@given(shape_axis=shape_and_any_axis(), keepdims=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_mean_is_sum_over_n_with_its_gradient(shape_axis, keepdims, seed):
    """mean = sum / n: the values of np.mean and dL/dx = g / n (gradcheck) on every valid axis."""
    shape, axis = shape_axis
    array = values(shape, seed)
    try:
        expected = array.mean(axis=axis, keepdims=keepdims)
    except (ValueError, TypeError):
        return  # invalid axes: the test above
    assume(shape != () or axis is None or axis == ())
    x = tl.tensor(array, requires_grad=True)
    np.testing.assert_allclose(x.mean(axis=axis, keepdims=keepdims).numpy(), expected, rtol=1e-13)
    assert tl.gradcheck(lambda t: t.mean(axis=axis, keepdims=keepdims), x)


@st.composite
def transpose_arguments(draw):
    """A shape and the arguments of transpose: none, None, a permutation, or any tuple of axes."""
    shape = draw(SHAPES)
    ndim = len(shape)
    permutation = st.permutations(range(ndim)).map(tuple)
    anything = st.lists(st.integers(-ndim - 1, ndim + 1), max_size=ndim + 1).map(tuple)
    return shape, draw(st.one_of(st.just("no argument"), st.none(), permutation, anything))


@given(shape_axes=transpose_arguments(), as_one_tuple=st.booleans())
@example(shape_axes=((1, 1, 1), (0, 0, 3)), as_one_tuple=True)  # the repeat comes first: ValueError
@example(shape_axes=((1, 1, 1), (0, 3, 0)), as_one_tuple=True)  # the bad axis comes first
def test_transpose_as_numpy(shape_axes, as_one_tuple):
    shape, axes = shape_axes
    array = values(shape)
    if axes == "no argument":
        ours = outcome(lambda: tl.tensor(array).transpose())
        theirs = outcome(lambda: array.transpose())
    elif axes is None or as_one_tuple:  # t.transpose(None), t.transpose((1, 0))
        ours = outcome(lambda: tl.tensor(array).transpose(axes))
        theirs = outcome(lambda: array.transpose(axes))
    else:  # t.transpose(1, 0)
        ours = outcome(lambda: tl.tensor(array).transpose(*axes))
        theirs = outcome(lambda: array.transpose(*axes))
    assert_same_outcome(ours, theirs)


def test_transpose_none_and_T_reverse_the_axes_with_their_gradient():
    array = values((2, 3, 4))
    x = tl.tensor(array, requires_grad=True)
    for reversed_x in (x.transpose(None), x.transpose(), x.T):
        np.testing.assert_array_equal(reversed_x.numpy(), array.transpose())
    assert tl.gradcheck(lambda t: t.transpose(None), x)
    with pytest.raises(ValueError, match="axes don't match array"):
        x.transpose(())  # an empty tuple is not "no argument" (NumPy: the same error)
    with pytest.raises(AxisError, match="not a permutation of the 3 axes"):
        x.transpose(0, 1, 3)


@given(shape_axis=shape_and_any_axis(), count=st.integers(1, 3))
def test_concatenate_checks_axes_as_numpy(shape_axis, count):
    shape, axis = shape_axis
    assume(not isinstance(axis, tuple))
    arrays = [values(shape, seed) for seed in range(count)]
    ours = outcome(lambda: tl.concatenate([tl.tensor(a) for a in arrays], axis=axis))
    theirs = outcome(lambda: np.concatenate(arrays, axis=axis))
    if shape == () and axis is not None:  # NumPy: "zero-dimensional arrays cannot be
        assert ours[0] == theirs[0] == "error"  # concatenated"; tinyllm: a 0-d tensor has no axis
        assert isinstance(ours[1], ValueError) and isinstance(theirs[1], ValueError)
        return
    assert_same_outcome(ours, theirs)


@settings(suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(shape_axis=shape_and_any_axis(extra_axes=1), count=st.integers(1, 3))
def test_stack_checks_axes_as_numpy(shape_axis, count):
    shape, axis = shape_axis
    assume(isinstance(axis, int))
    arrays = [values(shape, seed) for seed in range(count)]
    ours = outcome(lambda: tl.stack([tl.tensor(a) for a in arrays], axis=axis))
    assert_same_outcome(ours, outcome(lambda: np.stack(arrays, axis=axis)))


@settings(suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(shape_axis=shape_and_any_axis(), sections=st.integers(1, 3))
def test_split_checks_axes_as_numpy(shape_axis, sections):
    """np.split raises IndexError for an axis out of range; tinyllm's AxisError is an IndexError."""
    shape, axis = shape_axis
    assume(isinstance(axis, int) and shape != ())
    array = values(shape)
    ours = outcome(lambda: tl.split(tl.tensor(array), sections, axis=axis))
    theirs = outcome(lambda: np.split(array, sections, axis=axis))
    assert ours[0] == theirs[0], f"tinyllm gave {ours}, NumPy {theirs}"
    if ours[0] == "error":
        assert isinstance(ours[1], type(theirs[1]))
    else:
        assert_same_outcome(ours, theirs)


def test_concatenate_with_axis_none_flattens_and_an_empty_list_is_refused():
    a, b = values((2, 3)), values((3,), seed=1)
    x = tl.tensor(a, requires_grad=True)
    joined = tl.concatenate([x, tl.tensor(b)], axis=None)
    np.testing.assert_array_equal(joined.numpy(), np.concatenate([a, b], axis=None))
    assert tl.gradcheck(lambda t: tl.concatenate([t, t], axis=None), x)
    with pytest.raises(ValueError, match="at least one tensor"):
        tl.concatenate([])
    with pytest.raises(ValueError, match="at least one tensor"):
        tl.stack([])
    with pytest.raises(ValueError, match="number of sections must be positive"):
        tl.split(x, 0)


# --------------------------------------------------------------------------------------------------
# 2. x ** 0 has gradient 0, also at x = 0
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("zero", [0, 0.0, np.float64(0.0), np.int64(0)], ids=repr)
def test_power_zero_has_gradient_zero_everywhere(zero):
    x = tl.tensor([0.0, -0.0, 1.5, -2.0], dtype=np.float64, requires_grad=True)
    y = x ** zero
    np.testing.assert_array_equal(y.numpy(), np.array([0.0, -0.0, 1.5, -2.0]) ** zero)
    y.backward(np.array([1.0, -3.0, 2.0, 5.0]))
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros(4))  # no NaN at 0
    assert tl.gradcheck(lambda t: t ** zero, x)


@given(exponent=st.sampled_from([-2, -1, 0.5, 1, 2, 3, 2.5]), seed=st.integers(0, 2**32 - 1))
def test_power_rule_elsewhere_unchanged(exponent, seed):
    array = np.random.default_rng(seed).uniform(0.5, 2.0, (3, 2))
    x = tl.tensor(array, requires_grad=True)
    (x ** exponent).backward(np.ones((3, 2)))
    np.testing.assert_allclose(x.grad.numpy(), exponent * array ** (exponent - 1), rtol=1e-13)
    assert tl.gradcheck(lambda t: t ** exponent, tl.tensor(array, requires_grad=True))


def test_power_needs_a_number_exponent():
    """The engine has no tensor exponent (so no gradient with respect to it): refused clearly."""
    x = tl.tensor([2.0, 3.0], requires_grad=True)
    for exponent in (tl.tensor([2.0, 1.0]), np.array([2.0, 1.0]), [2.0, 1.0]):
        with pytest.raises(TypeError, match=r"Python number as exponent.*exp\(y \* log\(x\)\)"):
            x ** exponent


# --------------------------------------------------------------------------------------------------
# 4. Comparisons, hash, bool, in, len
# --------------------------------------------------------------------------------------------------

COMPARISONS = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}
SMALL_INTEGERS = st.integers(-2, 2).map(float)  # few values: many ties


@pytest.mark.parametrize("name", list(COMPARISONS))
@given(data=st.data())
def test_comparisons_are_elementwise_as_numpy(name, data):
    compare = COMPARISONS[name]
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3))
    a = data.draw(hnp.arrays(np.float64, shapes.input_shapes[0], elements=SMALL_INTEGERS))
    b = data.draw(hnp.arrays(np.float64, shapes.input_shapes[1], elements=SMALL_INTEGERS))
    x, y = tl.tensor(a, requires_grad=True), tl.tensor(b)
    expected = compare(a, b)
    for result in (compare(x, y), compare(x, b)):  # tensor with tensor, tensor with array
        assert isinstance(result, tl.Tensor) and result.dtype == bool
        assert not result.requires_grad and result.is_leaf  # outside the graph
        np.testing.assert_array_equal(result.numpy(), expected)
    reflected = compare(a, y)  # ndarray on the left: NumPy hands the comparison to the Tensor
    assert isinstance(reflected, tl.Tensor)
    np.testing.assert_array_equal(reflected.numpy(), expected)
    number = compare(x, 1.0)
    np.testing.assert_array_equal(number.numpy(), compare(a, 1.0))


def test_tensors_hash_by_identity():
    a, b = tl.tensor([1.0, 2.0]), tl.tensor([1.0, 2.0])
    assert hash(a) == hash(a) and hash(a) != hash(b)
    table = {a: "a", b: "b"}  # equal values, two keys: a dict looks tensors up by identity
    assert table[a] == "a" and table[b] == "b" and len({a, b, a}) == 2
    assert (a == b).numpy().all()  # == itself compares values
    assert a in [a, b]  # a list compares by identity first...
    with pytest.raises(ValueError, match="ambiguous"):
        b in [a, b]  # ... then with ==, elementwise: as for NumPy arrays and PyTorch
    with pytest.raises(ValueError, match="ambiguous"):
        np.ones(2) in [np.zeros(2), np.ones(2)]  # NumPy: the same error
    assert any(p is b for p in [a, b])  # what library code writes to find a tensor in a list


@given(array=hnp.arrays(np.float64, SHAPES | st.just((0,)), elements=SMALL_INTEGERS))
def test_bool_len_and_in_as_numpy(array):
    t = tl.tensor(array)
    assert_same_outcome(outcome(lambda: bool(t)), outcome(lambda: bool(array)))
    assert_same_outcome(outcome(lambda: len(t)), outcome(lambda: len(array)))
    for value in (0.0, 1.0, 5.0, tl.tensor(1.0)):
        reference = value.item() if isinstance(value, tl.Tensor) else value
        assert (value in t) == (reference in array) == bool((array == reference).any())


def test_bool_names_any_and_all():
    t = tl.tensor([0.0, 1.0])
    with pytest.raises(ValueError, match=r"more than one element is ambiguous.*any\(\).*all\(\)"):
        bool(t)
    assert bool(t.any()) and not bool(t.all())
    assert bool(tl.tensor([[3.0]])) and not bool(tl.tensor(0.0))
    with pytest.raises(TypeError, match="unsized"):
        len(tl.tensor(1.0))


# --------------------------------------------------------------------------------------------------
# 5. NumPy functions refuse tensors; operators with NumPy values give tensors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call, match", [
    (lambda t: np.sum(t), r"numpy.sum does not take a tinyllm Tensor: use t.sum"),
    (lambda t: np.mean(t, axis=0), r"use t.mean"),
    (lambda t: np.transpose(t), r"use t.transpose"),
    (lambda t: np.concatenate([t, t]), r"numpy.concatenate .* use tl.concatenate"),
    (lambda t: np.stack([t, t]), r"use tl.stack"),
    (lambda t: np.where(t > 0, t, 0), r"use tl.where"),
    (lambda t: np.linalg.norm(t), r"numpy.linalg.norm .* tinyllm has no norm.*t.numpy\(\)"),
    (lambda t: np.exp(t), r"np.exp does not take a tinyllm Tensor: use t.exp"),
    (lambda t: np.tanh(t), r"use t.tanh"),
    (lambda t: np.maximum(t, 0.0), r"np.maximum .* use tl.maximum"),
    (lambda t: np.add(np.ones(2), t, out=np.ones(2)), r"np.add\(\.\.\., out=\.\.\.\)"),
    (lambda t: np.add.reduce(t), r"np.add.reduce does not take a tinyllm Tensor"),
    (lambda t: np.power(2.0, t), r"np.power .* t.numpy\(\)"),
], ids=["sum", "mean", "transpose", "concatenate", "stack", "where", "norm", "exp", "tanh",
        "maximum", "add-out", "reduce", "power"])
def test_numpy_functions_refuse_tensors(call, match):
    """No more object arrays of 0-d tensors: a TypeError that names the tinyllm function, for
    NumPy's array functions and for every ufunc except ``array <op> t`` (numpy_protocol.py)."""
    with pytest.raises(TypeError, match=match):
        call(tl.tensor([1.0, -2.0], requires_grad=True))


def test_operators_with_numpy_values_give_tensors():
    x = tl.tensor([1.0, 2.0, 4.0], requires_grad=True)
    a = np.array([2.0, 1.0, 0.5])
    for result, expected in [
        (np.float64(2.0) * x, [2.0, 4.0, 8.0]),
        (np.float32(2.0) + x, [3.0, 4.0, 6.0]),
        (a * x, [2.0, 2.0, 2.0]),
        (a - x, [1.0, -1.0, -3.5]),
        (a / x, [2.0, 0.5, 0.125]),
        (a @ x, 6.0),
        (np.add(a, x), [3.0, 3.0, 4.5]),  # what a + x calls: the same as x.__radd__(a)
    ]:
        assert isinstance(result, tl.Tensor) and result.requires_grad
        np.testing.assert_allclose(result.numpy(), expected)
    (np.float64(3.0) * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0, 3.0])
    assert (np.float64(3.0) * x).dtype == np.float32  # a NumPy float64 scalar is weak here
    for result, expected in [(a < x, [False, True, True]), (a >= x, [True, False, False]),
                             (a == x, [False, False, False]), (a != x, [True, True, True])]:
        assert isinstance(result, tl.Tensor) and not result.requires_grad
        np.testing.assert_array_equal(result.numpy(), expected)
    target = np.ones(3)
    with pytest.raises(TypeError, match="cannot write into or from a tinyllm Tensor"):
        target += x  # an array cannot hold a tensor in place: write target = target + x


def test_asarray_of_a_tensor_without_gradient():
    """np.asarray(t) is t.numpy() when t needs no gradient; refused when it does (as PyTorch)."""
    t = tl.tensor([1.0, 2.0])
    np.testing.assert_array_equal(np.asarray(t), [1.0, 2.0])
    assert np.array(t, dtype=np.float64).dtype == np.float64
    with pytest.raises(TypeError, match=r"requires grad: call t.detach\(\).numpy\(\)"):
        np.asarray(tl.tensor([1.0], requires_grad=True))
    np.testing.assert_array_equal(np.asarray(tl.tensor([1.0], requires_grad=True).detach()), [1.0])


# --------------------------------------------------------------------------------------------------
# 6. tl.tensor copies; tl.from_numpy shares
# --------------------------------------------------------------------------------------------------


@given(array=hnp.arrays(hnp.floating_dtypes(sizes=(32, 64)), SHAPES))
def test_tensor_copies_its_input(array):
    t = tl.tensor(array)
    assert t.dtype == array.dtype and not np.shares_memory(t.numpy(), array)
    snapshot = t.numpy().copy()
    array[...] = 7.0
    np.testing.assert_array_equal(t.numpy(), snapshot)
    u = tl.tensor(t)  # from a tensor: a copy too
    assert not np.shares_memory(u.numpy(), t.numpy())


def test_from_numpy_shares_memory():
    array = np.zeros(3, dtype=np.float64)
    t = tl.from_numpy(array, requires_grad=True)
    assert t.data is array and t.dtype == np.float64
    array[0] = 5.0
    assert t.numpy()[0] == 5.0  # one memory: writing the array changes the tensor
    (t * t).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), [10.0, 0.0, 0.0])
    with pytest.raises(TypeError, match=r"from_numpy expects a NumPy array, got list.*tl.tensor"):
        tl.from_numpy([1.0, 2.0])


# --------------------------------------------------------------------------------------------------
# 7. An op object is one node
# --------------------------------------------------------------------------------------------------


def test_reusing_a_function_instance_is_refused():
    a, b = tl.tensor([2.0], requires_grad=True), tl.tensor([3.0], requires_grad=True)
    mul = Mul()
    y = apply(mul, a, b)
    with pytest.raises(RuntimeError, match="this Mul was already applied.*make a new one"):
        apply(mul, b, b)  # would overwrite a and b, which y's backward needs
    y.backward(np.ones(1))
    assert a.grad.item() == 3.0 and b.grad.item() == 2.0  # the first use is intact
    with pytest.raises(RuntimeError, match="already applied"):
        apply(mul, a, b)  # also after its backward released it
    unrecorded = Mul()
    with tl.no_grad():
        apply(unrecorded, a, b)
    with pytest.raises(RuntimeError, match="already applied"):
        apply(unrecorded, a, b)


# --------------------------------------------------------------------------------------------------
# 8. Tie rules of max and maximum
# --------------------------------------------------------------------------------------------------


@given(data=st.data())
def test_max_shares_the_gradient_equally_among_ties(data):
    # eq. 2.4: each of k tied entries gets g / k
    """The documented rule (ops.Max): the k entries equal to the max each get g / k."""
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
    array = data.draw(hnp.arrays(np.float64, shape, elements=st.integers(0, 2).map(float)))
    axis = data.draw(st.none() | st.integers(-len(shape), len(shape) - 1))
    g = data.draw(hnp.arrays(np.float64, np.max(array, axis=axis).shape,
                             elements=st.floats(-3, 3)))
    x = tl.tensor(array, requires_grad=True)
    x.max(axis=axis).backward(g)
    is_max = array == np.max(array, axis=axis, keepdims=True)
    per_tie = np.expand_dims(g, axis) if axis is not None else g
    expected = is_max * per_tie / is_max.sum(axis=axis, keepdims=True)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-14)


@given(data=st.data())
def test_maximum_splits_a_tie_half_half(data):
    """The documented rule (ops.Maximum): the larger input gets g, a tie gives g / 2 to each."""
    shape = data.draw(hnp.array_shapes(max_dims=2, max_side=4))
    a = data.draw(hnp.arrays(np.float64, shape, elements=SMALL_INTEGERS))
    b = data.draw(hnp.arrays(np.float64, shape, elements=SMALL_INTEGERS))
    g = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-3, 3)))
    x, y = tl.tensor(a, requires_grad=True), tl.tensor(b, requires_grad=True)
    out = tl.maximum(x, y)
    np.testing.assert_array_equal(out.numpy(), np.maximum(a, b))
    out.backward(g)
    share = (a > b) + 0.5 * (a == b)
    np.testing.assert_allclose(x.grad.numpy(), g * share, rtol=1e-15)
    np.testing.assert_allclose(y.grad.numpy(), g * (1 - share), rtol=1e-15)
