"""Chapter 09, safetensors files checked like the reference implementation.

Under test: ``tinyllm/checkpoint/safetensors.py`` and ``tinyllm/checkpoint/strict_json.py``. The
``safetensors`` package (test extra) is the oracle: its Rust reader (``safetensors.deserialize``,
what ``safetensors.numpy.load`` and ``safe_open`` call) decides which files are valid, and tinyllm
must give the same verdict and, where both read a file, the same arrays. tinyllm is stricter on
purpose in four classes of file (see ``stricter_on_purpose``); there the test asserts that
tinyllm refuses and that the reference accepts, so the difference stays documented.
"""

import json
import math
import os
import re
import stat
import struct
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyllm.checkpoint import CheckpointError, load_safetensors, save_safetensors
from tinyllm.checkpoint.safetensors import read_header

safetensors = pytest.importorskip("safetensors")  # the oracle (test extra); skip without it
reference_numpy = pytest.importorskip("safetensors.numpy")

pytestmark = pytest.mark.ch09

# the dtypes NumPy holds, as the reference names them (BF16 is written by hand below)
NUMPY_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
                "I16": "<i2", "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1",
                "BOOL": "?", "C64": "<c8"}
ITEMSIZE = {**{name: np.dtype(code).itemsize for name, code in NUMPY_DTYPES.items()}, "BF16": 2}
NO_NUMPY_TYPE = ("F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F6_E2M3",
                 "F6_E3M2", "F4")
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --------------------------------------------------------------------------------------------------
# The oracle, tinyllm's verdict, and the classes where tinyllm is stricter on purpose
# --------------------------------------------------------------------------------------------------


def reference(raw: bytes):
    """The reference reader's verdict: {name: array} (BF16 widened, BOOL as != 0), or None."""
    try:
        views = safetensors.deserialize(raw)
    except Exception:  # SafetensorError (and, for some inputs, other exceptions of the binding)
        return None
    arrays = {}
    for name, view in views:
        dtype, data, shape = view["dtype"], view["data"], view["shape"]
        if dtype == "BF16":
            bits = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
            arrays[name] = bits.view(np.float32).reshape(shape)
        elif dtype in NUMPY_DTYPES and math.prod(n for n in shape if n) * 8 <= 2**63:
            stored = "u1" if dtype == "BOOL" else NUMPY_DTYPES[dtype]
            array = np.frombuffer(data, dtype=stored).reshape(shape)
            arrays[name] = array != 0 if dtype == "BOOL" else array
        else:
            arrays[name] = (dtype, shape)  # no NumPy array of this type or shape: a description
    return arrays


def tinyllm_reads(raw: bytes, folder: str):
    """tinyllm's verdict on the same bytes: (arrays, metadata), or None for a CheckpointError.
    Any other exception (a traceback) fails the test."""
    path = Path(folder) / "f.safetensors"
    path.write_bytes(raw)
    try:
        return load_safetensors(path)
    except CheckpointError as error:
        assert str(path) in str(error) and "\n" not in str(error)  # one line, naming the file
        return None


def stricter_on_purpose(raw: bytes) -> str | None:
    """Why tinyllm refuses a file that the reference reads, or None if it is no such file.

    1. a key repeated in one JSON object: the reference keeps the last one, but a file that says
       two things about one name is ambiguous;
    2. an entry that is not an object, or a dtype that is not a string: serde also reads a struct
       from a list ([dtype, shape, offsets]) and an enum from a map ({"F32": null}); the format's
       specification is the object form;
    3. the 8-bit and smaller float types: valid safetensors, but NumPy has no such type;
    4. an empty array whose other dimensions multiply past NumPy's limit, (0, 2**40, 2**40):
       NumPy cannot make it, even with no elements.
    """
    (size,) = struct.unpack("<Q", raw[:8])
    repeated = []

    def pairs_hook(pairs):
        keys = [key for key, _ in pairs]
        repeated.extend(key for key in set(keys) if keys.count(key) > 1)
        return dict(pairs)

    header = json.loads(raw[8:8 + size].decode("utf-8"), object_pairs_hook=pairs_hook)
    if repeated:
        return "repeated key"
    entries = [entry for name, entry in header.items() if name != "__metadata__"]
    if any(not isinstance(entry, dict) or not isinstance(entry.get("dtype"), str)
           for entry in entries):
        return "not the object form"
    if any(entry["dtype"] in NO_NUMPY_TYPE for entry in entries):
        return "no NumPy type"
    if any(0 in entry["shape"] and math.prod(n for n in entry["shape"] if n) * 8 > 2**63
           for entry in entries):
        return "a shape NumPy cannot make"  # (a bound: the exact limit depends on the itemsize)
    return None


