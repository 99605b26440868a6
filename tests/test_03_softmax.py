"""Chapter 03, softmax and cross-entropy: the fused ops against their composed twins, finite
differences and the chapter's closed forms (eqs. 3.1-3.15), plus the language-model losses built on
them (section 3.9).

Modules under test: ``tinyllm/nn/softmax.py`` and ``tinyllm/nn/losses.py`` (reached through ``F``);
the losses of section 3.9 from ``tinyllm/objectives/`` (``lm_loss``, ``mlm_loss``, ``mlm_accuracy``,
``nsp_loss``).
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyllm as tl
import tinyllm.nn.functional as F
from tinyllm.nn.losses import IGNORE_INDEX
from tinyllm.objectives import lm_loss, mask_tokens, mlm_accuracy, mlm_loss, nsp_loss

pytestmark = pytest.mark.ch03


def variable(values, dtype=np.float64, device: str = "cpu") -> tl.Tensor:
    """A leaf that requires a gradient (float64 unless told)."""
    return tl.tensor(np.asarray(values, dtype=dtype), requires_grad=True, device=device)


def numpy_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """eq. 3.1 with the shift of eq. 3.3, straight in NumPy: the reference for the closed forms."""
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def numpy_log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """eq. 3.6 in NumPy: (z - m) - log(sum(exp(z - m)))."""
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def numeric_gradient(f, z: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of a scalar NumPy function f at z (eq. 1.9)."""
    grad = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        plus, minus = z.copy(), z.copy()
        plus[i] += eps
        minus[i] -= eps
        grad[i] = (f(plus) - f(minus)) / (2 * eps)
    return grad


def grads_of(fn, logits: np.ndarray, *args, cotangent=None, **kwargs):
    """(value, dL/dlogits) of fn(logits, *args, **kwargs) for the output cotangent (1 for a
    scalar)."""
    z = variable(logits, dtype=logits.dtype)
    out = fn(z, *args, **kwargs)
    out.backward(cotangent)
    return out.numpy(), z.grad.numpy()


shapes_and_axes = st.integers(1, 3).flatmap(
    lambda ndim: st.tuples(
        st.tuples(*[st.integers(1, 4) for _ in range(ndim)]),
        st.integers(-ndim, ndim - 1),
        st.integers(0, 2**31 - 1),
    )
)


# --------------------------------------------------------------------------------------------------
# Softmax and log-softmax (eqs. 3.1-3.7)
# --------------------------------------------------------------------------------------------------


@given(shapes_and_axes)
def test_softmax_gradcheck_any_shape_and_axis(case):
    shape, axis, seed = case
    x = variable(np.random.default_rng(seed).normal(size=shape) * 3)
    assert tl.gradcheck(lambda t: F.softmax(t, axis=axis), x)


@given(shapes_and_axes)
def test_log_softmax_gradcheck_any_shape_and_axis(case):
    shape, axis, seed = case
    x = variable(np.random.default_rng(seed).normal(size=shape) * 3)
    assert tl.gradcheck(lambda t: F.log_softmax(t, axis=axis), x)


@given(shapes_and_axes)
def test_fused_softmax_equals_composed(case):
    """Values and gradients (random cotangent) of the fused ops equal the composed ones in
    float64."""
    shape, axis, seed = case
    rng = np.random.default_rng(seed)
    x, g = rng.normal(size=shape) * 5, rng.normal(size=shape)
    for fused, composed in [
        (F.softmax, F.softmax_composed),
        (F.log_softmax, F.log_softmax_composed),
    ]:
        y1, dx1 = grads_of(fused, x, cotangent=g, axis=axis)
        y2, dx2 = grads_of(composed, x, cotangent=g, axis=axis)
        np.testing.assert_allclose(y1, y2, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dx1, dx2, rtol=1e-10, atol=1e-13)


def test_softmax_sums_to_one_and_is_shift_invariant(device):
    """eq. 3.2: softmax(z + c) = softmax(z); the probabilities sum to 1 along the axis."""
    z = np.random.default_rng(0).normal(size=(3, 7)) * 4
    y = F.softmax(tl.tensor(z, device=device)).numpy()
    shifted = F.softmax(tl.tensor(z + 123.25, device=device)).numpy()
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(shifted, y, rtol=1e-12)
    np.testing.assert_allclose(y, numpy_softmax(z), rtol=1e-14)


