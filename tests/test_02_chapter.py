"""Chapter 02's equations that tests/test_02_tensors.py does not check one by one: the broadcasting
shape rule (eq. 2.1), the broadcast copy as an index map (eq. 2.2), and the entries of the matrix
product's Jacobian (eq. 2.5). All float64.
"""

import itertools

import numpy as np
import pytest

import tinyllm as tl

pytestmark = pytest.mark.ch02


def rule_2_1(shape_a: tuple, shape_b: tuple) -> tuple | None:
    """Eq. 2.1 by hand: align on the right, pad with 1s; n_out = max, allowed iff equal or 1."""
    rank = max(len(shape_a), len(shape_b))
    a = (1,) * (rank - len(shape_a)) + shape_a
    b = (1,) * (rank - len(shape_b)) + shape_b
    if any(n != m and min(n, m) != 1 for n, m in zip(a, b)):
        return None
    return tuple(max(n, m) for n, m in zip(a, b))


SHAPES = [(), (1,), (3,), (2,), (1, 3), (2, 1), (2, 3), (4, 1, 3), (4, 2, 3), (3, 2)]


@pytest.mark.parametrize("shape_a, shape_b", list(itertools.product(SHAPES, SHAPES)), ids=str)
def test_the_broadcast_shape_rule(shape_a, shape_b):
    """Eq. 2.1: the output shape of a + b, or a ValueError naming both shapes where it forbids."""
    a, b = tl.tensor(np.ones(shape_a)), tl.tensor(np.ones(shape_b))
    expected = rule_2_1(shape_a, shape_b)
    if expected is None:
        with pytest.raises(ValueError, match="broadcast"):
            a + b
    else:
        assert (a + b).shape == expected


def test_a_broadcast_reads_each_entry_through_an_index_map():
    """Eq. 2.2: the broadcast copy of x (3, 1) to (2, 3, 4) is x_{pi(i)} with pi dropping the
    prepended axis and sending the stretched axis to 0; its gradient sums over pi's preimages
    (eq. 2.3)."""
    rng = np.random.default_rng(0)
    x_values = rng.standard_normal((3, 1))
    x = tl.tensor(x_values, requires_grad=True)
    copy = x * tl.tensor(np.ones((2, 3, 4)))                      # (2, 3, 4)
    out = copy.numpy()
    for b, i, j in itertools.product(range(2), range(3), range(4)):
        assert out[b, i, j] == x_values[i, 0]                     # x_{pi(b, i, j)} = x_{i, 0}
    g = rng.standard_normal((2, 3, 4))
    copy.backward(g)
    hand = np.array([[sum(g[b, i, j] for b in range(2) for j in range(4))] for i in range(3)])
    np.testing.assert_allclose(x.grad.numpy(), hand, rtol=1e-13)


def test_matmul_jacobian_entries():
    """Eq. 2.5: dZ_mn/dA_ik = delta_mi B_kn and dZ_mn/dB_kj = A_mk delta_nj, entry by entry, with a
    one-hot cotangent per output entry (each backward gives one row of the Jacobian)."""
    rng = np.random.default_rng(1)
    A_values, B_values = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    for m, n in itertools.product(range(2), range(4)):
        A = tl.tensor(A_values, requires_grad=True)
        B = tl.tensor(B_values, requires_grad=True)
        one_hot = np.zeros((2, 4))
        one_hot[m, n] = 1.0
        (A @ B).backward(one_hot)
        dA = np.array([[(m == i) * B_values[k, n] for k in range(3)] for i in range(2)])
        dB = np.array([[A_values[m, k] * (n == j) for j in range(4)] for k in range(3)])
        np.testing.assert_array_equal(A.grad.numpy(), dA)
        np.testing.assert_array_equal(B.grad.numpy(), dB)
