"""Special functions that NumPy lacks, on numpy or cupy arrays (chapter 01, table 1.2; chapter 08).

``erf_array`` is the forward pass of the ``Erf`` op (``ops.py``); ``normal_cdf_array`` is the
Phi(x) of the exact GELU. Each picks its method by the dtype of its input:

- float64: W. J. Cody's rational Chebyshev approximations, "Rational Chebyshev approximations for
  the error function", Math. Comp. 23 (1969) 631-637, with the coefficients of his SPECFUN routine
  CALERF (netlib.org/specfun/erf). Relative error below 1e-15 against ``math.erf`` and
  ``math.erfc`` (tests/test_13_erf.py), so a float64 comparison with a reference is limited by the
  reference, not by tinyllm. Three ranges of y = |x|:

      y <= 0.5:      erf(x)  = x R1(x^2)                     R1 of degree (4, 4) in x^2
      0.5 < y <= 4:  erfc(y) = exp(-y^2) R2(y)               R2 of degree (8, 8) in y
      y > 4:         erfc(y) = exp(-y^2) / y (1/sqrt(pi) - z R3(z)),  z = 1/y^2,  R3 of (5, 5)

  and erf = 1 - erfc, erfc(-y) = 2 - erfc(y). exp(-y^2) is exp(-s^2) exp(-(y - s)(y + s)) with
  s = round(16 y) / 16 (Cody's split: s^2 is exact, so the tail keeps its relative accuracy).
- float32 (and narrower): Abramowitz & Stegun (1964) 7.1.26, |error| <= 1.5e-7 in exact
  arithmetic (4.7e-7 measured in float32 arithmetic), one exponential and a degree-5 polynomial:
  the float32 GELU forward + backward is about 4x faster than with Cody's erfc
  (benchmarks/bench_erf.py).
"""

from __future__ import annotations

import math

from tinyllm.backend import get_array_module

# Abramowitz & Stegun (1964) 7.1.26, |error| <= 1.5e-7. The published coefficients sum to 1 - 1e-9,
# so erf would jump by 2e-9 at 0; rescaled to sum to exactly 1, it is continuous (same error bound).
_ERF_P = 0.3275911
_ERF_PUBLISHED = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
_ERF_A = tuple(a / sum(_ERF_PUBLISHED) for a in _ERF_PUBLISHED)


def erf_abramowitz_stegun(x, gauss=None):
    """erf(x) = sign(x) (1 - (a1 t + ... + a5 t^5) exp(-x^2)),  t = 1 / (1 + p |x|)   (A&S 7.1.26);
    ``gauss`` may pass exp(-x^2) when the caller has it already. |error| <= 1.5e-7."""
    xp = get_array_module(x)
    gauss = xp.exp(-x * x) if gauss is None else gauss
    t = xp.abs(x, out=xp.empty_like(x))  # with out=, even a 0-d input stays an array
    t *= _ERF_P
    t += 1
    xp.reciprocal(t, out=t)  # t = 1 / (1 + p |x|)
    a1, a2, a3, a4, a5 = _ERF_A
    poly = xp.multiply(t, a5, out=xp.empty_like(t))  # Horner, in place: t (a1 + t (a2 + ... t a5))
    for a in (a4, a3, a2, a1):
        poly += a
        poly *= t
    poly *= gauss
    xp.subtract(1, poly, out=poly)
    poly *= xp.sign(x)
    return poly


# Cody (1969) via CALERF, highest degree first; each denominator's leading coefficient is 1.
# Range 1 (|x| <= 0.5), in z = x^2: CALERF's A(5), A(1..4) over 1, B(1..4).
_CODY_R1_NUM = (1.85777706184603153e-1, 3.16112374387056560e00, 1.13864154151050156e02,
                3.77485237685302021e02, 3.20937758913846947e03)
_CODY_R1_DEN = (1.0, 2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
                2.84423683343917062e03)
# Range 2 (0.5 < y <= 4), in y: C(9), C(1..8) over 1, D(1..8).
_CODY_R2_NUM = (2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e00,
                6.61191906371416295e01, 2.98635138197400131e02, 8.81952221241769090e02,
                1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03)
_CODY_R2_DEN = (1.0, 1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
                1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
                3.43936767414372164e03, 1.23033935480374942e03)
# Range 3 (y > 4), in z = 1/y^2: P(6), P(1..5) over 1, Q(1..5).
_CODY_R3_NUM = (1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1,
                1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4)
_CODY_R3_DEN = (1.0, 2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
                6.05183413124413191e-2, 2.33520497626869185e-3)
_INV_SQRT_PI = 1 / math.sqrt(math.pi)
_ERFC_ZERO_FROM = 40.0  # exp(-40^2) underflows to 0: erfc(y) = 0 in float64 for y >= 40
_HALF_SQRT2_INV = math.sqrt(0.5)  # 1 / sqrt(2): Phi(x) = erfc(-x / sqrt 2) / 2