def test_softmax_vjp_equals_jacobian_closed_form():
    """eq. 3.4: J = diag(y) - y y^T; eq. 3.5: J^T g = y * (g - <g, y>): NumPy formula vs autograd vs
    FD."""
    rng = np.random.default_rng(1)
    z, g = rng.normal(size=6), rng.normal(size=6)
    y = numpy_softmax(z)
    jacobian = np.diag(y) - np.outer(y, y)
    closed_form = jacobian.T @ g
    np.testing.assert_allclose(closed_form, y * (g - g @ y), rtol=1e-13)
    _, autograd = grads_of(F.softmax, z, cotangent=g)
    np.testing.assert_allclose(autograd, closed_form, rtol=1e-12, atol=1e-15)
    numeric = numeric_gradient(lambda v: numpy_softmax(v) @ g, z)
    np.testing.assert_allclose(numeric, closed_form, rtol=1e-6, atol=1e-9)
    # every row of J sums to zero: softmax ignores a constant added to all scores (eq. 3.2)
    np.testing.assert_allclose(jacobian.sum(axis=1), 0.0, atol=1e-16)


def test_log_softmax_backward_closed_form():
    # eq. 3.6 is the NumPy reference of the finite differences
    """eq. 3.7: dL/dz = g - softmax(z) * sum(g), against autograd and finite differences."""
    rng = np.random.default_rng(2)
    z, g = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
    closed_form = g - numpy_softmax(z) * g.sum(axis=-1, keepdims=True)
    _, autograd = grads_of(F.log_softmax, z, cotangent=g)
    np.testing.assert_allclose(autograd, closed_form, rtol=1e-12, atol=1e-15)
    numeric = numeric_gradient(lambda v: (numpy_log_softmax(v) * g).sum(), z)
    np.testing.assert_allclose(numeric, closed_form, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_at_plus_minus_1e4(dtype, device):
    """With the max subtracted (eq. 3.3) huge scores give exact answers instead of inf/nan."""
    x = tl.tensor(np.array([1e4, 0.0], dtype=dtype), device=device)
    np.testing.assert_array_equal(F.log_softmax(x).numpy(), [0.0, -1e4])
    np.testing.assert_array_equal(F.softmax(x).numpy(), [1.0, 0.0])
    equal = tl.tensor(np.array([-1e4, -1e4], dtype=dtype), device=device)
    np.testing.assert_allclose(F.log_softmax(equal).numpy(), [-math.log(2)] * 2, rtol=1e-6)
    np.testing.assert_allclose(F.softmax(equal).numpy(), [0.5, 0.5], rtol=1e-6)
    np.testing.assert_array_equal(F.log_softmax_composed(x).numpy(), [0.0, -1e4])
    for op in (F.softmax, F.log_softmax):  # gradients are finite too
        v = variable([1e4, -1e4, 0.0], dtype=dtype, device=device)
        op(v).backward(np.array([1.0, -2.0, 0.5], dtype=dtype))
        assert np.isfinite(v.grad.numpy()).all()


def test_temperature_limits():
    """eq. 3.16: softmax(z / tau) tends to one-hot at the argmax as tau -> 0, to uniform as tau ->
    inf."""
    z = tl.tensor(np.array([1.0, 3.0, 2.0], dtype=np.float64))
    np.testing.assert_allclose(F.softmax(z / 1e-3).numpy(), [0.0, 1.0, 0.0], atol=1e-300)
    np.testing.assert_allclose(F.softmax(z / 1e6).numpy(), [1 / 3] * 3, rtol=1e-5)


def test_softmax_rejects_integer_scores():
    with pytest.raises(TypeError, match=r"softmax expects floating-point scores, got dtype int64"):
        F.softmax(tl.tensor(np.array([1, 2, 3])))
    with pytest.raises(TypeError, match=r"log_softmax expects floating-point"):
        F.log_softmax(tl.tensor(np.array([1, 2, 3])))


# --------------------------------------------------------------------------------------------------
# Cross-entropy: closed forms (eqs. 3.8-3.13)
# --------------------------------------------------------------------------------------------------


def numpy_cross_entropy(z: np.ndarray, t: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """-sum_j q_j log p_j per row with q = (1 - eps) onehot(t) + eps / V (eqs. 3.8, 3.12)."""
    num_classes = z.shape[-1]
    q = (1 - eps) * np.eye(num_classes)[t] + eps / num_classes
    log_p = np.log(numpy_softmax(z))
    return -(q * log_p).sum(axis=-1)


def test_cross_entropy_gradient_is_softmax_minus_onehot():
    # eq. 3.8: the value is -sum q ln p with q = onehot(t)
    """eq. 3.11: d(sum of losses)/dz = softmax(z) - onehot(t): NumPy closed form vs autograd vs
    FD."""
    rng = np.random.default_rng(3)
    z, t = rng.normal(size=(4, 6)) * 2, np.array([0, 5, 2, 2])
    closed_form = numpy_softmax(z) - np.eye(6)[t]
    value, autograd = grads_of(F.cross_entropy, z, t, reduction="sum")
    np.testing.assert_allclose(value, numpy_cross_entropy(z, t).sum(), rtol=1e-13)
    np.testing.assert_allclose(autograd, closed_form, rtol=1e-12, atol=1e-15)
    numeric = numeric_gradient(lambda v: numpy_cross_entropy(v, t).sum(), z)
    np.testing.assert_allclose(numeric, closed_form, rtol=1e-6, atol=1e-8)
    _, mean_grad = grads_of(F.cross_entropy, z, t)  # "mean" divides by the number of rows
    np.testing.assert_allclose(mean_grad, closed_form / 4, rtol=1e-12, atol=1e-15)


def test_label_smoothing_closed_form():
    """eq. 3.12: loss = -sum q log p with q = (1 - eps) onehot + eps / V, gradient softmax - q."""
    rng = np.random.default_rng(4)
    z, t, eps = rng.normal(size=(5, 7)), np.array([6, 0, 3, 3, 1]), 0.2
    q = (1 - eps) * np.eye(7)[t] + eps / 7
    value, autograd = grads_of(F.cross_entropy, z, t, label_smoothing=eps)
    np.testing.assert_allclose(value, numpy_cross_entropy(z, t, eps).mean(), rtol=1e-13)
    np.testing.assert_allclose(autograd, (numpy_softmax(z) - q) / 5, rtol=1e-12, atol=1e-15)
    # eq. 3.9: cross-entropy = entropy of q + KL(q || p) >= entropy of q
    entropy = -(q * np.log(q)).sum(axis=-1)
    kl = (q * (np.log(q) - np.log(numpy_softmax(z)))).sum(axis=-1)
    np.testing.assert_allclose(numpy_cross_entropy(z, t, eps), entropy + kl, rtol=1e-13)
    assert (kl > 0).all()


@pytest.mark.parametrize("num_classes", [2, 65, 1000])
def test_uniform_logits_give_ln_v(num_classes):
    """eq. 3.10: a uniform guess costs ln V nats per token, perplexity exp(ln V) = V (smoothing or
    not)."""
    z = tl.tensor(np.full((3, num_classes), 0.7), dtype=np.float64)
    t = np.array([0, num_classes - 1, num_classes // 2])
    for eps in (0.0, 0.1):
        loss = F.cross_entropy(z, t, label_smoothing=eps).item()
        assert loss == pytest.approx(math.log(num_classes), rel=1e-13)
        assert math.exp(loss) == pytest.approx(num_classes, rel=1e-12)


# --------------------------------------------------------------------------------------------------
# Cross-entropy: fused == composed, ignore_index, reductions
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.15])
@pytest.mark.parametrize("with_ignored", [False, True])
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 4)])
def test_fused_cross_entropy_equals_composed(
    shape, with_ignored, label_smoothing, reduction, device
):
    # eq. 3.13: "mean" divides by the number of kept rows |K|
    rng = np.random.default_rng(5)
    z = rng.normal(size=shape) * 3
    t = rng.integers(0, shape[-1], size=shape[:-1])
    if with_ignored:
        t.reshape(-1)[[1, 4]] = IGNORE_INDEX
    g = rng.normal(size=shape[:-1]) if reduction == "none" else None
    kwargs = dict(label_smoothing=label_smoothing, reduction=reduction)
    results = []
    for fn in (F.cross_entropy, F.cross_entropy_composed):
        logits = variable(z, device=device)
        loss = fn(logits, t, **kwargs)
        loss.backward(None if g is None else tl.tensor(g, device=device))
        results.append((loss.numpy(), logits.grad.numpy()))
    (v1, d1), (v2, d2) = results
    assert v1.shape == (shape[:-1] if reduction == "none" else ())
    np.testing.assert_allclose(v1, v2, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(d1, d2, rtol=1e-11, atol=1e-14)
    expected_rows = numpy_cross_entropy(z, np.where(t == IGNORE_INDEX, 0, t), label_smoothing)
    expected_rows = np.where(t == IGNORE_INDEX, 0.0, expected_rows)
    expected = {
        "none": expected_rows,
        "sum": expected_rows.sum(),
        "mean": expected_rows.sum() / (t != IGNORE_INDEX).sum(),
    }[reduction]
    np.testing.assert_allclose(v1, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_gradcheck(reduction):
    """Finite differences with a random cotangent, with smoothing and an ignored position."""
    rng = np.random.default_rng(6)
    z = variable(rng.normal(size=(2, 3, 4)))
    t = np.array([[1, IGNORE_INDEX, 3], [0, 0, 2]])
    assert tl.gradcheck(
        lambda v: F.cross_entropy(v, t, label_smoothing=0.1, reduction=reduction), z
    )


@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_cross_entropy_hypothesis_shapes(rows, num_classes, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(rows, num_classes)) * 4
    t = rng.integers(0, num_classes, size=rows)
    t[rng.random(rows) < 0.3] = IGNORE_INDEX
    v1, d1 = grads_of(F.cross_entropy, z, t, label_smoothing=0.05)
    v2, d2 = grads_of(F.cross_entropy_composed, z, t, label_smoothing=0.05)
    np.testing.assert_allclose(v1, v2, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(d1, d2, rtol=1e-11, atol=1e-14)


@pytest.mark.filterwarnings(
    "ignore:invalid value encountered:RuntimeWarning"
)  # inf - inf in an ignored row
def test_ignored_positions_get_exactly_zero_gradient():
    """Rows whose target is ignore_index add nothing: zero gradient, even if they hold inf or
    nan."""
    z = np.random.default_rng(7).normal(size=(4, 5))
    z[1] = np.nan
    z[3, 2] = np.inf
    t = np.array([2, IGNORE_INDEX, 0, IGNORE_INDEX])
    for reduction in ("mean", "sum", "none"):
        value, grad = grads_of(
            F.cross_entropy,
            z,
            t,
            reduction=reduction,
            cotangent=np.ones(4) if reduction == "none" else None,
        )
        assert np.isfinite(value).all()
        assert (grad[[1, 3]] == 0).all()
        assert np.isfinite(grad).all()
    # a custom ignore_index that is also a valid class id (e.g. a padding token 0)
    t_pad = np.array([0, 3, 0, 1])
    value, grad = grads_of(
        F.cross_entropy, np.nan_to_num(z, posinf=0.0, nan=0.0), t_pad, ignore_index=0
    )
    assert (grad[[0, 2]] == 0).all() and (grad[[1, 3]] != 0).all()


def test_all_targets_ignored_gives_zero_loss_and_zero_gradient():
    """Mean over zero targets: 0 with a zero gradient, not 0/0 = nan (PyTorch gives nan)."""
    t = np.full(3, IGNORE_INDEX)
    for fn in (F.cross_entropy, F.cross_entropy_composed):
        value, grad = grads_of(fn, np.ones((3, 4)), t)
        assert value == 0.0
        np.testing.assert_array_equal(grad, 0.0)


def test_targets_may_be_integer_tensors_or_lists():
    z = np.random.default_rng(8).normal(size=(3, 4))
    expected = F.cross_entropy(tl.tensor(z), np.array([1, 2, 3])).item()
    assert F.cross_entropy(tl.tensor(z), tl.tensor(np.array([1, 2, 3]))).item() == expected
    assert F.cross_entropy(tl.tensor(z), [1, 2, 3]).item() == expected


def test_logits_are_not_modified_and_single_vectors_work():
    """The fused op works in place on its own copy only; (V,) logits with a 0-d target give a
    scalar."""
    z = np.random.default_rng(13).normal(size=(3, 4))
    original = z.copy()
    logits = tl.tensor(z, requires_grad=True)
    F.cross_entropy(logits, np.array([0, 3, 1]), label_smoothing=0.1).backward()
    np.testing.assert_array_equal(z, original)
    value, grad = grads_of(F.cross_entropy, z[1], np.array(3))
    assert value == pytest.approx(-numpy_log_softmax(z[1])[3], rel=1e-14)
    np.testing.assert_allclose(grad, numpy_softmax(z[1]) - np.eye(4)[3], rtol=1e-13)


def test_backward_runs_once_per_forward():
    """The backward pass reuses the saved probabilities in place, so a second pass is refused
    clearly."""
    z = variable(np.ones((2, 3)))
    loss = F.cross_entropy(z, np.array([0, 1]))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match=r"runs once per forward pass; compute the loss again"):
        loss.backward()


@pytest.mark.parametrize(
    "targets, message",
    [
        (
            np.array([0, 65]),
            r"target id 65 is out of range for V=65 classes \(valid ids are 0\.\.64, "
            r"or ignore_index=-100\)",
        ),
        (np.array([-1, 3]), r"target id -1 is out of range for V=65"),
        (np.array([0.0, 1.0]), r"targets must be integer class ids, got dtype float64"),
        (
            np.array([0, 1, 2]),
            r"expected targets of shape \(N,\) = \(2,\) for logits \(N, V\) = \(2, 65\), "
            r"got \(3,\)",
        ),
    ],
)
def test_cross_entropy_errors(targets, message):
    z = tl.tensor(np.zeros((2, 65)))
    error = (
        TypeError
        if targets.dtype.kind == "f"
        else IndexError
        if targets.shape == (2,)
        else ValueError
    )
    with pytest.raises(error, match=message):
        F.cross_entropy(z, targets)
    with pytest.raises(error, match=message):
        F.cross_entropy_composed(z, targets)


def test_cross_entropy_argument_errors():
    z = tl.tensor(np.zeros((2, 3, 5)))
    with pytest.raises(
        ValueError, match=r"targets of shape \(B, T\) = \(2, 3\) for logits \(B, T, V\)"
    ):
        F.cross_entropy(z, np.zeros((3, 2), dtype=np.int64))
    with pytest.raises(
        ValueError, match=r"reduction must be one of \('mean', 'sum', 'none'\), got 'avg'"
    ):
        F.cross_entropy(z, np.zeros((2, 3), dtype=np.int64), reduction="avg")
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\], got 1.5"):
        F.cross_entropy(z, np.zeros((2, 3), dtype=np.int64), label_smoothing=1.5)
    with pytest.raises(TypeError, match=r"expects floating-point logits, got dtype int64"):
        F.cross_entropy(tl.tensor(np.zeros((2, 5), dtype=np.int64)), np.zeros(2, dtype=np.int64))
    with pytest.raises(TypeError, match=r"targets must be integer class ids, got dtype bool"):
        F.cross_entropy(z, np.zeros((2, 3), dtype=bool))


# --------------------------------------------------------------------------------------------------
# Language-model losses (eq. 3.14), BERT's MLM and NSP
# --------------------------------------------------------------------------------------------------


def test_lm_loss_equals_cross_entropy_on_shifted_arrays():
    # eq. 3.14: the mean over B (T - 1) next-token predictions
    """Predict tokens[:, 1:] from logits[:, :-1]: values and gradients (last position's gradient is
    0)."""
    rng = np.random.default_rng(9)
    z, tokens = rng.normal(size=(2, 5, 7)), rng.integers(0, 7, size=(2, 5))
    value, grad = grads_of(lambda v: lm_loss(v, tokens), z)
    shifted = variable(z[:, :-1])
    expected = F.cross_entropy(shifted, tokens[:, 1:])
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-14)
    np.testing.assert_allclose(grad[:, :-1], shifted.grad.numpy(), rtol=1e-13, atol=1e-16)
    np.testing.assert_array_equal(grad[:, -1], 0.0)
    closed = numpy_cross_entropy(z[:, :-1].reshape(-1, 7), tokens[:, 1:].reshape(-1)).mean()
    assert value == pytest.approx(closed, rel=1e-13)


