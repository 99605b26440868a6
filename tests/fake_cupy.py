"""A strict stand-in for CuPy, backed by NumPy, so that tinyllm's GPU path runs on a CPU (issue 13).

``installed()`` puts this module in ``sys.modules`` as ``cupy`` (and a small ``cupyx``), so that
``tinyllm.backend`` finds it the way it finds CuPy: ``import cupy``, ``cupy.cuda.is_available()``,
a tiny smoke computation. Its :class:`ndarray` wraps a NumPy array and behaves as a CuPy array does
where host/device hygiene is concerned:

- it is not a NumPy array: ``np.asarray(device_array)`` raises CuPy's TypeError (``__array__``),
  a NumPy array meeting it in an operator or a function is a TypeError ("Unsupported type"), and
  only the functions CuPy has exist here (``ALLOWED``), each returning device arrays;
- reductions and scalar indexing give 0-d *device* arrays, as in CuPy, not Python numbers;
- every device->host transfer is explicit and counted in ``TRANSFERS["to_host"]`` (with where it
  happened in ``EVENTS``): ``.get()``, ``asnumpy``, ``.item()``, ``.tolist()``, ``float()``,
  ``int()``, ``bool()`` and ``repr`` of a device array. Each is a synchronisation on a real GPU.
  Host->device copies (``asarray`` of host data, a host index or value) count as ``"to_device"``;
- strict mode (``STRICT``, on by default): any NumPy function or ufunc applied to a device array
  fails (real CuPy would dispatch ``np.exp(x)`` to ``cupy.exp``), so library code must ask the
  array for its module (``get_array_module``). A NumPy scalar on the left of an operator is allowed,
  as in CuPy.

What it proves: that every op, layer, model and trainer dispatches to the array module of its
inputs, never mixes host and device arrays, and how many device->host transfers a step makes.
What it cannot prove: anything about CUDA itself: numerics of GPU kernels (atomics reorder sums,
cuBLAS picks other algorithms; here every number is NumPy's, so results equal the CPU's bit for
bit), speed, memory use, streams and asynchrony, or CuPy's own bugs. Those need a real GPU.
"""

from __future__ import annotations

import builtins  # the module defines any, all, sum, max, ... as CuPy does: the builtins by name
import contextlib
import operator
import sys
import traceback
import types

import numpy as np

STRICT = True
TRANSFERS = {"to_host": 0, "to_device": 0}
EVENTS: list[str] = []  # "to_host file:line" for each counted transfer, newest last


def reset() -> None:
    """Zero the transfer counters."""
    TRANSFERS.update(to_host=0, to_device=0)
    EVENTS.clear()


def _count(kind: str) -> None:
    """Count a transfer; remember the calls that led to it ("kind file:line < caller:line ...")."""
    TRANSFERS[kind] += 1
    frames = [f"{'/'.join(f.filename.rsplit('/', 2)[-2:])}:{f.lineno}"
              for f in reversed(traceback.extract_stack(limit=12)[:-2])
              if "fake_cupy" not in f.filename
              and ("tinyllm" in f.filename or "test" in f.filename)]
    EVENTS.append(f"{kind} " + " < ".join(frames))


SCALARS = (bool, int, float, complex, np.generic)


def _unsupported(value) -> TypeError:
    return TypeError(f"Unsupported type {type(value)}: a NumPy array cannot meet a device array; "
                     "move it with cupy.asarray (tinyllm: to_device) first")


