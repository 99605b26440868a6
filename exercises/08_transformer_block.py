"""Chapter 08 exercises: the Linear layer and LayerNorm, forward and backward. Grade them with

    python exercises/grade.py 08

Each function replaces one piece of tinyllm while the chapter's real tests run (see
exercises/README.md). Arrays are NumPy or CuPy: use ``xp = get_array_module(x)`` from
``tinyllm.backend``.
"""

from __future__ import annotations


def linear_forward(self, x):
    """Replaces ``tinyllm.nn.layers.Linear.forward`` (a Tensor method: x and the result are Tensors)

    y = x @ W + b for x (..., in_features), W = ``self.weight`` (in_features, out_features) and
    b = ``self.bias`` (out_features,) or None. Returns (..., out_features). Autograd does the
    gradients: write it with Tensor operations.
    """
    raise NotImplementedError("exercise 08.1: x @ weight, plus the bias if there is one")


def layer_norm_forward(self, x, *params):
    """Replaces ``tinyllm.nn.normalization.LayerNormFunction.forward``   (eqs. 8.1-8.4)

    Over the last axis C:  mu = mean(x),  var = mean((x - mu)^2) (biased: divide by C),
    x_hat = (x - mu) / sqrt(var + eps),  y = x_hat * gamma + beta.
    ``params`` is (gamma,) if ``self.has_weight``, then (beta,) if ``self.has_bias``: gamma is
    ``params[0]`` and beta ``params[-1]`` when present. ``self.eps`` is eps. For the backward save
    ``self.x_hat`` (..., C), ``self.rstd = 1 / sqrt(var + eps)`` (..., 1) and ``self.weight``
    (gamma, or None).
    """
    raise NotImplementedError("exercise 08.2: normalise over the last axis, then scale and shift")


def layer_norm_backward(self, grad):
    """Replaces ``tinyllm.nn.normalization.LayerNormFunction.backward``   (eqs. 8.5, 8.7)

    With g = dL/dy (..., C) and g_hat = g * gamma (g itself without gamma):
        dL/dgamma = sum over the leading axes of g * x_hat        (C,)
        dL/dbeta  = sum over the leading axes of g                (C,)
        dL/dx = rstd * (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat)),  means over C
    Return (dL/dx,), then dL/dgamma if ``self.has_weight``, then dL/dbeta if ``self.has_bias``.
    """
    raise NotImplementedError("exercise 08.3: eq. 8.7 for x, eq. 8.5 for gamma and beta")


# number, the library attribute it replaces, your function, the tests that grade it
EXERCISES = (
    ("08.1", "tinyllm.nn.layers:Linear.forward", linear_forward,
     ("tests/test_08_layers.py::test_linear_is_x_times_weight_plus_bias",
      "tests/test_08_layers.py::test_linear_closed_form_gradients")),
    ("08.2", "tinyllm.nn.normalization:LayerNormFunction.forward", layer_norm_forward,
     ("tests/test_08_transformer.py::"
      "test_layer_norm_matches_the_definition_with_biased_variance_and_eps",
      "tests/test_08_transformer.py::test_layer_norm_rows_have_mean_zero_and_unit_variance")),
    ("08.3", "tinyllm.nn.normalization:LayerNormFunction.backward", layer_norm_backward,
     ("tests/test_08_transformer.py::"
      "test_layer_norm_backward_closed_form_vs_autograd_vs_finite_differences",
      "tests/test_08_transformer.py::test_layer_norm_jacobian_closed_form")),
)