def test_lm_loss_errors():
    with pytest.raises(ValueError, match=r"lm_loss expected logits \(B, T, V\), got \(4, 7\)"):
        lm_loss(tl.tensor(np.zeros((4, 7))), np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match=r"lm_loss needs sequences of T >= 2 tokens"):
        lm_loss(tl.tensor(np.zeros((4, 1, 7))), np.zeros((4, 1), dtype=np.int64))
    with pytest.raises(ValueError, match=r"lm_loss expected targets of shape \(B, T\) = \(4, 3\)"):
        lm_loss(tl.tensor(np.zeros((4, 3, 7))), np.zeros((4, 2), dtype=np.int64))


def test_mlm_loss_equals_cross_entropy_with_ignore_index():
    """The gather of chosen rows changes nothing: same value and gradient as the full ignore_index
    loss."""
    rng = np.random.default_rng(10)
    tokens = rng.integers(3, 11, size=(3, 8))
    _, labels = mask_tokens(tokens, mask_id=2, vocab_size=11, special_ids=(0, 1), p=0.3, rng=rng)
    assert (labels != IGNORE_INDEX).any() and (labels == IGNORE_INDEX).any()
    z = rng.normal(size=(3, 8, 11))
    value, grad = grads_of(lambda v: mlm_loss(v, labels), z)
    expected, expected_grad = grads_of(lambda v: F.cross_entropy(v, labels), z)
    assert value == pytest.approx(expected, rel=1e-14)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-13, atol=1e-16)
    chosen = (
        labels != IGNORE_INDEX
    )  # the chosen rows alone (N, V), as BERT's masked_positions gives them
    rows_value, rows_grad = grads_of(lambda v: mlm_loss(v, labels[chosen]), z[chosen])
    assert rows_value == pytest.approx(value, rel=1e-14)
    np.testing.assert_allclose(rows_grad, grad[chosen], rtol=1e-13, atol=1e-16)
    small_labels = np.array([[IGNORE_INDEX, 4, IGNORE_INDEX, 9]])
    assert tl.gradcheck(lambda v: mlm_loss(v, small_labels), variable(z[:1, :4]))
    nothing = np.full((3, 8), IGNORE_INDEX)
    value, grad = grads_of(lambda v: mlm_loss(v, nothing), z)
    assert value == 0.0 and (grad == 0).all()