def _unwrap(value, host_ok: bool = False):
    """The NumPy array inside a device array; host arrays refused unless ``host_ok`` (counted)."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, np.ndarray):
        if not host_ok:
            raise _unsupported(value)
        _count("to_device")
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v, host_ok) for v in value)
    return value


def _wrap(value):
    """Device arrays for NumPy results; a NumPy scalar becomes a 0-d device array, as in CuPy."""
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic):
        return ndarray(np.asarray(value))
    if isinstance(value, (list, tuple)):
        return type(value)(_wrap(v) for v in value)
    return value


def _binary(op, reflected: bool = False):
    def method(self, other):
        if isinstance(other, ndarray):
            other = other._a
        elif isinstance(other, np.ndarray):
            raise _unsupported(other)
        elif not isinstance(other, SCALARS):
            return NotImplemented  # e.g. a tinyllm Tensor: Python asks its reflected operator
        return _wrap(op(other, self._a) if reflected else op(self._a, other))
    return method


def _inplace(op):
    def method(self, other):
        op(self._a, _unwrap(other))
        return self
    return method


def _unary(op):
    return lambda self: _wrap(op(self._a))


# methods that run on the device and give device arrays (CuPy has each of them)
METHODS = frozenset(
    "reshape transpose swapaxes sum max min mean var std prod any all argmax argmin astype copy "
    "ravel flatten squeeze cumsum clip argsort sort dot fill take round view".split()
)


def _count_boolean_mask(index) -> None:
    """A boolean-mask read or write needs the number of True entries on the host: a sync."""
    parts = index if isinstance(index, tuple) else (index,)
    if builtins.any(getattr(part, "dtype", None) == np.bool_ for part in parts):
        _count("to_host")


SHAPE_METHODS = frozenset({"reshape", "transpose", "swapaxes", "squeeze"})


def _host_numbers(args: tuple) -> tuple:
    return tuple(tuple(a.tolist()) if isinstance(a, np.ndarray) else a for a in args)


class ndarray:
    """A device array: a NumPy array that refuses to be taken for one (see the module docstring)."""

    __module__ = "cupy"  # tinyllm.backend.device_of looks at the class's module, as for CuPy
    __slots__ = ("_a",)

    def __init__(self, array: np.ndarray):
        self._a = array

    # --- facts about the array (no transfer) --------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        return (_wrap(row) for row in self._a)

    def __getattr__(self, name: str):
        if name not in METHODS:
            raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r}")
        method = getattr(self._a, name)
        if name in SHAPE_METHODS:  # axes and shapes are host numbers, a host array of them too
            return lambda *args, **kwargs: _wrap(method(*_host_numbers(args), **kwargs))
        return lambda *args, **kwargs: _wrap(method(*_unwrap(args), **_call_kwargs(kwargs)))

    # --- indexing: a host index or value is copied up (counted), as CuPy does --------------------
    def __getitem__(self, index):
        index = _unwrap(index, host_ok=True)
        _count_boolean_mask(index)
        return _wrap(self._a[index])

    def __setitem__(self, index, value) -> None:
        index = _unwrap(index, host_ok=True)
        _count_boolean_mask(index)
        self._a[index] = _unwrap(value, host_ok=True)

    # --- explicit transfers to the host: each one is counted ------------------------------------
    def get(self) -> np.ndarray:
        _count("to_host")
        return self._a.copy()

    def item(self):
        _count("to_host")
        return self._a.item()

    def tolist(self):
        _count("to_host")
        return self._a.tolist()

    def __float__(self) -> float:
        _count("to_host")
        return float(self._a)

    def __int__(self) -> int:
        _count("to_host")
        return int(self._a)

    def __bool__(self) -> bool:
        _count("to_host")
        return bool(self._a)

    def __repr__(self) -> str:
        _count("to_host")
        return "device_" + repr(self._a)

    # --- never implicitly: CuPy's TypeError ---------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        others = [x for x in inputs if not isinstance(x, ndarray)]
        from_scalar = method == "__call__" and not kwargs and len(others) == 1 and isinstance(
            others[0], SCALARS)  # np.float32(2) * x: CuPy allows it
        if STRICT and not from_scalar:
            raise TypeError(f"numpy.{ufunc.__name__} was applied to a device array (strict "
                            "stand-in for CuPy): use the array's module, "
                            f"xp = get_array_module(x); xp.{ufunc.__name__}(...)")
        result = getattr(ufunc, method)(*_unwrap(inputs), **_call_kwargs(kwargs))
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        name = func.__name__
        if STRICT or name not in ALLOWED:
            raise TypeError(f"numpy.{name} was applied to a device array (strict stand-in for "
                            f"CuPy): use the array's module, xp = get_array_module(x); xp.{name}")
        return globals()[name](*args, **kwargs)

    # --- operators -----------------------------------------------------------------------------
    __add__, __radd__ = _binary(operator.add), _binary(operator.add, True)
    __sub__, __rsub__ = _binary(operator.sub), _binary(operator.sub, True)
    __mul__, __rmul__ = _binary(operator.mul), _binary(operator.mul, True)
    __truediv__, __rtruediv__ = _binary(operator.truediv), _binary(operator.truediv, True)
    __floordiv__, __mod__ = _binary(operator.floordiv), _binary(operator.mod)
    __pow__, __rpow__ = _binary(operator.pow), _binary(operator.pow, True)
    __matmul__, __rmatmul__ = _binary(operator.matmul), _binary(operator.matmul, True)
    __and__, __rand__ = _binary(operator.and_), _binary(operator.and_, True)
    __or__, __ror__ = _binary(operator.or_), _binary(operator.or_, True)
    __xor__, __rshift__, __lshift__ = (_binary(operator.xor), _binary(operator.rshift),
                                       _binary(operator.lshift))
    __ixor__ = _inplace(operator.ixor)
    __eq__, __ne__ = _binary(operator.eq), _binary(operator.ne)
    __lt__, __le__ = _binary(operator.lt), _binary(operator.le)
    __gt__, __ge__ = _binary(operator.gt), _binary(operator.ge)
    __iadd__, __isub__ = _inplace(operator.iadd), _inplace(operator.isub)
    __imul__, __itruediv__ = _inplace(operator.imul), _inplace(operator.itruediv)
    __iand__, __ior__ = _inplace(operator.iand), _inplace(operator.ior)
    __neg__, __pos__, __abs__ = _unary(operator.neg), _unary(operator.pos), _unary(operator.abs)
    __invert__ = _unary(operator.invert)
    __hash__ = None


def _call_kwargs(kwargs: dict) -> dict:
    return {key: _unwrap(value) for key, value in kwargs.items()}


# --- the module's functions: only names CuPy has, each on device arrays --------------------------
ALLOWED = (
    "zeros ones empty full zeros_like ones_like empty_like full_like arange tri eye "
    "exp log log1p sqrt tanh sin cos abs sign reciprocal square negative power "
    "add subtract multiply divide true_divide maximum minimum fmin fmax where clip "
    "isinf isfinite isnan "
    "logical_not logical_and logical_or equal not_equal greater greater_equal less less_equal "
    "sum mean max min argmax argmin any all cumsum dot matmul einsum outer "
    "reshape transpose swapaxes moveaxis expand_dims squeeze broadcast_to broadcast_arrays "
    "concatenate stack take take_along_axis flatnonzero nonzero unique ravel_multi_index "
    "unravel_index argsort sort copyto allclose array_equal count_nonzero".split()
)


# functions whose output size depends on the data: CuPy copies a count to the host (a sync)
SYNCING = frozenset({"nonzero", "flatnonzero", "unique", "argwhere"})


def _device_function(name: str):
    numpy_function = getattr(np, name)

    def function(*args, **kwargs):
        if name in SYNCING:
            _count("to_host")
        result = numpy_function(*_unwrap(args), **_call_kwargs(kwargs))
        out = kwargs.get("out")
        return out if isinstance(out, ndarray) else _wrap(result)
    function.__name__ = function.__qualname__ = name
    return function


for _name in ALLOWED:
    globals()[_name] = _device_function(_name)


def split(ary: ndarray, indices_or_sections, axis: int = 0) -> list[ndarray]:
    """cupy.split: the cut points may be a host sequence (they are only read by the host)."""
    cuts = indices_or_sections
    if isinstance(cuts, np.ndarray):
        cuts = cuts.tolist()
    return _wrap(np.split(_unwrap(ary), cuts, axis=axis))


def asarray(a, dtype=None) -> ndarray:
    """Host data -> a device array (one host->device copy, counted); a device array as it is."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else a.astype(dtype)
    _count("to_device")
    return ndarray(np.array(a, dtype=dtype))


