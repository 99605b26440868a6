"""JSON as strictly as the reference safetensors reader parses it (chapter 09, "Checkpoints").

Python's ``json`` module is lenient where Rust's serde_json, which the ``safetensors`` package
uses, is not; :func:`strict_loads` reads a header the way the reference does, so that tinyllm
accepts and refuses the same files:

- ``NaN``, ``Infinity`` and numbers beyond a 64-bit float (``1e400``) are refused;
- an integer outside the 64-bit range, and ``-0``, are read as floats (so they are not shapes);
- a string with a lone surrogate escape (``"\\ud800"``) is refused: it is not text;
- nesting deeper than 127 levels is refused (and never becomes a RecursionError traceback);
- a key repeated in one object is refused (the reference keeps the last one; a file that says two
  things about one name is ambiguous, so tinyllm is stricter here).

Every refusal is a ``ValueError`` (``json.JSONDecodeError`` or :class:`NotStrictJSON`).
"""

from __future__ import annotations

import json
import math

MAX_DEPTH = 127  # the deepest nesting the reference's parser (serde_json) accepts
UINT64_MAX = 2**64 - 1  # the largest unsigned 64-bit integer: shapes and offsets are these


class NotStrictJSON(ValueError):
    """Text that Python's json module reads but the reference's strict parser refuses."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise NotStrictJSON(f"the key {key!r} appears twice in one JSON object")
        seen.add(key)
    return dict(pairs)


def _finite(value: float) -> float:
    if math.isinf(value):
        raise NotStrictJSON("a number is out of the range of a 64-bit float")
    return value


def _integer(text: str) -> int | float:
    """A JSON integer as the reference reads it: a float if it is -0 or outside 64 bits."""
    if text != "-0" and len(text.lstrip("-")) <= 20:
        value = int(text)
        if -2**63 <= value <= UINT64_MAX:
            return value
    return _finite(float(text))


def _no_constant(name: str) -> float:
    raise NotStrictJSON(f"{name} is not a JSON value")


def _check_tree(tree: object) -> None:
    """Nesting at most MAX_DEPTH deep; every string (keys too) valid text."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > MAX_DEPTH:
                raise NotStrictJSON(f"the JSON is nested more than {MAX_DEPTH} levels deep")
            children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise NotStrictJSON("a string holds a lone surrogate escape (\\ud800-\\udfff)")


def strict_loads(text: str) -> object:
    """``json.loads(text)`` with the reference's rules (module docstring); ValueError if not."""
    try:
        tree = json.loads(text, object_pairs_hook=_unique_keys, parse_int=_integer,
                          parse_float=lambda number: _finite(float(number)),
                          parse_constant=_no_constant)
    except RecursionError:  # far deeper than MAX_DEPTH: Python's own parser gave up
        raise NotStrictJSON(f"the JSON is nested more than {MAX_DEPTH} levels deep") from None
    _check_tree(tree)
    return tree
