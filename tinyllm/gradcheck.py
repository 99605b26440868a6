"""Finite-difference gradient checking (chapter 01, section "Trust, but verify").

For a function f with output y and a *random* output cotangent v, the scalar L = <v, f(x)> has
gradient dL/dx = J^T v, which is what ``backward(v)`` computes. Central differences estimate each
entry:

    dL/dx_i  ~  (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)          error O(eps^2)       (eq. 1.9)

A random v (rather than ``.sum()``, i.e. v = 1) makes sure every output entry and every Jacobian
row is tested with its own weight, so errors cannot cancel. In float64 with eps = 1e-6 the estimate
is good to about 1e-10 (relative) for smooth functions of moderate size.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from tinyllm.autograd import no_grad
from tinyllm.backend import to_numpy
from tinyllm.tensor import Tensor


class GradcheckError(AssertionError):
    """Analytic and numeric gradients disagree; the message names the worst entry."""


def _outputs(result) -> list[Tensor]:
    return list(result) if isinstance(result, (list, tuple)) else [result]


def gradcheck(fn: Callable[..., Tensor | Sequence[Tensor]], *inputs: Tensor, eps: float = 1e-6,
              atol: float = 1e-5, rtol: float = 1e-4, seed: int = 0) -> bool:
    """Check ``backward`` of ``fn`` against central differences for every input that requires grad.

    ``fn`` takes the tensors ``inputs`` and returns a Tensor or a sequence of Tensors. Inputs that
    require a gradient must be float64. Returns True, or raises :class:`GradcheckError` with the
    worst element, its analytic and numeric values, when |analytic - numeric| > atol + rtol *
    |numeric| anywhere.
    """
    variables = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    if not variables:
        raise ValueError("gradcheck: no input has requires_grad=True, so there is nothing to check")
    for t in variables:
        if t.dtype != np.float64:
            raise TypeError(
                f"gradcheck needs float64 inputs (got {t.dtype}): in float32 a central difference "
                "keeps only about a third of its digits at best. Create the inputs with "
                "dtype=np.float64."
            )
    rng = np.random.default_rng(seed)

    # Analytic: one backward pass per output with its random cotangent v.
    for t in variables:
        t.grad = None
    outputs = _outputs(fn(*inputs))
    cotangents = [rng.standard_normal(out.shape) for out in outputs]
    for index, (out, v) in enumerate(zip(outputs, cotangents)):
        if out.requires_grad:
            out.backward(v, retain_graph=index < len(outputs) - 1)
    analytic = [np.zeros(t.shape) if t.grad is None else to_numpy(t.grad.data) for t in variables]

    def scalar_loss() -> float:  # L = sum over outputs of <v, f(x)>
        with no_grad():
            return sum(float(np.sum(to_numpy(out.data) * v))
                       for out, v in zip(_outputs(fn(*inputs)), cotangents))

    # Numeric: central differences, one entry at a time (a test helper, not a hot path).
    for which, (t, grad) in enumerate(zip(variables, analytic)):
        numeric = np.zeros(t.shape)
        t.data = t.data.copy()  # contiguous and our own, so that reshape(-1) below is a view
        flat = t.data.reshape(-1)  # a view: writing into it perturbs t in place
        for i in range(flat.size):
            original = flat[i].item()
            flat[i] = original + eps
            plus = scalar_loss()
            flat[i] = original - eps
            minus = scalar_loss()
            flat[i] = original
            numeric.reshape(-1)[i] = (plus - minus) / (2 * eps)
        error = np.abs(grad - numeric) - (atol + rtol * np.abs(numeric))
        if error.size and error.max() > 0:
            worst = np.unravel_index(np.argmax(error), error.shape)
            raise GradcheckError(
                f"gradcheck failed for input {which} (shape {t.shape}) "
                f"at index {tuple(int(i) for i in worst)}: "
                f"analytic {grad[worst]:.8g}, numeric {numeric[worst]:.8g} "
                f"(difference {abs(grad[worst] - numeric[worst]):.3g}, atol {atol}, rtol {rtol})"
            )
    return True
