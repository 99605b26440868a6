"""Chapter 03's equations that tests/test_03_softmax.py does not check one by one: log-softmax as
z - lse(z) with the shift (eq. 3.6), and the mean over the kept rows with its gradient (eq. 3.13).
All float64.
"""

import math

import numpy as np
import pytest

import tinyllm as tl
import tinyllm.nn.functional as F
from tinyllm.nn.losses import IGNORE_INDEX

pytestmark = pytest.mark.ch03


def test_log_softmax_is_z_minus_lse():
    """Eq. 3.6: ln softmax(z)_i = (z_i - m) - ln sum_j exp(z_j - m), here with scores near 800
    where exp(z) itself overflows float64, so only the shifted form has an answer."""
    z = np.array([[800.0, 801.0, 799.5, 790.0], [-3.0, 0.5, 2.0, 0.0]])
    m = z.max(axis=-1, keepdims=True)
    lse = m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True))          # (2, 1)
    hand = [[zi - lse[r, 0] for zi in row] for r, row in enumerate(z)]
    np.testing.assert_allclose(F.log_softmax(tl.tensor(z)).numpy(), hand, rtol=0, atol=1e-12)
    small = z[1]
    direct = [v - math.log(sum(math.exp(w) for w in small)) for v in small]  # no shift needed
    np.testing.assert_allclose(F.log_softmax(tl.tensor(small)).numpy(), direct, rtol=1e-14)


def test_mean_over_the_kept_rows_and_its_gradient():
    """Eq. 3.13: L = (1/|K|) sum_{n in K} l_n over the rows K whose target is not ignored; for an
    output cotangent g, dL/dz_n = g/|K| (p_n - q_n) on K and exactly 0 off K."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 4))
    t = np.array([3, IGNORE_INDEX, 0, IGNORE_INDEX, 1])
    kept = t != IGNORE_INDEX
    p = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    rows = [-math.log(p[n, t[n]]) for n in range(5) if kept[n]]
    logits = tl.tensor(z, requires_grad=True)
    loss = F.cross_entropy(logits, t)
    g = 2.5
    loss.backward(np.array(g))
    assert loss.item() == pytest.approx(sum(rows) / 3, rel=1e-13)
    q = np.zeros_like(z)
    q[np.flatnonzero(kept), t[kept]] = 1.0
    expected = np.where(kept[:, None], g / 3 * (p - q), 0.0)
    np.testing.assert_allclose(logits.grad.numpy(), expected, rtol=1e-12, atol=1e-15)
    assert np.all(logits.grad.numpy()[~kept] == 0.0)


def test_softmax_is_the_normalised_exponential():
    """Eq. 3.1: softmax(z)_i = exp(z_i) / sum_j exp(z_j), term by term in Python floats."""
    z = [0.3, -1.2, 2.0, 0.0, 0.7]
    total = sum(math.exp(v) for v in z)
    np.testing.assert_allclose(F.softmax(tl.tensor(np.array(z))).numpy(),
                               [math.exp(v) / total for v in z], rtol=1e-14)
