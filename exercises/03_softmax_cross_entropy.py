"""Chapter 03 exercises: softmax and log-softmax, forward and backward; cross-entropy. Grade with

    python exercises/grade.py 03

Each function replaces one method of the fused ops in ``tinyllm/nn/softmax.py``, or the loss of
``tinyllm/nn/losses.py``, while the chapter's real tests run (see exercises/README.md).
``self.axis`` is the axis of the probabilities. Arrays are NumPy or CuPy: some tests run on
``device="cuda"`` (a strict stand-in without a GPU), so take the array module from the input,
``xp = get_array_module(x)`` from ``tinyllm.backend``, instead of calling ``np.exp``.
"""

from __future__ import annotations


def softmax_forward(self, x):
    """Replaces ``tinyllm.nn.softmax.Softmax.forward``   (eqs. 3.1, 3.3)

    y = exp(x - max x) / sum(exp(x - max x)) along ``self.axis`` (keepdims), same shape as x.
    Subtracting the max changes nothing (eq. 3.2) but keeps exp from overflowing: a score of 1e4
    must give exactly 1, not nan. Save ``self.y = y``: the backward uses it.
    """
    raise NotImplementedError("exercise 03.1: shift by the max, exponentiate, normalise")


def softmax_backward(self, grad):
    """Replaces ``tinyllm.nn.softmax.Softmax.backward``   (eqs. 3.4, 3.5)

    With J = diag(y) - y y^T, the vector-Jacobian product is
    dL/dx = J^T g = y * (g - sum(g * y, axis)), the sum with keepdims along ``self.axis``.
    ``self.y`` is what the forward returned. Do not build J: it is (n, n) per slice.
    """
    raise NotImplementedError("exercise 03.2: y * (g - <g, y>)")


def log_softmax_forward(self, x):
    """Replaces ``tinyllm.nn.softmax.LogSoftmax.forward``   (eq. 3.6)

    y = x - m - log(sum(exp(x - m))) along ``self.axis``, with m = max x (keepdims). The sum lies
    in [1, n], so the log never sees 0: log_softmax([1e4, 0]) must be exactly [0, -1e4].
    Save ``self.y = y``: the backward recomputes softmax(x) as exp(y).
    """
    raise NotImplementedError("exercise 03.3: x - max - log(sum(exp(x - max)))")


def log_softmax_backward(self, grad):
    """Replaces ``tinyllm.nn.softmax.LogSoftmax.backward``   (eq. 3.7)

    dL/dx = g - softmax(x) * sum(g, axis), softmax(x) = exp(self.y), the sum with keepdims.
    """
    raise NotImplementedError("exercise 03.4: g - exp(y) * sum(g)")


def cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """Replaces ``tinyllm.nn.losses.cross_entropy`` (a Tensor function)   (eqs. 3.8, 3.12, 3.13)

    logits (N, V) (or (..., V): flatten the leading axes), integer targets t (N,) (an array, a list
    or an integer Tensor: use ``.data``). With log p = log_softmax(logits) (``tinyllm.nn.functional
    .log_softmax``) and eps = ``label_smoothing``:
        loss_n = -(1 - eps) log p_n[t_n] - eps * mean_j log p_nj          (eqs. 3.8, 3.12)
    Rows whose target is ``ignore_index`` count as 0 and get a zero gradient. ``reduction``:
    "mean" over the kept rows (0 if none is kept, eq. 3.13), "sum", or "none" (the targets' shape).
    Build it from Tensor operations (indexing ``log_p[rows, t]`` is differentiable); autograd
    gives the gradient softmax - q (eq. 3.11).
    """
    raise NotImplementedError("exercise 03.5: -log p of the targets, smoothed, masked, reduced")


# number, the library attribute it replaces, your function, the tests that grade it
EXERCISES = (
    ("03.1", "tinyllm.nn.softmax:Softmax.forward", softmax_forward,
     ("tests/test_03_softmax.py::test_softmax_sums_to_one_and_is_shift_invariant[cpu]",
      "tests/test_03_softmax.py::test_softmax_sums_to_one_and_is_shift_invariant[cuda]")),
    ("03.2", "tinyllm.nn.softmax:Softmax.backward", softmax_backward,
     ("tests/test_03_softmax.py::test_softmax_vjp_equals_jacobian_closed_form",)),
    ("03.3", "tinyllm.nn.softmax:LogSoftmax.forward", log_softmax_forward,
     ("tests/test_03_softmax.py::test_stable_at_plus_minus_1e4[cpu-float64]",
      "tests/test_03_softmax.py::test_stable_at_plus_minus_1e4[cuda-float32]")),
    ("03.4", "tinyllm.nn.softmax:LogSoftmax.backward", log_softmax_backward,
     ("tests/test_03_softmax.py::test_log_softmax_backward_closed_form",)),
    ("03.5", "tinyllm.nn.losses:cross_entropy", cross_entropy,
     ("tests/test_03_softmax.py::test_cross_entropy_gradient_is_softmax_minus_onehot",
      "tests/test_03_softmax.py::test_label_smoothing_closed_form",
      "tests/test_03_softmax.py::test_all_targets_ignored_gives_zero_loss_and_zero_gradient")),
)
