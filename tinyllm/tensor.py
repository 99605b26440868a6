"""Tensor, ``apply`` and the backward pass (chapter 01, autograd; chapter 02, tensors).

``apply(fn, *inputs)`` runs an op and, when a gradient will be needed, records it as the output's
``._fn``. ``backward()`` walks the graph in reverse topological order: chain rule and sums
(eq. 1.4), unbroadcast (eq. 2.3), then the release of what each op saved.
"""

from __future__ import annotations

import numpy as np

from tinyllm import numpy_protocol, ops, shape_ops
from tinyllm.autograd import Function, is_grad_enabled, no_grad, unbroadcast  # noqa: F401 (no_grad)
from tinyllm.backend import DeviceError, device_of, get_array_module, to_device, to_numpy

DEFAULT_DTYPE = np.float32


def apply(fn: Function, *inputs: Tensor) -> Tensor:
    """Run ``fn.forward`` on the inputs' arrays; record the node if any input needs a gradient."""
    if fn.applied or fn.released:  # a second forward would overwrite what the first saved
        raise RuntimeError(f"this {type(fn).__name__} was already applied: an op object is one "
                           "node of the graph, so make a new one for each call")
    fn.applied = True
    device = inputs[0].device
    for t in inputs[1:]:
        if t.device != device:
            raise DeviceError(f"{type(fn).__name__} got tensors on {device!r} and {t.device!r}; "
                              f"move one with .to({device!r}) first")
    out = Tensor(fn.forward(*[t.data for t in inputs]))
    if is_grad_enabled() and any(t.requires_grad for t in inputs):
        fn.inputs = inputs
        fn.needs_input_grad = tuple(t.requires_grad for t in inputs)
        out._fn, out.requires_grad = fn, True
    return out