def assert_same_verdict(raw: bytes, folder: str) -> str:
    """tinyllm accepts exactly what the reference accepts, with the same arrays; returns what
    happened ("both accept", "both refuse", or the reason tinyllm is stricter)."""
    expected, ours = reference(raw), tinyllm_reads(raw, folder)
    if expected is None:
        assert ours is None, f"tinyllm accepts a file the reference refuses: {raw[:200]!r}"
        return "both refuse"
    reason = stricter_on_purpose(raw)
    if reason is not None:
        assert ours is None, f"tinyllm should refuse ({reason}): {raw[:200]!r}"
        return reason
    assert ours is not None, f"tinyllm refuses a file the reference reads: {raw[:200]!r}"
    arrays, metadata = ours
    assert sorted(arrays) == sorted(expected)
    for name, array in arrays.items():
        assert array.shape == expected[name].shape and array.dtype == expected[name].dtype, name
        assert array.tobytes() == expected[name].tobytes(), name  # bit for bit, NaNs included
    with safetensors.safe_open(Path(folder) / "f.safetensors", framework="np") as f:
        assert metadata == (f.metadata() or {})
    return "both accept"


# --------------------------------------------------------------------------------------------------
# Valid files, and their mutations
# --------------------------------------------------------------------------------------------------

names = st.text(min_size=0, max_size=6).filter(lambda name: name != "__metadata__")
shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3)


@st.composite
def valid_files(draw) -> tuple[dict, bytes]:
    """(header, data) of a valid file: random names, dtypes (BF16 too), shapes (0-sized too),
    arrays laid out in a random order, random metadata."""
    specs = draw(st.dictionaries(names, st.tuples(st.sampled_from(sorted(ITEMSIZE)), shapes),
                                 max_size=4))
    order = draw(st.permutations(sorted(specs)))
    header, data = {}, b""
    for name in order:
        dtype, shape = specs[name]
        size = int(np.prod(shape, dtype=np.int64)) * ITEMSIZE[dtype]
        offsets = [len(data), len(data) + size]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": offsets}
        data += draw(st.binary(min_size=size, max_size=size))
    header = dict(sorted(header.items()))  # header order differs from the data's order
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=4), st.text(max_size=6),
                                                      max_size=3))
    return header, data


def encode(header_text: str | bytes, data: bytes, size: int | None = None) -> bytes:
    header_bytes = header_text.encode("utf-8") if isinstance(header_text, str) else header_text
    length = len(header_bytes) if size is None else size
    return struct.pack("<Q", length) + header_bytes + data


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=4),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3),
                                                                      children, max_size=3),
    max_leaves=6,
)
dtypes = st.sampled_from([*ITEMSIZE, *NO_NUMPY_TYPE, "f32", "F128", "", "C128"]) | json_values
tricky_numbers = st.sampled_from(["-0", "1e400", "-1e400", "1.0", "1e2", "2.9", "01", "-1", "0.5e1",
                                  "18446744073709551615", "18446744073709551616", "9" * 30,
                                  "NaN", "Infinity", "true", "null", '"3"', "1e-400"])
tricky_strings = st.sampled_from(['"\\ud800"', '"\\udc00"', '"\\ud83d\\ude00"', '"\\u0000"',
                                  '"a\\"b"', '"__metadata__"', '""'])


