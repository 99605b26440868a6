"""erf, erfc and Phi to full float64 accuracy (Cody 1969), and the float32 path unchanged.

tinyllm/special.py: float64 uses W. J. Cody's rational Chebyshev approximations (three ranges of
|x|: 0.5 and 4 the cuts), float32 keeps Abramowitz & Stegun 7.1.26 (benchmarks/bench_erf.py).
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyllm as tl
import tinyllm.nn.functional as F
from tinyllm.special import (
    erf_abramowitz_stegun,
    erf_array,
    erfc_array,
    normal_cdf_array,
)

pytestmark = pytest.mark.ch13
math_erf = np.vectorize(math.erf, otypes=[float])
math_erfc = np.vectorize(math.erfc, otypes=[float])
SMALLEST_NORMAL = np.finfo(np.float64).tiny  # 2.2e-308


def relative_error(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.abs(ours - reference) / np.abs(reference)


def test_erf_relative_error_below_1e_15_on_a_dense_grid():
    grid = np.concatenate([np.linspace(-8, 8, 160_001), np.geomspace(1e-300, 8, 20_000),
                           -np.geomspace(1e-300, 8, 20_000), [0.5, -0.5, 4.0, -4.0]])
    grid = grid[grid != 0]
    assert relative_error(erf_array(grid), math_erf(grid)).max() <= 1e-15


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_erf_on_any_float64(x):
    """Tiny, subnormal, negative and huge arguments: relative error <= 1e-15 (for a subnormal
    result, one unit of the subnormal spacing)."""
    ours = float(erf_array(np.array([x]))[0])
    reference = math.erf(x)
    assert abs(ours - reference) <= 1e-15 * abs(reference) + 5e-324
    assert math.copysign(1, ours) == math.copysign(1, reference)  # erf(-0.0) == -0.0


def test_erfc_keeps_its_relative_accuracy_in_the_tail():
    """erfc(x) down to 1e-307 (x = 26.5), where 1 - erf(x) would be 0: relative error <= 1.5e-15
    against math.erfc (which itself is off by up to 4.4e-16, measured with mpmath)."""
    grid = np.linspace(-6, 26.5, 200_001)
    reference = math_erfc(grid)
    assert reference.min() > SMALLEST_NORMAL
    assert relative_error(erfc_array(grid), reference).max() <= 1.5e-15
    tail = np.array([5.0, 10.0, 20.0, 26.0])
    np.testing.assert_allclose(erfc_array(tail), math_erfc(tail), rtol=1e-15, atol=0)
    assert np.all(1 - erf_array(tail)[1:] == 0)  # what erfc saves: erf rounds to 1 here


def test_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e300, -1e300, 40.0, 100.0])
    with np.errstate(all="raise"):  # no overflow, division by zero or invalid operation
        with np.errstate(under="ignore"):
            erf, erfc = erf_array(x), erfc_array(x)
    np.testing.assert_array_equal(erf[[0, 2, 3, 5, 6, 7, 8]], [0, 1, -1, 1, -1, 1, 1])
    assert math.copysign(1, erf[1]) == -1 and np.isnan(erf[4]) and np.isnan(erfc[4])
    np.testing.assert_array_equal(erfc[[0, 1, 2, 3, 5, 6, 7, 8]], [1, 1, 0, 2, 0, 2, 0, 0])
    scalar = erf_array(np.array(0.3))  # a 0-d array stays an array (the Erf op needs one)
    assert isinstance(scalar, np.ndarray) and scalar.shape == ()
    assert float(scalar) == pytest.approx(math.erf(0.3), rel=1e-15)


def test_no_step_at_the_range_cuts():
    """Each range is its own rational function; where they meet (|x| = 0.5 and 4) each step
    from one float to the next is the slope times the spacing, up to rounding (6 ulp)."""
    for cut in (0.5, 4.0, -0.5, -4.0):
        grid = cut + np.arange(-50, 51) * np.spacing(abs(cut))
        for fn in (erf_array, erfc_array):
            steps = np.diff(fn(grid))
            slope = 2 / math.sqrt(math.pi) * math.exp(-cut * cut) * np.spacing(abs(cut))
            expected = slope if fn is erf_array else -slope
            assert np.abs(steps - expected).max() <= 6 * np.spacing(abs(fn(grid)).max())


def test_normal_cdf_left_tail_and_gelu_in_float64():
    """Phi(x) = erfc(-x / sqrt 2) / 2 keeps its relative accuracy where (1 + erf) / 2 cancels:
    Phi(-10) = 7.6e-24, which (1 + erf(-10 / sqrt 2)) / 2 rounds to 0."""
    x = np.linspace(-37, 8, 9001)
    # the same rounded argument x * (-1 / sqrt 2): at x = -37 its half-ulp error alone moves Phi
    # by 1e-13 (relative), on both sides alike
    reference = np.array([0.5 * math.erfc(v * -math.sqrt(0.5)) for v in x])
    np.testing.assert_allclose(normal_cdf_array(x), reference, rtol=2e-15, atol=0)
    assert (1 + erf_array(np.array([-10 / math.sqrt(2)])))[0] / 2 == 0
    assert normal_cdf_array(np.array([-10.0]))[0] == pytest.approx(7.619853024160527e-24,
                                                                  rel=1e-14)
    gelu = F.gelu(tl.tensor(x)).numpy()
    np.testing.assert_allclose(gelu, x * reference, rtol=2e-15, atol=0)


@pytest.mark.parametrize("center", [0.0, 0.5 * math.sqrt(2), 4 * math.sqrt(2), -4 * math.sqrt(2)])
def test_gelu_and_erf_gradcheck_at_the_range_cuts(center):
    """float64 finite differences with a random cotangent, around the cuts of x / sqrt 2 (GELU)
    and of x (erf)."""
    x = tl.tensor(center + np.random.default_rng(0).uniform(-0.05, 0.05, (3, 4)),
                  requires_grad=True)
    assert tl.gradcheck(F.gelu, x)
    assert tl.gradcheck(tl.erf, tl.tensor(x.numpy() / math.sqrt(2), requires_grad=True))


def test_float32_keeps_the_fast_method_bit_for_bit():
    """float32 is Abramowitz & Stegun 7.1.26 as before: same bits, dtype kept, |error| <= 1.5e-7
    plus float32 rounding."""
    x = np.random.default_rng(1).standard_normal((64, 33)).astype(np.float32) * 3
    np.testing.assert_array_equal(erf_array(x), erf_abramowitz_stegun(x))
    assert erf_array(x).dtype == np.float32 and normal_cdf_array(x).dtype == np.float32
    assert np.abs(erf_array(x) - math_erf(x.astype(np.float64))).max() < 1.5e-7 + 4e-7
    gauss = np.exp(-0.5 * x * x)
    expected = 0.5 * (1 + erf_abramowitz_stegun(x * np.float32(math.sqrt(0.5)), gauss))
    np.testing.assert_array_equal(normal_cdf_array(x), expected.astype(np.float32))
    y = F.gelu(tl.tensor(x)).numpy()
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, x * normal_cdf_array(x))
