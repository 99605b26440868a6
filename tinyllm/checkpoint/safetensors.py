"""Arrays in a file without pickle: the safetensors format (chapter 09, section "Checkpoints").

A safetensors file is

    [8 bytes: N, little-endian unsigned]  [N bytes: JSON header]  [raw little-endian array bytes]

where the header maps each name to
``{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}`` (offsets into the byte buffer)
plus an optional ``"__metadata__"`` of string -> string. It holds only numbers and text, so loading
a file can never run code (unlike pickle), and other tools (the ``safetensors`` library) read it.
We write and read it with NumPy alone.

The reader accepts exactly the files the reference reader (the ``safetensors`` package) accepts,
and a test checks that on mutated files:

- N <= 100 MB and within the file; the header strict JSON (``strict_json.py``: no NaN, no number
  out of range, no lone surrogate, nested at most 127 deep) and an object;
- each entry an object with a known dtype, a shape of non-negative integers and two integer
  offsets (other fields are ignored, as the reference does);
- the arrays back to back from byte 0, without gap or overlap, each exactly prod(shape) * itemsize
  bytes, the last one ending where the file ends.

tinyllm is stricter in four ways, on purpose: a repeated key is refused (the reference keeps the
last one); an entry must be an object and a dtype a string (the reference also takes serde's list
and map forms); the 8-bit and smaller float types, which NumPy cannot hold, are refused by name;
and so is an empty array whose other dimensions NumPy cannot multiply (0, 2**40, 2**40). BF16 is
widened to float32 on reading (NumPy has no bfloat16).

Writes are atomic: a temporary file of this writer's own is renamed over the target only once it
is complete and on disk, so an interrupted save never destroys the previous checkpoint, and two
writers never share a temporary file.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyllm.checkpoint.strict_json import UINT64_MAX, strict_loads

# safetensors dtype names -> the NumPy dtype an array of that type is stored as (little-endian)
_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"), "C64": np.dtype("<c8"),
}
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}
# bfloat16 is the upper half of a float32; NumPy has no such type: read as uint16, then widened
_BF16 = "BF16"
# valid safetensors dtypes that NumPy has no type for (8-bit and smaller floats)
_NO_NUMPY_TYPE = ("F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F6_E2M3",
                  "F6_E3M2", "F4")
_MAX_HEADER = 100_000_000  # the reference's limit: a larger header is not a safetensors file


class CheckpointError(ValueError):
    """A checkpoint file is truncated, corrupt, or not a checkpoint at all."""


@dataclass(frozen=True)
class TensorInfo:
    """One array's header entry: its dtype name, shape, and bytes [begin, end) of the data."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """What :func:`read_header` learns from a file without reading its data."""

    path: Path
    tensors: dict[str, TensorInfo]  # name -> entry, in the header's order
    metadata: dict[str, str]
    data_start: int  # 8 + N: the file position of byte 0 of the data


def _invalid(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"{path} is not a valid safetensors checkpoint: {problem}")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def save_safetensors(path: str | os.PathLike, arrays: dict[str, np.ndarray],
                     metadata: dict[str, str] | None = None) -> None:
    """Write ``arrays`` (name -> array) and string ``metadata`` to ``path`` atomically."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    contiguous, offset = [], 0
    for name, array in arrays.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise TypeError(f"cannot save {name!r}: an array's name is a string other than "
                            "'__metadata__'")
        array = np.asarray(array, order="C")  # contiguous; keeps 0-d arrays 0-d
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        if dtype not in _NAMES:
            raise TypeError(f"cannot save {name!r}: dtype {array.dtype} is not one of "
                            f"{sorted(_DTYPES)}")
        array = array.astype(dtype, copy=False)
        header[name] = {"dtype": _NAMES[dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        contiguous.append(array)
        offset += array.nbytes
    try:  # a lone surrogate ("\ud800") cannot be encoded, and no reader would take it
        text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"cannot save to {path}: a name or metadata value is not valid text "
                         f"({error}); use ordinary strings") from None
    text += b" " * (-len(text) % 8)  # pad with spaces so the arrays start 8-byte aligned
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, [struct.pack("<Q", len(text)), text, *contiguous])


def _write_atomically(path: Path, chunks: list) -> None:
    """Write ``chunks`` (bytes or arrays) to a new file of this writer's own in the target's
    folder, force it to disk, then rename it over ``path``: readers see the old file or the new."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    descriptor = os.open(temporary, flags, 0o666)  # like tempfile.mkstemp, with the umask's mode
    try:
        with os.fdopen(descriptor, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)  # atomic on POSIX and Windows
    except BaseException:
        temporary.unlink(missing_ok=True)  # the previous checkpoint, if any, is untouched
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Put the rename itself on disk (POSIX; elsewhere folders cannot be opened: skipped)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