@st.composite
def json_mutation(draw, header: dict) -> str:
    """The header's JSON after one change to its fields."""
    header = json.loads(json.dumps(header))
    names = [name for name in header if name != "__metadata__"]
    kind = draw(st.sampled_from(["shape", "offsets", "dtype", "drop", "extra", "entry", "metadata",
                                 "swap", "whole", "deep"]))
    if kind == "metadata":
        header["__metadata__"] = draw(json_values)
    elif kind == "whole":
        return json.dumps(draw(json_values))
    elif kind == "deep":  # nested lists in an extra field (the reference ignores extra fields)
        depth = draw(st.integers(120, 130) | st.integers(1000, 5000))
        (header[draw(st.sampled_from(names))] if names else header)["x"] = "@deep@"
        return json.dumps(header).replace('"@deep@"', "[" * depth + "]" * depth)
    elif not names:
        header[draw(st.text(max_size=3))] = draw(json_values)
    else:
        name = draw(st.sampled_from(names))
        entry = header[name]
        if kind == "shape":
            entry["shape"] = draw(json_values | st.lists(st.integers(-2, 2**65), max_size=3))
        elif kind == "offsets":
            entry["data_offsets"] = draw(json_values | st.lists(st.integers(-2, 64), max_size=3))
        elif kind == "dtype":
            entry["dtype"] = draw(dtypes)
        elif kind == "drop":
            del entry[draw(st.sampled_from(sorted(entry)))]
        elif kind == "extra":
            entry[draw(st.text(max_size=6))] = draw(json_values)
        elif kind == "entry":
            header[name] = draw(json_values | st.just(list(entry.values())) |
                                st.just({key: value for key, value in entry.items()}))
        elif kind == "swap":
            other = header[draw(st.sampled_from(names))]
            entry["data_offsets"], other["data_offsets"] = (other["data_offsets"],
                                                            entry["data_offsets"])
    return json.dumps(header)  # NaN and inf come out as NaN and Infinity: not JSON


@st.composite
def mutated_files(draw) -> bytes:
    header, data = draw(valid_files())
    text = json.dumps(header)
    kind = draw(st.sampled_from(["none", "json", "number", "string", "duplicate", "padding",
                                 "byte", "truncate", "append", "length"]))
    if kind == "json":
        return encode(draw(json_mutation(header)), data)
    if kind == "number" and re.search(r"\d+", text):
        matches = list(re.finditer(r"-?\d+", text))
        match = draw(st.sampled_from(matches))
        text = text[:match.start()] + draw(tricky_numbers) + text[match.end():]
    elif kind == "string" and re.search(r'"(?:[^"\\]|\\.)*"', text):
        matches = list(re.finditer(r'"(?:[^"\\]|\\.)*"', text))
        match = draw(st.sampled_from(matches))
        text = text[:match.start()] + draw(tricky_strings) + text[match.end():]
    elif kind == "duplicate" and len(text) > 2:
        member = draw(st.sampled_from([f"{json.dumps(k)}:{json.dumps(v)}" for k, v in
                                       header.items()] or ['"a":1']))
        text = "{" + member + "," + text[1:] if text != "{}" else "{" + member + "," + member + "}"
    elif kind == "padding":
        text = draw(st.sampled_from(["", " ", "\n", "\t", "\r", "\x00", "\x0c", "\ufeff"])) + text \
            + draw(st.sampled_from(["", "    ", "\n", "\x00", " x", "}"]))
    raw = bytearray(encode(text, data))
    if kind == "byte":
        position = draw(st.integers(0, len(raw) - 1))
        raw[position] = draw(st.integers(0, 255))
    elif kind == "truncate":
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif kind == "append":
        raw += draw(st.binary(min_size=1, max_size=9))
    elif kind == "length":
        (size,) = struct.unpack("<Q", raw[:8])
        new = draw(st.integers(-9, 9).map(lambda d: max(size + d, 0)) | st.integers(0, 2**64 - 1))
        raw[:8] = struct.pack("<Q", new)
    return bytes(raw)


@SETTINGS
@given(file=valid_files())
def test_valid_files_are_read_as_the_reference_reads_them(file):
    header, data = file
    raw = encode(json.dumps(header), data)
    assert reference(raw) is not None  # the generator makes valid files
    with tempfile.TemporaryDirectory() as folder:
        assert assert_same_verdict(raw, folder) == "both accept"


@SETTINGS
@given(raw=mutated_files())
def test_mutated_files_get_the_reference_verdict(raw):
    with tempfile.TemporaryDirectory() as folder:
        assert_same_verdict(raw, folder)


