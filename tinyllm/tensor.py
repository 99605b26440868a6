"""Tensor and reverse-mode automatic differentiation (chapter 01, autograd from scratch; chapter 02, tensors).

A :class:`Tensor` wraps an array (``.data``) and, when it was made by an op, remembers the op that made it
(``._fn``, a :class:`Function` holding its inputs). ``loss.backward()`` walks that graph from the loss back to
the leaves in reverse topological order and applies the chain rule (chapter 01, eq. 1.4):

    dL/dx = sum over the ops f that consumed x of  (dL/df) * (df/dx)

Each op's ``backward`` only says how to multiply an incoming gradient by its local derivative; the engine
does the rest, in one place: ordering the nodes, summing the contributions of a node used twice, and undoing
broadcasting (chapter 02, eq. 2.3) with a shape assertion before anything is accumulated.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

from tinyllm.backend import (
    DeviceError,
    device_of,
    get_array_module,
    to_device,
    to_numpy,
)

DEFAULT_DTYPE = np.float32

# --------------------------------------------------------------------------------------------------------
# Gradient mode
# --------------------------------------------------------------------------------------------------------

_grad_enabled = True


def is_grad_enabled() -> bool:
    """False inside ``with no_grad():``."""
    return _grad_enabled


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Context manager (and decorator) in which ops record no graph: for evaluation and parameter updates."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


# --------------------------------------------------------------------------------------------------------
# Function: one node of the graph
# --------------------------------------------------------------------------------------------------------


class Function:
    """Base of every differentiable op (see ``ops.py``).

    A subclass writes ``forward(*arrays) -> array`` and ``backward(grad) -> gradient or tuple of gradients``,
    one per input (``None`` for an input with no gradient, e.g. a condition or an index). Both work on raw
    arrays. ``backward`` may return a gradient with the *broadcast* shape: the engine reduces it.
    ``self.needs_input_grad`` (one bool per input) lets an expensive backward skip gradients nobody needs.
    """

    def apply(self, *inputs: "Tensor") -> "Tensor":
        """Run ``forward`` on the inputs' arrays; record the node if any input needs a gradient."""
        device = inputs[0].device
        for t in inputs[1:]:
            if t.device != device:
                raise DeviceError(
                    f"{type(self).__name__} got tensors on {device!r} and {t.device!r}; "
                    f"move one with .to({device!r}) first"
                )
        out = Tensor(self.forward(*[t.data for t in inputs]))
        if _grad_enabled and any(t.requires_grad for t in inputs):
            out.requires_grad = True
            out._fn = self
            self.inputs = inputs
            self.needs_input_grad = tuple(t.requires_grad for t in inputs)
        return out