class Tensor:
    """An array plus what is needed to differentiate through it: ``data`` (numpy or cupy array),
    ``grad`` (a Tensor, set by ``backward`` on leaves and on tensors that called ``retain_grad()``),
    ``requires_grad``, and ``_fn`` (the Function that made it, None for a leaf)."""

    __array_priority__ = 1000  # cupy_array + t calls Tensor.__radd__ (CuPy)
    __hash__ = object.__hash__  # by identity, as in PyTorch (defining __eq__ would remove it)

    def __init__(self, data, requires_grad: bool = False):
        self.data = data
        self.grad: Tensor | None = None
        self._fn: Function | None = None
        self._retain_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_()

    # --- basic facts ------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]: return self.data.shape
    @property
    def dtype(self): return self.data.dtype
    @property
    def ndim(self) -> int: return self.data.ndim
    @property
    def size(self) -> int: return self.data.size
    @property
    def device(self) -> str: return device_of(self.data)
    @property
    def is_leaf(self) -> bool: return self._fn is None

    def __len__(self) -> int: return len(self.data)  # a TypeError for 0-d, as in NumPy
    def __bool__(self) -> bool: return bool(self.data)  # a ValueError for 2+ elements, as NumPy
    def __contains__(self, value) -> bool: return _raw(value) in self.data  # (t == value).any()

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        device = ", device='cuda'" if self.device == "cuda" else ""
        body = np.array2string(to_numpy(self.data), separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{device}{grad})"

    def requires_grad_(self, flag: bool = True) -> Tensor:
        """Mark a leaf as a variable whose gradient ``backward`` should compute; returns self."""
        if flag and not np.issubdtype(self.dtype, np.floating):
            raise TypeError(f"only floating-point tensors can require gradients, got dtype "
                            f"{self.dtype}; create it with dtype=np.float32 or np.float64")
        self.requires_grad = flag
        return self

    def retain_grad(self) -> Tensor:
        """Keep ``.grad`` on this intermediate tensor after ``backward``, for inspection."""
        self._retain_grad = True
        return self

    # --- leaving the graph and the device ---------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The values as a host NumPy array (a copy when the tensor is on the GPU)."""
        return to_numpy(self.data)

    def item(self) -> float:
        """The single value of a one-element tensor as a Python number."""
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.numpy().item()

    def detach(self) -> Tensor:
        """The same values, cut from the graph: no gradient flows through the result."""
        return Tensor(self.data)

    def to(self, device: str) -> Tensor:
        """This tensor on ``device`` ("cpu" or "cuda"); a differentiable copy if that is another."""
        return self if device == self.device else apply(ops.Cast(device=device), self)

    def astype(self, dtype) -> Tensor:
        """A copy with another dtype; differentiable between floating types."""
        return apply(ops.Cast(dtype=dtype), self)

    # --- the backward pass ------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Add d(self)/d(leaf) * grad into ``leaf.grad`` for every leaf that requires a gradient;
        ``grad`` (of ``self.shape``) may be left out for one element. ``retain_graph=True`` keeps
        what the ops saved, for a second backward."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: no input of the "
                               "computation had requires_grad=True (or it ran under no_grad())")
        if grad is None and self.size != 1:
            raise RuntimeError(f"backward() on a non-scalar tensor of shape {self.shape} needs the "
                               "output gradient: call .backward(grad) with grad of the same shape, "
                               "or reduce it first (e.g. .sum())")
        xp = get_array_module(self.data)
        grad = xp.ones_like(self.data) if grad is None else grad
        grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=self.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"backward() got a gradient of shape {grad.shape} "
                             f"for a tensor of shape {self.shape}")
        grads = {id(self): grad}  # id(node) -> dL/dnode, summed over the paths so far (eq. 1.4)
        for node in reversed(topological_order(self)):
            node_grad, fn = grads.pop(id(node), None), node._fn
            if node_grad is None:  # every op on the way returned None for it (e.g. a mask)
                continue
            if fn is None or node._retain_grad:  # node.grad += node_grad, into a fresh array
                total = node_grad if node.grad is None else node.grad.data + node_grad
                node.grad = Tensor(total.astype(node.dtype))
            if fn is None:
                continue
            if fn.released:
                raise RuntimeError("backward() through a graph whose saved arrays were already "
                                   "freed by an earlier backward(); call the first "
                                   "backward(retain_graph=True) to go through it twice")
            input_grads = fn.backward(node_grad)
            input_grads = input_grads if isinstance(input_grads, tuple) else (input_grads,)
            for parent, parent_grad in zip(fn.inputs, input_grads):
                if parent_grad is None or not parent.requires_grad:
                    continue
                parent_grad = unbroadcast(parent_grad, parent.shape)  # the one place (eq. 2.3)
                assert parent_grad.shape == parent.shape, (
                    f"{type(fn).__name__}.backward gave a gradient of shape {parent_grad.shape} "
                    f"for an input of shape {parent.shape}")
                key = id(parent)
                grads[key] = grads[key] + parent_grad if key in grads else parent_grad  # eq. 1.4
            if not retain_graph:
                fn.release()  # free the arrays fn saved: a second pass through it fails loudly

    # --- arithmetic: each operator is one op of ops.py; numbers and arrays become constants -------
    def __add__(self, other) -> Tensor: return apply(ops.Add(), self, as_tensor(other, self))
    def __radd__(self, other) -> Tensor: return apply(ops.Add(), as_tensor(other, self), self)
    def __sub__(self, other) -> Tensor: return apply(ops.Sub(), self, as_tensor(other, self))
    def __rsub__(self, other) -> Tensor: return apply(ops.Sub(), as_tensor(other, self), self)
    def __mul__(self, other) -> Tensor: return apply(ops.Mul(), self, as_tensor(other, self))
    def __rmul__(self, other) -> Tensor: return apply(ops.Mul(), as_tensor(other, self), self)
    def __truediv__(self, other) -> Tensor: return apply(ops.Div(), self, as_tensor(other, self))
    def __rtruediv__(self, other) -> Tensor: return apply(ops.Div(), as_tensor(other, self), self)
    def __matmul__(self, other) -> Tensor: return apply(ops.MatMul(), self, as_tensor(other, self))
    def __rmatmul__(self, other) -> Tensor: return apply(ops.MatMul(), as_tensor(other, self), self)
    def __neg__(self) -> Tensor: return apply(ops.Neg(), self)

    def __pow__(self, exponent: float) -> Tensor:
        if isinstance(exponent, Tensor) or np.ndim(exponent) != 0:
            raise TypeError("x ** y needs a Python number as exponent; "
                            "for a tensor exponent use exp(y * log(x))")
        return apply(ops.Pow(exponent), self)

    def __getitem__(self, index) -> Tensor:
        single = not isinstance(index, tuple)  # index arrays move to this tensor's device
        parts = tuple(_raw(part, self.device) for part in ((index,) if single else index))
        return apply(shape_ops.GetItem(parts[0] if single else parts), self)

    # comparisons are elementwise, as in NumPy, and give boolean tensors outside the graph (masks)
    def __eq__(self, other) -> Tensor: return Tensor(self.data == _raw(other))
    def __ne__(self, other) -> Tensor: return Tensor(self.data != _raw(other))
    def __gt__(self, other) -> Tensor: return Tensor(self.data > _raw(other))
    def __ge__(self, other) -> Tensor: return Tensor(self.data >= _raw(other))
    def __lt__(self, other) -> Tensor: return Tensor(self.data < _raw(other))
    def __le__(self, other) -> Tensor: return Tensor(self.data <= _raw(other))
    def any(self, *args, **kwargs) -> Tensor: return Tensor(self.data.any(*args, **kwargs))
    def all(self, *args, **kwargs) -> Tensor: return Tensor(self.data.all(*args, **kwargs))

    # --- elementwise functions (chapter 01, table 1.2) and reductions (chapter 02, eq. 2.4) -------
    def exp(self) -> Tensor: return apply(ops.Exp(), self)
    def log(self) -> Tensor: return apply(ops.Log(), self)
    def sqrt(self) -> Tensor: return apply(ops.Sqrt(), self)
    def tanh(self) -> Tensor: return apply(ops.Tanh(), self)
    def relu(self) -> Tensor: return apply(ops.ReLUFunction(), self)
    def sigmoid(self) -> Tensor: return apply(ops.Sigmoid(), self)
    def erf(self) -> Tensor: return apply(ops.Erf(), self)

    def sum(self, axis=None, keepdims: bool = False) -> Tensor:
        return apply(ops.Sum(axis, keepdims), self)

    def mean(self, axis=None, keepdims: bool = False) -> Tensor:
        """The sum over ``axis`` divided by n, the number of entries summed (eq. 2.4)."""
        total = self.sum(axis, keepdims)
        return total / (self.size // max(total.size, 1))  # n = size of x / size of the sum

    def max(self, axis=None, keepdims: bool = False) -> Tensor:
        return apply(ops.Max(axis, keepdims), self)

    # --- shapes -----------------------------------------------------------------------------------
    def reshape(self, *shape) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return apply(shape_ops.Reshape(shape), self)

    def transpose(self, *axes) -> Tensor:
        """Permute axes as NumPy does: ``t.transpose(1, 0)`` or ``t.transpose((1, 0))``; no
        argument, or None, reverses them."""
        one = len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list)))
        axes = axes[0] if one else axes or None  # t.transpose((1, 0)), t.transpose(None) or ()
        return apply(shape_ops.Transpose(None if axes is None else tuple(axes)), self)

    @property
    def T(self) -> Tensor: return apply(shape_ops.Transpose(None), self)

    # --- NumPy meeting tensors (tinyllm/numpy_protocol.py) ---------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """``array * t`` is ``t.__rmul__(array)``; ``np.exp(t)``: a TypeError naming ``t.exp()``."""
        return numpy_protocol.array_ufunc(self, ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        """``np.sum(t)``, ``np.concatenate([t, t])``: a TypeError that names tinyllm's function."""
        numpy_protocol.refuse_array_function(Tensor, func)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """``np.asarray(t)`` is ``t.numpy()``, refused (as in PyTorch) when t requires grad."""
        if self.requires_grad:
            raise TypeError("np.asarray(t) on a tensor that requires grad: call t.detach().numpy() "
                            "(or t.numpy()) to leave the graph on purpose")
        return np.array(self.numpy(), dtype=dtype, copy=copy)


def _raw(value, device: str | None = None):  # with a device: an array is moved there
    value = value.data if isinstance(value, Tensor) else value
    return to_device(value, device) if device and getattr(value, "ndim", 0) else value


# --- the order of the backward walk ---------------------------------------------------------------
def topological_order(root: Tensor) -> list[Tensor]:
    """Nodes that need a gradient, each after all its inputs (iterative DFS: no recursion limit)."""
    order, visited, stack = [], set(), [(root, False)]  # stack: (node, are its inputs ordered?)
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
        elif id(node) not in visited:
            visited.add(id(node))
            stack.append((node, True))
            for parent in node._fn.inputs if node._fn is not None else ():
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


# --- constants meeting tensors --------------------------------------------------------------------
def as_tensor(value, like: Tensor) -> Tensor:
    """Wrap a number or array as a constant that can meet ``like`` in an op (NumPy promotion rules):
    a Python number takes ``like``'s floating dtype (a weak scalar), an array keeps its own."""
    if isinstance(value, Tensor):
        return value
    xp = get_array_module(like.data)
    if isinstance(value, (bool, int, float)) and np.issubdtype(like.dtype, np.floating):
        return Tensor(xp.asarray(value, dtype=like.dtype))
    if device_of(value) == "cuda" != like.device:
        raise DeviceError("a cuda array met a cpu tensor; move one: t.to('cuda') or array.get()")
    return Tensor(to_device(xp.asarray(value) if xp is np else value, like.device))