def _rational(z, numerator, denominator):
    """N(z) / D(z), each by Horner's rule, coefficients highest degree first."""
    num = numerator[0] * z
    den = denominator[0] * z
    for a, b in zip(numerator[1:-1], denominator[1:-1]):
        num += a
        num *= z
        den += b
        den *= z
    num += numerator[-1]
    den += denominator[-1]
    return num / den


def _exp_minus_square(y):
    """exp(-y^2) = exp(-s^2) exp(-(y - s)(y + s)),  s = y rounded to a multiple of 1/16 (Cody's
    split: s^2 is exact, so rounding y^2 costs no relative accuracy where exp(-y^2) is tiny)."""
    xp = get_array_module(y)
    s = (y * 16).round() / 16
    return xp.exp(-s * s) * xp.exp(-(y - s) * (y + s))


def _erfc_tail(y):
    """erfc(y) for y >= 0.5 (Cody's ranges 2 and 3); each range is evaluated on its own clipped
    copy of y, so no overflow or division by zero can happen, and a NaN stays NaN."""
    xp = get_array_module(y)
    y2 = xp.clip(y, 0.5, 4.0)
    range2 = _rational(y2, _CODY_R2_NUM, _CODY_R2_DEN)  # exp(y^2) erfc(y)
    y3 = xp.clip(y, 4.0, _ERFC_ZERO_FROM)
    z = 1 / (y3 * y3)
    range3 = (_INV_SQRT_PI - z * _rational(z, _CODY_R3_NUM, _CODY_R3_DEN)) / y3
    return xp.where(y <= 4.0, range2, range3) * _exp_minus_square(
        xp.minimum(y, _ERFC_ZERO_FROM))


def _erf_small(x):
    """erf(x) = x R1(x^2) for |x| <= 0.5 (Cody's range 1), on x clipped to [-0.5, 0.5]."""
    xp = get_array_module(x)
    x1 = xp.clip(x, -0.5, 0.5)
    return x1 * _rational(x1 * x1, _CODY_R1_NUM, _CODY_R1_DEN)


def erf_cody(x):
    """erf(x) to float64 accuracy (Cody 1969): x R1(x^2) for |x| <= 0.5, else
    sign(x) (1 - erfc(|x|)). Odd, so erf(-0.0) = -0.0; erf(+-inf) = +-1; NaN stays NaN."""
    xp = get_array_module(x)
    y = xp.abs(x)
    large = 1 - _erfc_tail(y)
    large = xp.where(x < 0, -large, large)
    return xp.where(y <= 0.5, _erf_small(x), large)


def erfc_cody(x):
    """erfc(x) = 1 - erf(x) to float64 accuracy, also in the tail (Cody 1969): 1 - x R1(x^2) for
    |x| <= 0.5, exp(-x^2) R(x) above, 2 - erfc(|x|) below -0.5."""
    xp = get_array_module(x)
    y = xp.abs(x)
    tail = _erfc_tail(y)
    tail = xp.where(x < 0, 2 - tail, tail)
    return xp.where(y <= 0.5, 1 - _erf_small(x), tail)


def erf_array(x, gauss=None):
    """erf(x): Cody (1969) for float64 input, A&S 7.1.26 for float32 (module docstring).
    ``gauss`` may pass exp(-x^2) when the caller has it; only the float32 method uses it."""
    if x.dtype == "float64":
        return erf_cody(x)
    return erf_abramowitz_stegun(x, gauss)


def erfc_array(x):
    """erfc(x) = 1 - erf(x) with full relative accuracy in the tail (Cody 1969), in float64;
    narrower input is computed in float64 and rounded back to its dtype."""
    if x.dtype == "float64":
        return erfc_cody(x)
    return erfc_cody(x.astype("float64")).astype(x.dtype)


def normal_cdf_array(x):
    """Phi(x) = P(N(0, 1) <= x) = erfc(-x / sqrt 2) / 2, the GELU's weight (eq. 8.10).

    float64: Cody's erfc, so Phi keeps its relative accuracy in the far left tail, where
    (1 + erf) / 2 would cancel. float32: (1 + erf(x / sqrt 2)) / 2 with A&S 7.1.26 in place, the
    fast path of training (|error| about 2.4e-7 in float32 arithmetic)."""
    xp = get_array_module(x)
    if x.dtype == "float64":
        cdf = erfc_cody(x * -_HALF_SQRT2_INV)
        cdf *= 0.5
        return cdf
    gauss = x * x
    gauss *= -0.5
    gauss = xp.exp(gauss)  # exp(-x^2/2) = exp(-(x/sqrt 2)^2)
    cdf = erf_abramowitz_stegun(x * _HALF_SQRT2_INV, gauss)  # erf(x / sqrt 2)
    cdf += 1.0
    cdf *= 0.5
    return cdf
