"""Special functions that NumPy lacks, on numpy or cupy arrays (chapter 01, table 1.2; chapter 08).

``erf_array`` is the forward pass of the ``Erf`` op (``ops.py``) and of the exact GELU.
"""

from __future__ import annotations

from tinyllm.backend import get_array_module

# Abramowitz & Stegun (1964) 7.1.26, |error| <= 1.5e-7. The published coefficients sum to 1 - 1e-9,
# so erf would jump by 2e-9 at 0; rescaled to sum to exactly 1, it is continuous (same error bound).
_ERF_P = 0.3275911
_ERF_PUBLISHED = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
_ERF_A = tuple(a / sum(_ERF_PUBLISHED) for a in _ERF_PUBLISHED)


def erf_array(x, gauss=None):
    """erf(x) = sign(x) (1 - (a1 t + ... + a5 t^5) exp(-x^2)),  t = 1 / (1 + p |x|)   (A&S 7.1.26);
    ``gauss`` may pass exp(-x^2) when the caller has it already."""
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
