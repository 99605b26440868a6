"""Chapter 06 exercises: scaled dot-product attention, the mask, the fused forward and backward.
Grade them with

    python exercises/grade.py 06

Each function replaces one piece of ``tinyllm/nn/attention.py`` while the chapter's real tests run
(see exercises/README.md). Arrays are NumPy or CuPy: use ``xp = get_array_module(q)`` from
``tinyllm.backend``. Shapes: q (..., T_q, D), k (..., T_k, D), v (..., T_k, D_v).
"""

from __future__ import annotations


def attention_mask(mask, is_causal, scores_shape, like):
    """Replaces ``tinyllm.nn.attention.attention_mask``: which (query, key) pairs may attend.

    Returns a boolean array broadcastable to ``scores_shape`` (..., T_q, T_k), True = allowed, or
    None when nothing is masked. ``mask`` (None, a bool array or a bool Tensor: use ``mask.data``)
    is taken as it is; ``is_causal`` adds the bottom-right aligned lower triangle
    key j allowed for query i  <=>  j <= i + (T_k - T_q)   (eq. 6.7)
    (``xp.tri(T_q, T_k, k=..., dtype=bool)``), combined with ``mask`` by "and". Build the triangle
    with the array module of ``like`` (an array on the right device).
    """
    raise NotImplementedError("exercise 06.1: the causal triangle of eq. 6.7, and-ed with mask")


def attention_forward(self, q, k, v):
    """Replaces ``tinyllm.nn.attention.ScaledDotProductAttention.forward``  (eqs. 6.3-6.6, 6.8)

    S = Q K^T / sqrt(D)  (..., T_q, T_k);  masked pairs (``~self.allowed``, if not None) -> -inf;
    P = softmax(S) along the keys, subtracting the row max; a row with every key masked gives
    P = 0 (not nan: eq. 6.8);  O = P V  (..., T_q, D_v).
    Save for the backward: ``self.q, self.k, self.v``, ``self.weights = P``,
    ``self.scale = 1 / sqrt(D)`` and ``self.out = O``. You may ignore dropout
    (``self.dropout_p`` is 0 in the graded tests).
    """
    raise NotImplementedError("exercise 06.2: scores, mask, stable softmax, weights @ v")


def attention_backward(self, grad):
    """Replaces ``tinyllm.nn.attention.ScaledDotProductAttention.backward``  (eqs. 6.10-6.14)

    g = dL/dO (..., T_q, D_v), P = self.weights, O = self.out:
        dV = P^T g                                   (6.10)   (..., T_k, D_v)
        dP = g V^T                                   (6.11)   (..., T_q, T_k)
        dS = P * (dP - rowsum(g * O))                (6.12, 6.13)
        dQ = dS K * scale,   dK = dS^T Q * scale     (6.14)
    Return (dQ, dK, dV). No dropout in the graded tests.
    """
    raise NotImplementedError("exercise 06.3: eqs. 6.10-6.14")


# number, the library attribute it replaces, your function, the tests that grade it
EXERCISES = (
    ("06.1", "tinyllm.nn.attention:attention_mask", attention_mask,
     ("tests/test_06_attention.py::test_causal_is_bottom_right_aligned",
      "tests/test_06_attention.py::test_causal_output_ignores_the_future")),
    ("06.2", "tinyllm.nn.attention:ScaledDotProductAttention.forward", attention_forward,
     ("tests/test_06_attention.py::test_masked_keys_get_exactly_zero_weight",
      "tests/test_06_attention.py::test_fully_masked_row_is_zero_not_nan"
      "[scaled_dot_product_attention]")),
    ("06.3", "tinyllm.nn.attention:ScaledDotProductAttention.backward", attention_backward,
     ("tests/test_06_attention.py::test_backward_equations_vs_autograd_vs_finite_differences",)),
)
