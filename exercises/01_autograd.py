"""Chapter 01 exercises: autograd from scratch. Fill in the bodies, then grade them:

    python exercises/grade.py 01

Each function replaces one piece of tinyllm while the chapter's real tests run (see
exercises/README.md). ``self`` is the op object: what ``forward`` saved on it is there for
``backward``. Arrays are NumPy (or CuPy) arrays, not Tensors.
"""

from __future__ import annotations


def mul_backward(self, grad):
    """Replaces ``tinyllm.ops.Mul.backward``.  z = a * b   (chapter 01, table 1.1, eq. 1.4)

    dL/da = g * b,   dL/db = g * a,   with g = dL/dz (same shape as z).
    The forward saved ``self.a`` and ``self.b``. ``self.needs_input_grad`` is a pair of bools; an
    input that needs no gradient may get ``None`` instead. Return the pair (dL/da, dL/db), in the
    broadcast shape of z (the engine sums the broadcast axes away, chapter 02).
    """
    raise NotImplementedError("exercise 01.1: return (grad * b, grad * a)")


def tanh_backward(self, grad):
    """Replaces ``tinyllm.ops.Tanh.backward``.  y = tanh(x)   (chapter 01, eq. 1.7)

    dL/dx = g * (1 - y**2). The forward saved the output as ``self.y``; use it, not x.
    Returns one array of x's shape.
    """
    raise NotImplementedError("exercise 01.2: the local derivative of tanh, times grad")


def topological_order(root):
    """Replaces ``tinyllm.tensor.topological_order``: the nodes ``backward`` visits (section 1.4).

    Returns a list of the Tensors reachable from ``root`` that need a gradient
    (``t.requires_grad``), each *after* all of its inputs, ``root`` last; every node once.
    A node's inputs are ``node._fn.inputs`` (``node._fn`` is None for a leaf). A Tensor's ``==``
    is elementwise, so remember the visited nodes as a set of ``id(node)``. The tests build a
    chain 10,000 ops deep, so use an explicit stack rather than recursion.
    """
    raise NotImplementedError("exercise 01.3: a depth-first search with an explicit stack")


# number, the library attribute it replaces, your function, the tests that grade it
EXERCISES = (
    ("01.1", "tinyllm.ops:Mul.backward", mul_backward,
     ("tests/test_01_autograd.py::test_node_used_twice_gets_both_contributions",
      "tests/test_01_autograd.py::test_diamond_graph")),
    ("01.2", "tinyllm.ops:Tanh.backward", tanh_backward,
     ("tests/test_01_autograd.py::test_neuron_tanh_closed_form",)),
    ("01.3", "tinyllm.tensor:topological_order", topological_order,
     ("tests/test_01_autograd.py::test_diamond_with_shared_intermediate",
      "tests/test_01_autograd.py::test_chain_of_depth_ten_thousand")),
)
