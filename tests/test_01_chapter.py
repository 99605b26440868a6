"""Chapter 01's equations that tests/test_01_autograd.py does not check one by one: the example
graph (eqs. 1.1-1.4), the vector-Jacobian product (eqs. 1.5, 1.11), one backward pass against n
forward passes (eq. 1.6), and the central difference with its error terms (eqs. 1.9, 1.10).
All float64.
"""

import math

import numpy as np
import pytest

import tinyllm as tl
from tinyllm import ops

pytestmark = pytest.mark.ch01


def variable(values) -> tl.Tensor:
    return tl.tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


def test_the_example_graph_by_its_paths():
    """c = a b, d = c + a, L = tanh d (eq. 1.1) with the local derivatives of eq. 1.2: a reaches L
    along two paths, whose products add (eq. 1.3); c's adjoint is the sum over its one consumer
    and a's over its two (eq. 1.4)."""
    a_value, b_value = 0.7, -1.3
    a, b = variable(a_value), variable(b_value)
    c = a * b
    c.retain_grad()
    d = c + a
    d.retain_grad()
    loss = d.tanh()
    loss.backward()
    d_value = a_value * b_value + a_value
    dL_dd = 1 - math.tanh(d_value) ** 2                       # eq. 1.2, last factor
    assert loss.item() == pytest.approx(math.tanh(d_value), rel=1e-15)
    assert d.grad.item() == pytest.approx(dL_dd, rel=1e-14)
    assert c.grad.item() == pytest.approx(dL_dd * 1.0, rel=1e-14)
    # paths a -> c -> d -> L (b * 1 * dL_dd) and a -> d -> L (1 * dL_dd)
    assert a.grad.item() == pytest.approx(b_value * dL_dd + dL_dd, rel=1e-14)
    assert b.grad.item() == pytest.approx(a_value * dL_dd, rel=1e-14)


def jacobian_by_differences(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """J[i, j] = d f_i / d x_j, one central difference (eq. 1.9) per input coordinate."""
    columns = []
    for j in range(x.size):
        step = np.zeros_like(x)
        step.flat[j] = eps
        columns.append((f(x + step) - f(x - step)).ravel() / (2 * eps))
    return np.stack(columns, axis=1)


def test_backward_with_a_cotangent_is_the_transposed_jacobian():
    """backward(v) adds J^T v to the input's gradient (eq. 1.5), and is the gradient of the scalar
    L_v = <v, f(x)> (eq. 1.11); J from central differences (eq. 1.9)."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((4, 3))

    def f_numpy(x):
        return np.tanh(W @ x) * x.sum()

    x0 = rng.standard_normal(3)
    v = rng.standard_normal(4)
    x = variable(x0)
    ((tl.tensor(W) @ x).tanh() * x.sum()).backward(v)
    J = jacobian_by_differences(f_numpy, x0)                     # (4, 3)
    np.testing.assert_allclose(x.grad.numpy(), J.T @ v, rtol=1e-8, atol=1e-10)
    x_scalar = variable(x0)
    ((tl.tensor(v) * ((tl.tensor(W) @ x_scalar).tanh() * x_scalar.sum())).sum()).backward()
    np.testing.assert_allclose(x_scalar.grad.numpy(), x.grad.numpy(), rtol=1e-14)


def test_one_backward_pass_gives_the_whole_gradient(monkeypatch):
    """Eq. 1.6: the n columns of the Jacobian of L: R^n -> R cost n forward passes; one backward
    pass, which runs each recorded op's backward exactly once, gives the whole row."""
    calls = {"forward": 0, "backward": 0}
    original_forward, original_backward = ops.Tanh.forward, ops.Tanh.backward

    def counted_forward(self, *args):
        calls["forward"] += 1
        return original_forward(self, *args)

    def counted_backward(self, *args):
        calls["backward"] += 1
        return original_backward(self, *args)

    monkeypatch.setattr(ops.Tanh, "forward", counted_forward)
    monkeypatch.setattr(ops.Tanh, "backward", counted_backward)
    n = 50
    x0 = np.random.default_rng(1).standard_normal(n)
    x = variable(x0)
    x.tanh().tanh().sum().backward()
    assert calls == {"forward": 2, "backward": 2}              # two Tanh nodes, each once
    inner = np.tanh(x0)
    exact = (1 - np.tanh(inner) ** 2) * (1 - inner ** 2)
    np.testing.assert_allclose(x.grad.numpy(), exact, rtol=1e-13)


def test_central_difference_error_terms():
    """Eq. 1.10 for L = sin at x = 1 (L''' = -cos 1): at eps = 1e-2 the error is the truncation
    term eps^2/6 L''' to 0.1%; at eps = 1e-12 rounding dominates, of order u |L| / eps."""
    x = 1.0

    def central(eps):
        return (math.sin(x + eps) - math.sin(x - eps)) / (2 * eps)

    exact = math.cos(x)
    for eps in (1e-2, 1e-3):
        predicted = eps ** 2 / 6 * (-math.cos(x))
        assert central(eps) - exact == pytest.approx(predicted, rel=1e-3)
    u = np.finfo(np.float64).eps / 2
    rounding = abs(central(1e-12) - exact)
    assert 1e-2 * u / 1e-12 < rounding < 1e2 * u / 1e-12       # within two orders of u |L| / eps
    assert rounding > abs(central(1e-5) - exact) * 100         # the sweet spot is in between
