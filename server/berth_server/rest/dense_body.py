"""A predict body whose one tensor is a dense array of numbers, parsed straight into numpy.

An image sent as JSON is a million bytes of numbers: `json_body.parse_body` makes a Python float
of each and `json_tensor.try_dense` walks the lists again to check and convert them. Here
simdjson reads the numbers into one buffer of doubles, and the array's brackets and commas are
compared with those of a rectangular array of the shape read from its first elements, so the
shape, the nesting depth and the density are checked without a Python object per number.

This is only a shortcut: `parse` answers None for any body it cannot prove to be
`{"instances" | "inputs": <dense array of numbers>}` (optionally with a string
`signature_name`), and the caller then takes the general path, which owns every error message.
What lies around the array is read by orjson, as the general path reads it, so duplicate keys,
a byte order mark or bad UTF-8 there mean what they mean on that path.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import orjson
import simdjson

# Below this size the general path is as fast (measured with bench.rest_json).
MIN_BODY_BYTES = 2 << 10
_KEYS = ("instances", "inputs")
_MAX_QUOTES = 6  # the tensor key, "signature_name" and its value: any string more is not dense
# Everything in a dense array of numbers but its brackets and commas.
_NOT_STRUCTURE = b" \t\n\r0123456789.eE+-"
_NOT_INTEGER = (b".", b"e", b"E")
_MAX_RANK = 64  # json_tensor's limit: a deeper body takes the general path, which refuses it.


@dataclasses.dataclass(frozen=True, slots=True)
class DenseBody:
    """The parsed body: what `json_body.parse_body` would give, with the array as numpy."""

    key: str
    """Either "instances" (row format) or "inputs" (columnar)."""
    signature_name: str
    """As `json_body.signature_name_of` reads it: "" when absent."""
    floats: np.ndarray
    """The numbers as rapidjson's GetDouble reads them, in the array's shape (read-only)."""
    ints: np.ndarray | None
    """The same numbers as int64 when every one is an integer literal within int64."""


def parse(body: bytes) -> DenseBody | None:
    """The body as a DenseBody, or None to take the general path."""
    if len(body) < MIN_BODY_BYTES or body.count(b'"') > _MAX_QUOTES:
        return None
    try:  # simdjson refuses what is not strict JSON, or not valid UTF-8 (ValueError)
        document = simdjson.Parser().parse(body)
        array = _tensor_array(document)
        if array is None:
            return None
        # No key nor the name holds a bracket, so the body's first and last delimit the array.
        return _dense(array, body, body.find(b"["), body.rfind(b"]") + 1)
    except (ValueError, RuntimeError):
        return None


def _tensor_array(document: object) -> simdjson.Array | None:
    """The array under the body's one tensor key, next to at most a bracket-free name."""
    if not isinstance(document, simdjson.Object):
        return None
    keys = list(document.keys())
    tensor_keys = [key for key in keys if key in _KEYS]
    if len(tensor_keys) != 1 or len(set(keys)) != len(keys):
        return None
    if not set(keys) <= {tensor_keys[0], "signature_name"}:
        return None
    name = document.get("signature_name", "")
    array = document[tensor_keys[0]]
    if type(name) is not str or "[" in name or "]" in name or not isinstance(array, simdjson.Array):
        return None
    return array


def _dense(array: simdjson.Array, body: bytes, start: int, end: int) -> DenseBody | None:
    shape = _shape_of(array)
    if shape is None:
        return None
    try:
        floats = np.frombuffer(array.as_buffer(of_type="d"), dtype=np.float64)
    except (TypeError, ValueError):  # a value that is not a number
        return None
    span = body[start:end]
    if floats.size != math.prod(shape):  # first: the skeleton is then no bigger than the span
        return None
    if span.translate(None, _NOT_STRUCTURE) != _skeleton(shape):  # ragged, or mixed depths
        return None
    rest = _rest(body, start, end)
    if rest is None:
        return None
    key, name = rest
    ints = None
    if not any(char in span for char in _NOT_INTEGER):
        try:
            ints = np.frombuffer(array.as_buffer(of_type="i"), dtype=np.int64).reshape(shape)
        except (TypeError, ValueError):  # beyond int64
            pass
    return DenseBody(key, name, floats.reshape(shape), ints)


def _rest(body: bytes, start: int, end: int) -> tuple[str, str] | None:
    """The key and signature name as orjson reads the body with the array left out."""
    try:
        rest = orjson.loads(body[:start] + b"0" + body[end:])
    except orjson.JSONDecodeError:
        return None
    if type(rest) is not dict:
        return None
    keys = [key for key in _KEYS if key in rest]
    name = rest.get("signature_name", "")
    if len(keys) != 1 or rest[keys[0]] != 0 or type(rest[keys[0]]) is not int:
        return None
    if type(name) is not str or not rest.keys() <= {keys[0], "signature_name"}:
        return None
    return keys[0], name


def _shape_of(array: simdjson.Array) -> list[int] | None:
    """The shape read from the first element of each level; None when a level is empty."""
    shape: list[int] = []
    value: object = array
    while isinstance(value, simdjson.Array):
        if not len(value) or len(shape) == _MAX_RANK:
            return None
        shape.append(len(value))
        value = value[0]
    return shape


def _skeleton(shape: list[int]) -> bytes:
    """The brackets and commas of a rectangular array of `shape`, numbers left out."""
    nested = b""
    for size in reversed(shape):
        nested = b"[" + (nested + b",") * (size - 1) + nested + b"]"
    return nested
