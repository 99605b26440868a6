"""Arrays in a file without pickle: the safetensors format (chapter 09, section "Checkpoints").

A safetensors file is

    [8 bytes: N, little-endian unsigned]  [N bytes: JSON header]  [raw little-endian array bytes]

where the header maps each name to
``{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}`` (offsets into the byte buffer)
plus an optional ``"__metadata__"`` of string -> string. It holds only numbers and text, so loading
a file can never run code (unlike pickle), and other tools (the ``safetensors`` library) read it.
We write and read it with NumPy alone. Writes are atomic: a temporary file is renamed over the
target only once it is complete, so an interrupted save never destroys the previous checkpoint.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

# safetensors dtype names <-> NumPy dtypes (little-endian)
_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024  # a header larger than this is not a safetensors file


class CheckpointError(ValueError):
    """A checkpoint file is truncated, corrupt, or not a checkpoint at all."""


def save_safetensors(path: str | os.PathLike, arrays: dict[str, np.ndarray],
                     metadata: dict[str, str] | None = None) -> None:
    """Write ``arrays`` (name -> array) and string ``metadata`` to ``path`` atomically."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name, array in arrays.items():
        array = np.asarray(array, order="C")  # contiguous; keeps 0-d arrays 0-d
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        if dtype not in _NAMES:
            raise TypeError(f"cannot save {name!r}: dtype {array.dtype} is not one of "
                            f"{sorted(_DTYPES)}")
        blob = array.astype(dtype, copy=False).tobytes()
        header[name] = {"dtype": _NAMES[dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)  # pad so the arrays start 8-byte aligned
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(struct.pack("<Q", len(header_bytes)))
            f.write(header_bytes)
            for blob in blobs:
                f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)  # atomic on POSIX and Windows
    except BaseException:
        temporary.unlink(missing_ok=True)  # the previous checkpoint, if any, is untouched
        raise


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file; return (name -> array, metadata). Clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: check the path "
                                "(`tinyllm train` writes one into its --out folder)")
    raw = path.read_bytes()
    if len(raw) < 8:
        raise CheckpointError(f"{path} is not a checkpoint: only {len(raw)} bytes "
                              "(truncated or empty file)")
    (header_size,) = struct.unpack("<Q", raw[:8])
    if header_size > min(_MAX_HEADER, len(raw) - 8):
        raise CheckpointError(
            f"{path} is not a valid safetensors checkpoint: its header claims {header_size} bytes "
            f"but the file has {len(raw) - 8} after the size field "
            "(truncated, or a different format)"
        )
    try:
        header = json.loads(raw[8:8 + header_size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not a valid safetensors checkpoint: "
                              f"unreadable header ({error})")
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a valid safetensors checkpoint: "
                              "its header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: '__metadata__' must map names to strings")
    buffer = memoryview(raw)[8 + header_size:]
    arrays = {}
    for name, entry in header.items():
        try:
            dtype = _DTYPES[entry["dtype"]]
            begin, end = (int(offset) for offset in entry["data_offsets"])
            shape = tuple(int(n) for n in entry["shape"])
            if min(shape, default=0) < 0 or not 0 <= begin <= end:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            message = f"{path}: malformed header entry for {name!r}: {entry!r}"
            raise CheckpointError(message) from None
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if end - begin != expected or end > len(buffer):
            raise CheckpointError(
                f"{path}: array {name!r} needs bytes {begin}..{end} of {len(buffer)} "
                f"(expected {expected} bytes for shape {shape}); the file is truncated or corrupt"
            )
        arrays[name] = np.frombuffer(buffer[begin:end], dtype=dtype).reshape(shape).copy()
    return arrays, metadata
