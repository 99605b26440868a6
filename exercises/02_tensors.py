"""Chapter 02 exercises: tensors, broadcasting and the matmul gradient. Grade them with

    python exercises/grade.py 02

Each function replaces one piece of tinyllm while the chapter's real tests run (see
exercises/README.md). Arrays are NumPy (or CuPy) arrays, not Tensors.
"""

from __future__ import annotations


def unbroadcast(grad, shape):
    """Replaces ``tinyllm.autograd.unbroadcast``: undo broadcasting in a gradient (eq. 2.3).

    ``grad`` has the broadcast shape, ``shape`` is the input's. Sum ``grad`` over the leading axes
    that broadcasting prepended and over every axis where ``shape`` has 1 but ``grad`` does not,
    and return an array of exactly ``shape``. Example: grad (4, 2, 3) for shape (2, 1) -> sum over
    axis 0 and axis 2 (keepdims), giving (2, 1).
    """
    raise NotImplementedError("exercise 02.1: sum the broadcast axes, return an array of shape")


def sum_backward(self, grad):
    """Replaces ``tinyllm.ops.Sum.backward``.  y = sum of x over some axes   (eq. 2.4)

    dL/dx = g copied along every summed axis. The forward saved ``self.input_shape`` and
    ``self.axes`` (a tuple of non-negative axes); ``self.keepdims`` says whether y kept them as
    length 1. Hint: put the summed axes back as length 1 (``xp.expand_dims``), then
    ``xp.broadcast_to`` the input shape; ``xp = tinyllm.backend.get_array_module(grad)``.
    """
    raise NotImplementedError("exercise 02.2: expand grad back to self.input_shape")


def matmul_backward(self, grad):
    """Replaces ``tinyllm.ops.MatMul.backward``.  Z = A @ B   (eqs. 2.6, 2.7)

    dL/dA = G B^T,   dL/dB = A^T G   (G = dL/dZ), for matrices A (M, K), B (K, N) and batches of
    them (..., M, K) @ (..., K, N); the engine sums broadcast batch axes away itself. A 1-D A is a
    row (1, K) and a 1-D B a column (K, 1), as in NumPy: drop that axis again in its gradient.
    The forward saved ``self.a`` and ``self.b``. The helper ``tinyllm.ops._as_matrices(a, b, g)``
    turns vectors into matrices (and folds a batch of A's against one matrix B into rows, eq. 2.7);
    you may use it.
    """
    raise NotImplementedError("exercise 02.3: return (G @ B^T, A^T @ G) in the inputs' shapes")


# number, the library attribute it replaces, your function, the tests that grade it
EXERCISES = (
    ("02.1", "tinyllm.autograd:unbroadcast", unbroadcast,
     ("tests/test_02_tensors.py::test_binary_gradient_is_the_hand_sum_over_broadcast_axes",)),
    ("02.2", "tinyllm.ops:Sum.backward", sum_backward,
     ("tests/test_02_tensors.py::test_reduction_closed_forms",)),
    ("02.3", "tinyllm.ops:MatMul.backward", matmul_backward,
     ("tests/test_02_tensors.py::test_matmul_closed_form",
      "tests/test_02_tensors.py::test_matmul_closed_form_shared_weight")),
)