def unbroadcast(grad, shape: tuple[int, ...]):
    """Sum ``grad`` over the axes that broadcasting added or stretched, so it gets ``shape`` (eq. 2.3).

    If x of shape ``shape`` was broadcast to ``grad.shape`` in the forward pass, every copy of an entry
    received its own gradient, and the entry's gradient is their sum.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:  # leading axes that broadcasting prepended
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:  # axes of length 1 that broadcasting stretched
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


# --------------------------------------------------------------------------------------------------------
# Tensor
# --------------------------------------------------------------------------------------------------------


class Tensor:
    """An array plus what is needed to differentiate through it.

    Attributes: ``data`` (numpy or cupy array), ``grad`` (a Tensor or None; set by ``backward`` on leaves and
    on tensors that called ``retain_grad()``), ``requires_grad``, and ``_fn`` (the Function that made it).
    """

    __array_priority__ = 1000  # so that ndarray + Tensor calls Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False):
        self.data = data
        self.grad: Tensor | None = None
        self._fn: Function | None = None
        self._retain_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_()

    # --- basic facts ------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def device(self) -> str:
        return device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        return self._fn is None

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        device = ", device='cuda'" if self.device == "cuda" else ""
        body = np.array2string(to_numpy(self.data), separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{device}{grad})"

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        """Mark a leaf as a variable whose gradient ``backward`` should compute; returns self."""
        if flag and not np.issubdtype(self.dtype, np.floating):
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {self.dtype}; "
                "create it with dtype=np.float32 or np.float64"
            )
        self.requires_grad = flag
        return self

    def retain_grad(self) -> "Tensor":
        """Keep ``.grad`` on this intermediate (non-leaf) tensor after ``backward``, for inspection."""
        self._retain_grad = True
        return self

    # --- leaving the graph and the device ---------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The values as a host NumPy array (a copy when the tensor is on the GPU)."""
        return to_numpy(self.data)

    def item(self) -> float:
        """The single value of a one-element tensor as a Python number."""
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.numpy().item()

    def detach(self) -> "Tensor":
        """The same values, cut from the graph: no gradient flows through the result."""
        return Tensor(self.data)

    def to(self, device: str) -> "Tensor":
        """This tensor on ``device`` ("cpu" or "cuda"); a differentiable copy when the device changes."""
        if device == self.device:
            return self
        return ops.ToDevice(device).apply(self)

    def astype(self, dtype) -> "Tensor":
        """A copy with another dtype; differentiable between floating types."""
        return ops.AsType(dtype).apply(self)

    # --- the backward pass ------------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) * grad into ``leaf.grad`` for every leaf that requires a gradient.

        ``grad`` is the output cotangent (a Tensor or an array of ``self.shape``); it may be left out only for
        a one-element tensor (it is then 1). The arrays that ops saved for their backward are freed
        afterwards, unless ``retain_graph=True``, so a second ``backward`` needs that flag.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the computation had "
                "requires_grad=True (or it was computed under no_grad())"
            )
        xp = get_array_module(self.data)
        if grad is None:
            if self.size != 1:
                raise RuntimeError(
                    f"backward() on a non-scalar tensor of shape {self.shape} needs the output gradient: "
                    "call .backward(grad) with grad of the same shape, or reduce it first (e.g. .sum())"
                )
            grad = xp.ones_like(self.data)
        grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=self.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"backward() got a gradient of shape {grad.shape} "
                             f"for a tensor of shape {self.shape}")

        grads = {id(self): grad}  # node id -> dL/dnode, summed over all paths seen so far
        for node in reversed(topological_order(self)):
            node_grad = grads.pop(id(node), None)
            if node_grad is None:  # every op on the way returned None for it (e.g. a mask): nothing flows
                continue
            if node._fn is None or node._retain_grad:
                _accumulate_grad(node, node_grad)
            fn = node._fn
            if fn is None:
                continue
            if not hasattr(fn, "inputs"):
                raise RuntimeError(
                    "backward() through a graph whose saved arrays were already freed by an earlier "
                    "backward(); call the first backward(retain_graph=True) to go through it twice"
                )
            input_grads = fn.backward(node_grad)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for parent, parent_grad in zip(fn.inputs, input_grads):
                if parent_grad is None or not parent.requires_grad:
                    continue
                parent_grad = unbroadcast(parent_grad, parent.shape)  # the one place (eq. 2.3)
                assert parent_grad.shape == parent.shape, (
                    f"{type(fn).__name__}.backward gave a gradient of shape {parent_grad.shape} "
                    f"for an input of shape {parent.shape}"
                )
                key = id(parent)
                grads[key] = grads[key] + parent_grad if key in grads else parent_grad
            if not retain_graph:
                fn.__dict__.clear()  # free saved arrays; the node keeps no inputs, so a 2nd pass fails loudly

    # --- arithmetic: each operator is one op from ops.py ------------------------------------------------
    def __add__(self, other) -> "Tensor":
        return ops.Add().apply(self, as_tensor(other, like=self))

    def __radd__(self, other) -> "Tensor":
        return ops.Add().apply(as_tensor(other, like=self), self)

    def __sub__(self, other) -> "Tensor":
        return ops.Sub().apply(self, as_tensor(other, like=self))

    def __rsub__(self, other) -> "Tensor":
        return ops.Sub().apply(as_tensor(other, like=self), self)

    def __mul__(self, other) -> "Tensor":
        return ops.Mul().apply(self, as_tensor(other, like=self))

    def __rmul__(self, other) -> "Tensor":
        return ops.Mul().apply(as_tensor(other, like=self), self)

    def __truediv__(self, other) -> "Tensor":
        return ops.Div().apply(self, as_tensor(other, like=self))

    def __rtruediv__(self, other) -> "Tensor":
        return ops.Div().apply(as_tensor(other, like=self), self)

    def __neg__(self) -> "Tensor":
        return ops.Neg().apply(self)

    def __pow__(self, exponent: float) -> "Tensor":
        if isinstance(exponent, Tensor):
            raise TypeError("x ** y needs a Python number as exponent; "
                            "for a tensor exponent use exp(y * log(x))")
        return ops.Pow(exponent).apply(self)

    def __matmul__(self, other) -> "Tensor":
        return ops.MatMul().apply(self, as_tensor(other, like=self))

    def __rmatmul__(self, other) -> "Tensor":
        return ops.MatMul().apply(as_tensor(other, like=self), self)

    def __getitem__(self, index) -> "Tensor":
        return shape_ops.GetItem(index).apply(self)

    # comparisons give boolean tensors with no gradient (masks for where())
    def __gt__(self, other) -> "Tensor":
        return Tensor(self.data > _raw(other))

    def __ge__(self, other) -> "Tensor":
        return Tensor(self.data >= _raw(other))

    def __lt__(self, other) -> "Tensor":
        return Tensor(self.data < _raw(other))

    def __le__(self, other) -> "Tensor":
        return Tensor(self.data <= _raw(other))

    # --- elementwise functions --------------------------------------------------------------------------
    def exp(self) -> "Tensor":
        return ops.Exp().apply(self)

    def log(self) -> "Tensor":
        return ops.Log().apply(self)

    def sqrt(self) -> "Tensor":
        return ops.Sqrt().apply(self)

    def tanh(self) -> "Tensor":
        return ops.Tanh().apply(self)

    def relu(self) -> "Tensor":
        return ops.ReLU().apply(self)

    def sigmoid(self) -> "Tensor":
        return ops.Sigmoid().apply(self)

    def erf(self) -> "Tensor":
        return ops.Erf().apply(self)

    # --- reductions -------------------------------------------------------------------------------------
    def sum(self, axis=None, keepdims: bool = False) -> "Tensor":
        return ops.Sum(axis, keepdims).apply(self)

    def mean(self, axis=None, keepdims: bool = False) -> "Tensor":
        return ops.Mean(axis, keepdims).apply(self)

    def max(self, axis=None, keepdims: bool = False) -> "Tensor":
        return ops.Max(axis, keepdims).apply(self)

    # --- shapes -----------------------------------------------------------------------------------------
    def reshape(self, *shape) -> "Tensor":
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return shape_ops.Reshape(shape).apply(self)

    def transpose(self, *axes) -> "Tensor":
        """Permute axes (NumPy semantics); no arguments reverses them."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return shape_ops.Transpose(axes or None).apply(self)

    @property
    def T(self) -> "Tensor":
        return shape_ops.Transpose(None).apply(self)


def _raw(value):
    return value.data if isinstance(value, Tensor) else value


def topological_order(root: Tensor) -> list[Tensor]:
    """Nodes that need a gradient, each after all of its inputs (iterative DFS: no recursion limit)."""
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._fn is not None and hasattr(node._fn, "inputs"):
            for parent in node._fn.inputs:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def _accumulate_grad(node: Tensor, grad) -> None:
    """``node.grad += grad``; the stored array is always a fresh, writable copy owned by ``node``."""
    if node.grad is None:
        node.grad = Tensor(grad.astype(node.dtype, copy=True))
    else:
        node.grad = Tensor((node.grad.data + grad).astype(node.dtype, copy=False))


# --------------------------------------------------------------------------------------------------------
# Constants meeting tensors
# --------------------------------------------------------------------------------------------------------


def as_tensor(value, like: Tensor) -> Tensor:
    """Wrap a Python number or array as a constant so it can meet ``like`` in an op (NumPy promotion rules).

    A Python number takes ``like``'s floating dtype (as NumPy's weak scalars do); an array keeps its own.
    """
    if isinstance(value, Tensor):
        return value
    xp = get_array_module(like.data)
    if isinstance(value, (bool, int, float)) and np.issubdtype(like.dtype, np.floating):
        return Tensor(xp.asarray(value, dtype=like.dtype))
    return Tensor(to_device(xp.asarray(value) if xp is np else value, like.device))


# The ops build on Function above; imported last so that Tensor's methods can name their classes.
from tinyllm import ops, shape_ops  # noqa: E402