def test_mlm_accuracy():
    z = np.zeros((1, 4, 3))
    z[0, 0, 2] = z[0, 1, 1] = z[0, 2, 0] = z[0, 3, 0] = 1.0  # argmax per position: 2, 1, 0, 0
    labels = np.array([[2, IGNORE_INDEX, 1, 0]])  # right, not chosen, wrong, right
    assert mlm_accuracy(tl.tensor(z), labels) == pytest.approx(2 / 3)
    assert math.isnan(mlm_accuracy(tl.tensor(z), np.full((1, 4), IGNORE_INDEX)))
    assert mlm_accuracy(tl.tensor(z[0, [0, 2, 3]]), np.array([2, 1, 0])) == pytest.approx(
        2 / 3
    )  # (N, V)


def test_nsp_loss_two_class_cross_entropy():
    """0 = IsNext, 1 = NotNext; the loss is -log softmax(logits)[label], averaged over the batch."""
    z = np.array([[2.0, -1.0], [0.5, 0.5], [-3.0, 1.0]])
    labels = np.array([0, 1, 1])
    value, grad = grads_of(lambda v: nsp_loss(v, labels), z)
    expected = numpy_cross_entropy(z, labels).mean()
    assert value == pytest.approx(expected, rel=1e-14)
    np.testing.assert_allclose(grad, (numpy_softmax(z) - np.eye(2)[labels]) / 3, rtol=1e-13)
    # with two classes, -log softmax = log(1 + exp(-(z_label - z_other))): the logistic loss
    margin = z[np.arange(3), labels] - z[np.arange(3), 1 - labels]
    assert value == pytest.approx(np.log1p(np.exp(-margin)).mean(), rel=1e-13)
    with pytest.raises(ValueError, match=r"nsp_loss expected logits \(B, 2\), got \(3, 3\)"):
        nsp_loss(tl.tensor(np.zeros((3, 3))), labels)
    with pytest.raises(
        ValueError, match=r"must be 0 \(IsNext\) or 1 \(NotNext\), got values \[0, 1, 2\]"
    ):
        nsp_loss(tl.tensor(z), np.array([0, 2, 1]))


