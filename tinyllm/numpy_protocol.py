"""What NumPy does when it meets a Tensor (chapter 02, "Tensors and NumPy").

NumPy hands a Tensor to two hooks of the class (NEP 13 and NEP 18):

- ``__array_ufunc__`` for every ufunc call. ``array * t`` is one: ``ndarray.__mul__`` calls
  ``np.multiply(array, t)``, so a binary operator with a NumPy array (or scalar) on the left ends
  here, and :func:`array_ufunc` answers it with the Tensor's reflected operator (``t.__rmul__``),
  as if Python had asked the Tensor first. Every other ufunc (``np.exp(t)``, ``np.add(a, t,
  out=a)``) would leave the graph without a word, so it is a TypeError that names the tinyllm
  function to use.
- ``__array_function__`` for NumPy's other functions (``np.sum(t)``, ``np.concatenate``):
  :func:`refuse_array_function`, the same kind of TypeError.

``np.asarray(t)`` is allowed for a tensor outside the graph (``Tensor.__array__``).
"""

from __future__ import annotations

# array <op> t  ->  the Tensor's method that computes it with the array as the left operand
REFLECTED = {
    "add": "__radd__",
    "subtract": "__rsub__",
    "multiply": "__rmul__",
    "divide": "__rtruediv__",  # np.true_divide's name in NumPy 2
    "true_divide": "__rtruediv__",
    "matmul": "__rmatmul__",
    "equal": "__eq__",  # a == t is t == a
    "not_equal": "__ne__",
    "less": "__gt__",  # a < t is t > a
    "less_equal": "__ge__",
    "greater": "__lt__",
    "greater_equal": "__le__",
}
FUNCTIONS = ("concatenate", "maximum", "split", "stack", "where", "erf")  # tl.<name>(...)


def suggestion(tensor_class: type, name: str) -> str:
    """The tinyllm spelling of NumPy's ``name``: a Tensor method, a ``tl`` function, or none."""
    if name in FUNCTIONS:
        return f"use tl.{name}(...)"
    if hasattr(tensor_class, name):
        return f"use t.{name}(...)"
    return f"tinyllm has no {name}; apply it to t.numpy(), outside the graph"


def array_ufunc(tensor, ufunc, method: str, inputs: tuple, kwargs: dict):
    """``array <op> tensor`` as the Tensor's reflected operator; any other ufunc: TypeError."""
    reflected = REFLECTED.get(ufunc.__name__)
    if method == "__call__" and reflected and not kwargs and len(inputs) == 2 \
            and inputs[1] is tensor:
        return getattr(tensor, reflected)(inputs[0])
    name = f"np.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
    if "out" in kwargs:
        raise TypeError(f"{name}(..., out=...) cannot write into or from a tinyllm Tensor: "
                        "write the operation with tensors, e.g. a = a + t")
    raise TypeError(f"{name} does not take a tinyllm Tensor: "
                    f"{suggestion(type(tensor), ufunc.__name__)}")


def refuse_array_function(tensor_class: type, func) -> None:
    """``np.sum(t)``, ``np.concatenate([t, t])``: a TypeError that names tinyllm's function."""
    raise TypeError(f"{func.__module__}.{func.__name__} does not take a tinyllm Tensor: "
                    f"{suggestion(tensor_class, func.__name__)}")
