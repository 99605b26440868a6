"""Chapter 05 exercises: sinusoidal positions and rotary embeddings (RoPE). Grade them with

    python exercises/grade.py 05

Each function replaces one piece of ``tinyllm/nn/positional.py`` while the chapter's real tests
run (see exercises/README.md).
"""

from __future__ import annotations


def sinusoidal_table(context_length, d_model, base=10000.0):
    """Replaces ``tinyllm.nn.positional.sinusoidal_table``   (eqs. 5.2, 5.3)

    The (context_length, C) float64 NumPy table
        PE[pos, 2i] = sin(pos * w_i),   PE[pos, 2i + 1] = cos(pos * w_i),   w_i = base^(-2i / C)
    for i = 0 .. C/2 - 1. Whole-array NumPy: an outer product of positions and frequencies, no
    loop over positions.
    """
    raise NotImplementedError("exercise 05.1: angles = outer(positions, frequencies)")


def rotary_angles(context_length, head_dim, base=10000.0):
    """Replaces ``tinyllm.nn.positional.rotary_angles``   (eq. 5.8)

    The (context_length, D/2) float64 NumPy table theta[t, i] = t * base^(-2i / D),
    i = 0 .. D/2 - 1 (D = head_dim, even).
    """
    raise NotImplementedError("exercise 05.2: positions times frequencies")


def rotary_forward(self, x):
    """Replaces ``tinyllm.nn.positional.Rotary.forward``: rotate pairs of coordinates (eq. 5.7)

    x (..., T, D). Coordinate i is paired with i + D/2 (the two halves of the head) and the pair
    is rotated by the angle theta[t, i]:
        y_i       = x_i cos - x_{i+D/2} sin,
        y_{i+D/2} = x_{i+D/2} cos + x_i sin.
    The op was built with ``self.cos_full = [cos, cos]`` and ``self.sin_signed = [-sin, sin]``,
    both (..., T, D) (the halves concatenated), so y = x * cos_full + swap_halves(x) * sin_signed.
    """
    raise NotImplementedError("exercise 05.3: x * cos_full + swap_halves(x) * sin_signed")


def rotary_backward(self, grad):
    """Replaces ``tinyllm.nn.positional.Rotary.backward``   (eq. 5.10)

    A rotation R is orthogonal, so dL/dx = R^T g = R_(-theta) g: the same rotation with the
    angle negated (sin -> -sin). Returns (..., T, D).
    """
    raise NotImplementedError("exercise 05.4: rotate grad back by -theta")


# number, the library attribute it replaces, your function, the tests that grade it
EXERCISES = (
    ("05.1", "tinyllm.nn.positional:sinusoidal_table", sinusoidal_table,
     ("tests/test_05_positional.py::test_sinusoidal_table_matches_the_formula_entry_by_entry",
      "tests/test_05_positional.py::test_wavelengths_go_from_2pi_to_nearly_2pi_times_10000")),
    ("05.2", "tinyllm.nn.positional:rotary_angles", rotary_angles,
     ("tests/test_05_positional.py::test_rope_matches_the_pairwise_rotation_formula",
      "tests/test_05_positional.py::test_rope_with_d2_is_complex_multiplication")),
    ("05.3", "tinyllm.nn.positional:Rotary.forward", rotary_forward,
     ("tests/test_05_positional.py::test_rope_preserves_norms",
      "tests/test_05_positional.py::test_rope_dot_product_depends_only_on_relative_position")),
    ("05.4", "tinyllm.nn.positional:Rotary.backward", rotary_backward,
     ("tests/test_05_positional.py::test_rope_backward_is_the_inverse_rotation",)),
)