# --------------------------------------------------------------------------------------------------
# Binary cross-entropy with logits (eq. 3.15)
# --------------------------------------------------------------------------------------------------


def test_bce_with_logits_stable_at_plus_minus_1e4(device):
    # eq. 3.15: max(x, 0) - x t + ln(1 + e^-|x|), gradient sigma(x) - t
    x = tl.tensor(np.array([1e4, 1e4, -1e4, -1e4]), device=device)
    t = np.array([1.0, 0.0, 1.0, 0.0])
    for fn in (F.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits_composed):
        np.testing.assert_array_equal(fn(x, t, reduction="none").numpy(), [0.0, 1e4, 1e4, 0.0])
    v = variable([1e4, -1e4], device=device)
    F.binary_cross_entropy_with_logits(v, np.array([0.0, 0.0]), reduction="sum").backward()
    np.testing.assert_array_equal(v.grad.numpy(), [1.0, 0.0])  # sigmoid(x) - t


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_fused_equals_composed_and_closed_form(reduction):
    # eq. 3.15: value and gradient sigma(x) - t
    rng = np.random.default_rng(11)
    x, t = rng.normal(size=(3, 4)) * 3, rng.random((3, 4))
    g = rng.normal(size=(3, 4)) if reduction == "none" else None
    v1, d1 = grads_of(F.binary_cross_entropy_with_logits, x, t, reduction=reduction, cotangent=g)
    v2, d2 = grads_of(
        F.binary_cross_entropy_with_logits_composed, x, t, reduction=reduction, cotangent=g
    )
    np.testing.assert_allclose(v1, v2, rtol=1e-12)
    np.testing.assert_allclose(d1, d2, rtol=1e-11, atol=1e-15)
    s = 1 / (1 + np.exp(-x))
    naive = -t * np.log(s) - (1 - t) * np.log(1 - s)
    expected = {"none": naive, "sum": naive.sum(), "mean": naive.mean()}[reduction]
    np.testing.assert_allclose(v1, expected, rtol=1e-12)
    weight = {"none": g, "sum": 1.0, "mean": 1 / 12}[reduction]
    np.testing.assert_allclose(d1, (s - t) * weight, rtol=1e-12, atol=1e-15)
    assert tl.gradcheck(
        lambda v: F.binary_cross_entropy_with_logits(v, t, reduction=reduction), variable(x)
    )