# --------------------------------------------------------------------------------------------------
# Reading: the header first (checked without touching the data), then the arrays
# --------------------------------------------------------------------------------------------------


def _parse_header(path: Path, header_bytes: bytes) -> dict:
    """The header as strict JSON (the reference's rules, module docstring), or CheckpointError."""
    try:
        tree = strict_loads(header_bytes.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise _invalid(path, f"its header is not UTF-8 text ({error})") from None
    except ValueError as error:  # json.JSONDecodeError and NotStrictJSON
        raise _invalid(path, f"unreadable header ({error})") from None
    if not isinstance(tree, dict):
        raise _invalid(path, f"its header is a JSON {type(tree).__name__}, not an object")
    return tree


def _is_index(value: object) -> bool:
    return type(value) is int and 0 <= value <= UINT64_MAX  # not bool, not float


def _tensor_info(path: Path, name: str, entry: object) -> TensorInfo:
    """One header entry, checked: an object with dtype, shape and data_offsets (others ignored)."""
    def malformed(problem: str) -> CheckpointError:
        return CheckpointError(f"{path}: malformed header entry for {name!r}: {problem}")

    if not isinstance(entry, dict):
        raise malformed(f"expected an object with dtype, shape and data_offsets, got "
                        f"{_short(entry)}")
    missing = [key for key in ("dtype", "shape", "data_offsets") if key not in entry]
    if missing:
        raise malformed(f"missing {', '.join(missing)} in {_short(entry)}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype in _NO_NUMPY_TYPE:
        raise malformed(f"dtype {dtype} has no NumPy type; convert the array to F16 or F32 "
                        "(e.g. with PyTorch) to read it with tinyllm")
    if not isinstance(dtype, str) or (dtype not in _DTYPES and dtype != _BF16):
        raise malformed(f"unknown dtype {_short(dtype)}; expected one of "
                        f"{sorted([*_DTYPES, _BF16])}")
    if not isinstance(shape, list) or not all(_is_index(n) for n in shape):
        raise malformed(f"the shape must be a list of non-negative integers, got {_short(shape)}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_index, offsets)):
        raise malformed(f"data_offsets must be two non-negative integers [begin, end], got "
                        f"{_short(offsets)}")
    return TensorInfo(dtype, tuple(shape), offsets[0], offsets[1])


def _byte_length(path: Path, name: str, info: TensorInfo) -> int:
    """prod(shape) * itemsize, refused where the reference's unsigned 64-bit product overflows."""
    itemsize = 2 if info.dtype == _BF16 else _DTYPES[info.dtype].itemsize
    count = 1
    for n in info.shape:  # in order, as the reference multiplies: (2**40, 2**40, 0) overflows
        count *= n
        if count > UINT64_MAX:
            break
    if count * itemsize * 8 > UINT64_MAX:  # the reference counts bits
        raise _invalid(path, f"array {name!r} has a shape {info.shape} too large to exist")
    if count == 0 and math.prod(n for n in info.shape if n) * itemsize > np.iinfo(np.intp).max:
        # (0, 2**40, 2**40) is valid safetensors, but NumPy cannot make it, even empty
        raise _invalid(path, f"array {name!r} has a shape {info.shape} NumPy cannot make")
    return count * itemsize


def _check_layout(path: Path, tensors: dict[str, TensorInfo]) -> int:
    """Arrays back to back from byte 0, each the size its shape needs; returns the data size."""
    start = 0
    for name, info in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if info.begin != start or info.end < info.begin:
            raise _invalid(path, f"array {name!r} has data_offsets [{info.begin}, {info.end}], "
                           f"but arrays fill the data back to back and the one before ends at "
                           f"{start} (a gap, an overlap or a corrupt header)")
        expected = _byte_length(path, name, info)
        if info.end - info.begin != expected:
            raise _invalid(path, f"array {name!r} has {info.end - info.begin} bytes: expected "
                           f"{expected} bytes for shape {info.shape} of {info.dtype}")
        start = info.end
    return start


def read_header(path: str | os.PathLike) -> SafetensorsHeader:
    """Read and check a safetensors file's header and size without reading its data.

    Every rule of the reference reader is checked here (module docstring), so that a caller can
    check what the header promises (names, shapes, metadata) before anything is allocated.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: check the path "
                                "(`tinyllm train` writes one into its --out folder)")
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        size_field = f.read(8)
        if len(size_field) < 8:
            raise _invalid(path, f"only {len(size_field)} bytes (truncated or empty file)")
        (header_size,) = struct.unpack("<Q", size_field)
        if header_size > _MAX_HEADER:
            raise _invalid(path, f"its header claims {header_size} bytes, more than the "
                           f"{_MAX_HEADER} a safetensors header may have (a different format)")
        if header_size > file_size - 8:
            raise _invalid(path, f"its header claims {header_size} bytes but the file has "
                           f"{file_size - 8} after the size field (truncated, or a different "
                           "format)")
        tree = _parse_header(path, f.read(header_size))
    metadata = tree.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: '__metadata__' must map names to strings, got "
                              f"{_short(metadata)}")
    tensors = {name: _tensor_info(path, name, entry) for name, entry in tree.items()}
    data_size, available = _check_layout(path, tensors), file_size - 8 - header_size
    for name, info in tensors.items():
        if info.end > available:
            raise _invalid(path, f"array {name!r} needs bytes {info.begin}..{info.end} of "
                           f"{available}: the file is truncated or corrupt")
    if data_size != available:
        raise _invalid(path, f"{available - data_size} bytes after the last array (which ends "
                       f"at byte {data_size} of {available}): the file is truncated or corrupt")
    return SafetensorsHeader(path, tensors, metadata, 8 + header_size)


def _read_array(f, header: SafetensorsHeader, name: str, info: TensorInfo) -> np.ndarray:
    """One array, read straight into its own (writeable) memory; BF16 widened, BOOL as != 0."""
    if info.dtype == _BF16:
        stored = np.dtype("<u2")
    elif info.dtype == "BOOL":
        stored = np.dtype("u1")  # any non-zero byte is True (a NumPy bool would keep the byte)
    else:
        stored = _DTYPES[info.dtype]
    array = np.empty((info.end - info.begin) // stored.itemsize, dtype=stored)
    f.seek(header.data_start + info.begin)
    if f.readinto(array.view(np.uint8)) != info.end - info.begin:
        raise _invalid(header.path, f"array {name!r} ends early: the file changed while being read")
    if info.dtype == _BF16:
        array = (array.astype(np.uint32) << 16).view(np.float32)  # bfloat16 = top 16 bits of f32
    elif info.dtype == "BOOL":
        array = array != 0
    return array.reshape(info.shape)


def read_arrays(header: SafetensorsHeader) -> dict[str, np.ndarray]:
    """The arrays of a file whose header :func:`read_header` checked: name -> array (a copy)."""
    arrays = {}
    with open(header.path, "rb") as f:
        for name, info in header.tensors.items():
            arrays[name] = _read_array(f, header, name, info)
    return arrays


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file; return (name -> array, metadata). Clear errors for bad files."""
    header = read_header(path)
    return read_arrays(header), dict(header.metadata)