def array(a, dtype=None, copy: bool = True) -> ndarray:
    """A device copy of ``a`` (host data is copied up, counted)."""
    if isinstance(a, ndarray):
        return ndarray(np.array(a._a, dtype=dtype, copy=copy))
    _count("to_device")
    return ndarray(np.array(a, dtype=dtype))


def asnumpy(a) -> np.ndarray:
    """A host copy of a device array (counted); host data as it is."""
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


def get_array_module(*arrays):
    return sys.modules[__name__] if builtins.any(isinstance(a, ndarray) for a in arrays) else np


class _Generator:
    """cupy.random.Generator: draws on the device (here: NumPy's generator of the same seed)."""

    def __init__(self, seed):
        self._rng = np.random.default_rng(seed)

    def random(self, size=None, dtype=np.float64) -> ndarray:
        return ndarray(np.asarray(self._rng.random(size, dtype=dtype)))

    def standard_normal(self, size=None, dtype=np.float64) -> ndarray:
        return ndarray(np.asarray(self._rng.standard_normal(size, dtype=dtype)))


random = types.SimpleNamespace(default_rng=_Generator)
cuda = types.SimpleNamespace(
    is_available=lambda: True,
    Device=lambda *args: types.SimpleNamespace(synchronize=lambda: None),
)
float16, float32, float64 = np.float16, np.float32, np.float64
int8, int16, int32, int64, intp, bool_ = np.int8, np.int16, np.int32, np.int64, np.intp, np.bool_
uint8, uint32, uint64 = np.uint8, np.uint32, np.uint64
inf, nan, pi, newaxis, dtype = np.inf, np.nan, np.pi, np.newaxis, np.dtype


def scatter_add(a: ndarray, slices, value) -> None:
    """cupyx.scatter_add: ``a[slices] += value`` where repeated entries add (atomics on a GPU)."""
    np.add.at(_unwrap(a), _unwrap(slices), _unwrap(value))


cupyx = types.ModuleType("cupyx")
cupyx.scatter_add = scatter_add


@contextlib.contextmanager
def installed(strict: bool = True):
    """Pose as CuPy: ``import cupy`` / ``import cupyx`` give the stand-in while inside; restored
    after. The caller clears ``tinyllm.backend._probe_cupy``'s cache around it."""
    global STRICT
    saved = {name: sys.modules.get(name) for name in ("cupy", "cupyx")}
    previous, STRICT = STRICT, strict
    sys.modules["cupy"], sys.modules["cupyx"] = sys.modules[__name__], cupyx
    reset()
    try:
        yield sys.modules[__name__]
    finally:
        STRICT = previous
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