def test_the_mutations_reach_every_verdict():
    """The fuzz test is only as good as its mutations: they produce files both readers accept,
    files both refuse, and each class where tinyllm is stricter."""
    seen = set()

    @settings(max_examples=400, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(raw=mutated_files())
    def collect(raw):
        with tempfile.TemporaryDirectory() as folder:
            seen.add(assert_same_verdict(raw, folder))

    collect()
    assert {"both accept", "both refuse", "repeated key"} <= seen, seen


# --------------------------------------------------------------------------------------------------
# Round trips with the reference writer and reader
# --------------------------------------------------------------------------------------------------


@st.composite
def numpy_arrays(draw) -> dict[str, np.ndarray]:
    """name -> array of every dtype both libraries write, 0-d and 0-sized shapes included."""
    result = {}
    for name in draw(st.lists(names, max_size=4, unique=True)):
        dtype = np.dtype(NUMPY_DTYPES[draw(st.sampled_from(sorted(NUMPY_DTYPES)))])
        shape = tuple(draw(shapes))
        raw = draw(st.binary(min_size=int(np.prod(shape)) * dtype.itemsize,
                             max_size=int(np.prod(shape)) * dtype.itemsize))
        array = np.frombuffer(raw, dtype="u1" if dtype == np.bool_ else dtype).reshape(shape)
        result[name] = np.asarray(array != 0) if dtype == np.bool_ else array.copy()
    return result


metadata_dicts = st.none() | st.dictionaries(st.text(max_size=5), st.text(max_size=8), max_size=3)


@SETTINGS
@given(arrays=numpy_arrays(), metadata=metadata_dicts)
def test_every_file_the_reference_writes_tinyllm_reads_identically(arrays, metadata):
    raw = reference_numpy.save(arrays, metadata=metadata)
    with tempfile.TemporaryDirectory() as folder:
        if assert_same_verdict(raw, folder) == "both refuse":
            # safetensors 0.8 writes {},"__metadata__":{}} for no arrays and empty metadata: a
            # file its own reader refuses (and so does tinyllm); no other case may get here
            assert arrays == {} and metadata == {}
            return
        loaded, loaded_metadata = tinyllm_reads(raw, folder)
    assert loaded_metadata == (metadata or {})
    assert sorted(loaded) == sorted(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape
        assert loaded[name].tobytes() == array.tobytes()
        assert loaded[name].flags.writeable and loaded[name].flags.c_contiguous


@SETTINGS
@given(arrays=numpy_arrays(), metadata=metadata_dicts)
def test_every_file_tinyllm_writes_the_reference_reads_identically(arrays, metadata):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.safetensors"
        save_safetensors(path, arrays, metadata)
        read_back = reference_numpy.load(path.read_bytes())
        with safetensors.safe_open(path, framework="np") as f:
            assert (f.metadata() or {}) == (metadata or {})
            assert sorted(f.keys()) == sorted(arrays)
    for name, array in arrays.items():
        assert read_back[name].dtype == array.dtype and read_back[name].shape == array.shape
        assert read_back[name].tobytes() == array.tobytes()


def test_bf16_is_widened_to_float32(tmp_path):
    """bfloat16 is the upper 16 bits of a float32: reading shifts them back (low bits zero)."""
    values = np.array([1.0, -2.5, 3.14159, 1e-3, np.inf, -0.0, 65504.0, 1e38], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype("<u2")  # truncated to bfloat16
    header = {"w": {"dtype": "BF16", "shape": [2, 4], "data_offsets": [0, 16]}}
    raw = encode(json.dumps(header), bits.tobytes())
    assert reference(raw) is not None
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(raw)
    loaded = load_safetensors(path)[0]["w"]
    assert loaded.dtype == np.float32 and loaded.shape == (2, 4)
    expected = (values.view(np.uint32) & 0xFFFF0000).view(np.float32).reshape(2, 4)
    assert loaded.tobytes() == expected.tobytes()
    np.testing.assert_allclose(loaded.ravel()[:4], values[:4], rtol=2**-7)  # 8 bits of mantissa


# --------------------------------------------------------------------------------------------------
# Each rule, with a hand-made file: tinyllm's error, and the reference's verdict beside it
# --------------------------------------------------------------------------------------------------

F32 = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}'
FOUR = b"\x00" * 4


def entry(shape="[1]", offsets="[0,4]", dtype='"F32"', extra=""):
    return '{"dtype":%s,"shape":%s,"data_offsets":%s%s}' % (dtype, shape, offsets, extra)


REFUSED = [  # (what, raw file, a phrase of tinyllm's message)
    ("shorter than the size field", b"\x01\x00\x00", "only 3 bytes"),
    ("header over 100 MB", encode("{}", b"", size=100_000_001), "more than the 100000000"),
    ("header longer than the file", encode("{}", b"", size=50), "claims 50 bytes but the file"),
    ("empty header", encode("", b""), "unreadable header"),
    ("header not UTF-8", encode(b'{"\xff":1}', b""), "not UTF-8"),
    ("header a JSON list", encode("[1, 2]", b""), "a JSON list, not an object"),
    ("header a JSON string", encode('"text"', b""), "a JSON str, not an object"),
    ("NUL padding", encode("{}\x00\x00", b""), "unreadable header"),
    ("byte-order mark", encode("\ufeff{}", b""), "unreadable header"),
    ("shape 2.9", encode('{"w":%s}' % entry(shape="[2.9]"), FOUR), "shape must be a list"),
    ("shape true", encode('{"w":%s}' % entry(shape="[true]"), FOUR), "shape must be a list"),
    ("shape 1.0", encode('{"w":%s}' % entry(shape="[1.0]"), FOUR), "shape must be a list"),
    ("shape -0", encode('{"w":%s}' % entry(shape="[-0]", offsets="[0,0]"), b""),
     "shape must be a list"),
    ("shape -1", encode('{"w":%s}' % entry(shape="[-1]"), FOUR), "shape must be a list"),
    ("shape 2**64", encode('{"w":%s}' % entry(shape=f"[{2**64}]"), FOUR), "shape must be a list"),
    ("shape Infinity", encode('{"w":%s}' % entry(shape="[Infinity]"), FOUR), "Infinity is not"),
    ("shape 1e400", encode('{"w":%s}' % entry(shape="[1e400]"), FOUR), "out of the range"),
    ("shape null", encode('{"w":%s}' % entry(shape="null"), FOUR), "shape must be a list"),
    ("shape overflowing 64 bits", encode('{"w":%s}' % entry(shape=f"[{2**32},{2**32}]"), FOUR),
     "too large to exist"),
    ("shape overflowing before a 0", encode('{"w":%s}' % entry(shape=f"[{2**40},{2**40},0]",
                                                               offsets="[0,0]"), b""),
     "too large to exist"),
    ("three offsets", encode('{"w":%s}' % entry(offsets="[0,4,4]"), FOUR), "two non-negative"),
    ("float offset", encode('{"w":%s}' % entry(offsets="[0,4.0]"), FOUR), "two non-negative"),
    ("begin after end", encode('{"w":%s}' % entry(shape="[0]", offsets="[4,0]"), FOUR),
     "back to back"),
    ("a gap before", encode('{"w":%s}' % entry(offsets="[4,8]"), FOUR * 2), "back to back"),
    ("a gap between", encode('{"a":%s,"b":%s}' % (F32, entry(offsets="[8,12]")), FOUR * 3),
     "back to back"),
    ("overlapping arrays", encode('{"a":%s,"b":%s}' % (F32, F32), FOUR), "back to back"),
    ("partly overlapping", encode('{"a":%s,"b":%s}' % (entry(shape="[2]", offsets="[0,8]"),
                                                       entry(offsets="[4,8]")), FOUR * 2),
     "back to back"),
    ("bytes do not fit the shape", encode('{"w":%s}' % entry(shape="[2]"), FOUR),
     "expected 8 bytes for shape (2,)"),
    ("data shorter than the offsets", encode('{"w":%s}' % entry(shape="[2]", offsets="[0,8]"),
                                             FOUR), "needs bytes 0..8 of 4"),
    ("a trailing byte", encode('{"w":%s}' % F32, FOUR + b"x"), "1 bytes after the last array"),
    ("an empty file's trailing byte", encode("{}", b"x"), "1 bytes after the last array"),
    ("zero-sized array past the end", encode('{"a":%s,"b":%s}' % (
        F32, entry(shape="[0]", offsets="[8,8]")), FOUR), "back to back"),
    ("unknown dtype", encode('{"w":%s}' % entry(dtype='"f32"'), FOUR), "unknown dtype 'f32'"),
    ("dtype null", encode('{"w":%s}' % entry(dtype="null"), FOUR), "unknown dtype None"),
    ("missing offsets", encode('{"w":{"dtype":"F32","shape":[1]}}', FOUR),
     "missing data_offsets"),
    ("entry a number", encode('{"w":5}', FOUR), "expected an object"),
    ("a field twice", encode('{"w":%s}' % entry(extra=',"dtype":"F32"'), FOUR), "appears twice"),
    ("__metadata__ twice", encode('{"__metadata__":{},"__metadata__":{}}', b""), "appears twice"),
    ("metadata value a number", encode('{"__metadata__":{"k":1}}', b""), "map names to strings"),
    ("metadata a list", encode('{"__metadata__":["k"]}', b""), "map names to strings"),
    ("lone surrogate in a name", encode('{"\\ud800":%s}' % F32, FOUR), "lone surrogate"),
    ("lone low surrogate", encode('{"\\udc00":%s}' % F32, FOUR), "lone surrogate"),
    ("control character", encode('{"a\x01":%s}' % F32, FOUR), "unreadable header"),
    ("nested 128 deep", encode('{"w":%s}' % entry(extra=',"x":' + "[" * 126 + "]" * 126), FOUR),
     "nested more than 127 levels"),
    ("nested 100000 deep", encode("[" * 100_000 + "]" * 100_000, b""), "nested more than 127"),
    ("unterminated nesting", encode("{" * 100_000, b""), "unreadable header"),
    ("number out of range in an extra field", encode('{"w":%s}' % entry(extra=',"x":1e999'),
                                                     FOUR), "out of the range"),
]
STRICTER = [  # (what, raw file, phrase): the reference reads these, tinyllm refuses on purpose
    ("a tensor named twice", encode('{"w":%s,"w":%s}' % (F32, F32), FOUR), "'w' appears twice"),
    ("a metadata key twice", encode('{"__metadata__":{"k":"1","k":"2"}}', b""), "appears twice"),
    ("an entry as a list", encode('{"w":["F32",[1],[0,4]]}', FOUR), "expected an object"),
    ("a dtype as a map", encode('{"w":%s}' % entry(dtype='{"F32":null}'), FOUR), "unknown dtype"),
    ("an 8-bit float", encode('{"w":%s}' % entry(dtype='"F8_E4M3"', shape="[4]"), FOUR),
     "F8_E4M3 has no NumPy type"),
    ("an empty array NumPy cannot make", encode('{"w":%s}' % entry(
        shape=f"[0,{2**40},{2**40}]", offsets="[0,0]"), b""), "NumPy cannot make"),
]
ACCEPTED = [  # (what, raw file, {name: shape}): odd but valid, for both readers
    ("no arrays at all", encode("{}", b""), {}),
    ("metadata null", encode('{"__metadata__":null,"w":%s}' % F32, FOUR), {"w": (1,)}),
    ("leading and trailing whitespace", encode(' \r\n\t{"w":%s}  \n' % F32, FOUR),
     {"w": (1,)}),
    ("header length not a multiple of 8", encode('{"w":%s}' % F32, FOUR), {"w": (1,)}),
    ("offsets out of name order", encode('{"a":%s,"b":%s}' % (entry(offsets="[4,8]"), F32),
                                         FOUR * 2), {"a": (1,), "b": (1,)}),
    ("extra fields in an entry", encode('{"w":%s}' % entry(extra=',"x":[[1e-400]],"y":{}'), FOUR),
     {"w": (1,)}),
    ("nested 127 deep in an extra field", encode('{"w":%s}' % entry(
        extra=',"x":' + "[" * 125 + "]" * 125), FOUR), {"w": (1,)}),
    ("two empty arrays at one offset", encode('{"a":%s,"b":%s}' % (
        entry(shape="[0]", offsets="[0,0]"), entry(shape="[0]", offsets="[0,0]")), b""),
     {"a": (0,), "b": (0,)}),
    ("an empty array at the end", encode('{"a":%s,"b":%s}' % (
        F32, entry(shape="[0]", offsets="[4,4]")), FOUR), {"a": (1,), "b": (0,)}),
    ("an empty array whose other sizes are large", encode('{"w":%s}' % entry(
        shape=f"[0,{2**20},{2**20}]", offsets="[0,0]"), b""), {"w": (0, 2**20, 2**20)}),
    ("a 0-d array", encode('{"w":%s}' % entry(shape="[]"), FOUR), {"w": ()}),
    ("an empty name and a surrogate pair", encode('{"":%s,"\\ud83d\\ude00":%s}' % (
        F32, entry(offsets="[4,8]")), FOUR * 2), {"": (1,), "\U0001F600": (1,)}),
    ("a complex64 array", encode('{"w":%s}' % entry(dtype='"C64"', offsets="[0,8]"), FOUR * 2),
     {"w": (1,)}),
]


@pytest.mark.parametrize("what, raw, phrase", REFUSED, ids=[case[0] for case in REFUSED])
def test_each_rule_refuses_what_the_reference_refuses(what, raw, phrase, tmp_path):
    assert reference(raw) is None, f"the reference reads {what}"
    path = tmp_path / "bad.safetensors"
    path.write_bytes(raw)
    with pytest.raises(CheckpointError, match=re.escape(phrase)) as info:
        load_safetensors(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("what, raw, phrase", STRICTER, ids=[case[0] for case in STRICTER])
def test_where_tinyllm_is_stricter_than_the_reference(what, raw, phrase, tmp_path):
    assert reference(raw) is not None, f"the reference now refuses {what}: drop the exception"
    assert stricter_on_purpose(raw) is not None
    path = tmp_path / "strict.safetensors"
    path.write_bytes(raw)
    with pytest.raises(CheckpointError, match=re.escape(phrase)):
        load_safetensors(path)


@pytest.mark.parametrize("what, raw, shapes", ACCEPTED, ids=[case[0] for case in ACCEPTED])
def test_odd_but_valid_files_are_read(what, raw, shapes, tmp_path):
    assert reference(raw) is not None
    assert_same_verdict(raw, str(tmp_path))
    path = tmp_path / "f.safetensors"
    assert {name: array.shape for name, array in load_safetensors(path)[0].items()} == shapes


def test_the_header_is_checked_without_reading_the_data(tmp_path):
    """A sparse file of 2 GiB: the header is read and checked, the data is not touched."""
    import tracemalloc

    size = 2**31
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}})
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as f:
        f.write(encode(header, b""))
        f.truncate(8 + len(header) + size)  # sparse: no disk space used
    tracemalloc.start()
    checked = read_header(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert checked.tensors["w"].shape == (size,) and checked.data_start == 8 + len(header)
    assert peak < 1_000_000


# --------------------------------------------------------------------------------------------------
# Writing: one temporary file per writer, atomic, with an ordinary file's permissions
# --------------------------------------------------------------------------------------------------


def test_each_writer_has_its_own_temporary_file_in_the_target_folder(tmp_path, monkeypatch):
    temporaries = []
    real_replace = os.replace

    def replace(source, target):
        temporaries.append(Path(source))
        assert Path(source).exists() and Path(source).parent == Path(target).parent
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    for seed in range(3):
        save_safetensors(tmp_path / "w.safetensors", {"w": np.full(3, seed)})
    assert len(set(temporaries)) == 3  # a new name each time: never a shared fixed name
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_concurrent_writers_never_corrupt_the_file(tmp_path):
    """Eight threads save different arrays to one path: the file is always one whole version."""
    path = tmp_path / "shared.safetensors"
    versions = {k: {"w": np.full((64, 64), k, dtype=np.float64)} for k in range(8)}
    errors = []

    def writer(k):
        try:
            for _ in range(10):
                save_safetensors(path, versions[k], {"writer": str(k)})
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(k,)) for k in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    arrays, metadata = load_safetensors(path)
    np.testing.assert_array_equal(arrays["w"], versions[int(metadata["writer"])]["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["shared.safetensors"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_saved_file_has_the_permissions_of_an_ordinary_file(tmp_path):
    umask = os.umask(0o022)
    try:
        save_safetensors(tmp_path / "p.safetensors", {"w": np.ones(2)})
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "p.safetensors").stat().st_mode) == 0o644


def test_the_writer_refuses_names_no_reader_would_take(tmp_path):
    with pytest.raises(TypeError, match="other than '__metadata__'"):
        save_safetensors(tmp_path / "a.safetensors", {"__metadata__": np.ones(1)})
    with pytest.raises(ValueError, match="not valid text"):
        save_safetensors(tmp_path / "b.safetensors", {"\ud800": np.ones(1)})
    with pytest.raises(ValueError, match="not valid text"):
        save_safetensors(tmp_path / "c.safetensors", {"w": np.ones(1)}, {"note": "\udc00"})
    assert list(tmp_path.iterdir()) == []