def test_bce_with_logits_errors():
    with pytest.raises(
        ValueError, match=r"expected targets of the logits' shape \(3,\), got \(2,\)"
    ):
        F.binary_cross_entropy_with_logits(tl.tensor(np.zeros(3)), np.zeros(2))
    with pytest.raises(TypeError, match=r"treats targets as constants; pass targets.detach\(\)"):
        F.binary_cross_entropy_with_logits(tl.tensor(np.zeros(3)), variable(np.zeros(3)))


# --------------------------------------------------------------------------------------------------
# float32 stays float32
# --------------------------------------------------------------------------------------------------


def test_float32_in_float32_out_and_float32_gradients():
    rng = np.random.default_rng(12)
    z = rng.normal(size=(2, 4, 9)).astype(np.float32)
    tokens = rng.integers(0, 9, size=(2, 4))
    labels = np.where(rng.random((2, 4)) < 0.5, tokens, IGNORE_INDEX)
    labels[0, 0] = 3
    cases = {
        "softmax": lambda v: F.softmax(v),
        "log_softmax": lambda v: F.log_softmax(v, axis=1),
        "cross_entropy": lambda v: F.cross_entropy(v, tokens, label_smoothing=0.1),
        "cross_entropy none": lambda v: F.cross_entropy(v, tokens, reduction="none"),
        "lm_loss": lambda v: lm_loss(v, tokens),
        "mlm_loss": lambda v: mlm_loss(v, labels),
        "bce": lambda v: F.binary_cross_entropy_with_logits(v, (z > 0).astype(np.float32)),
    }
    for name, fn in cases.items():
        v = tl.tensor(z, requires_grad=True)
        out = fn(v)
        assert out.dtype == np.float32, name
        out.backward(np.ones(out.shape, dtype=np.float32))
        assert v.grad.dtype == np.float32, name
        reference = fn(tl.tensor(z.astype(np.float64))).numpy()
        np.testing.assert_allclose(out.numpy(), reference, rtol=2e-5, atol=1e-6, err_msg=name)
