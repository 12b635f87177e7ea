"""Classify/regress request JSON → serialized `tf.train.Example`s (TF Serving's rules and texts).

Each JSON object becomes one Example: a key maps to one Feature, whose kind the first element
decides (a number with a decimal point or exponent → float_list, an integer or a boolean →
int64_list, a string or `{"b64": ...}` → bytes_list); later elements must be of the same kind.
Floats are stored as float32, rounded as C casts a double (±inf past float's range).

The Example wire format is written here directly (it is three small messages) rather than through
`tensorflow.core.example.example_pb2`, whose import loads all of TensorFlow: this keeps the codec
importable and testable without TF, and is no slower than building proto objects.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from typing import Any

from berth_server import errors
from berth_server.rest.json_body import (
    decode_b64,
    format_error,
    is_b64_object,
    json_type_name,
    signature_name_of,
    to_bytes,
)

# Half a float ulp above FLT_MAX: a double from here on rounds to infinity as a float.
_FLT_OVERFLOW = float(2**128 - 2**103)
_INT64_MAX = 2**63 - 1
# Feature's oneof field numbers.
_KIND_FIELDS = {"bytes": 1, "float": 2, "int64": 3}


@dataclasses.dataclass(frozen=True, slots=True)
class ExamplesInput:
    """A decoded classify/regress body: serialized Examples and the optional context Example."""

    signature_name: str
    examples: list[bytes]
    context: bytes | None

    def serialized_examples(self) -> list[bytes]:
        """What the signature's input tensor gets: TF Serving prepends the context to each
        example's bytes, so protobuf merging lets an example's feature override the context's."""
        if self.context is None:
            return self.examples
        return [self.context + example for example in self.examples]


def decode_examples_request(body: dict[str, Any]) -> ExamplesInput:
    """Convert a parsed classify or regress body.

    TF Serving's missing-key message names `classify` even on `:regress`; so does this one.
    """
    signature_name = signature_name_of(body)
    context = _example(body["context"]) if "context" in body else None
    if "examples" not in body:
        raise format_error(body, "When method is classify, key 'examples' is expected and was "
                                 "not found")
    rows = body["examples"]
    if type(rows) is not list:
        raise format_error(body, "Expecting 'examples' value to be an list/array")
    if not rows:
        raise format_error(body, "'examples' value is an empty array")
    return ExamplesInput(signature_name, [_example(row) for row in rows], context)


def _example(value: Any) -> bytes:
    if type(value) is not dict:
        raise errors.invalid_argument(
            f"Example must be JSON object but got JSON {json_type_name(value)}")
    entries = b"".join(
        _field(1, _field(1, to_bytes(name)) + _field(2, _feature(name, content)))
        for name, content in value.items())
    return _field(1, entries) if entries else b""


def _feature(name: str, content: Any) -> bytes:
    """One Feature message; an empty list gives a Feature with no kind set."""
    kind = ""
    values: list[Any] = []
    for value in content if type(content) is list else [content]:
        value_kind = _kind(name, value)
        if kind and kind != value_kind:
            raise errors.invalid_argument(
                f"Unexpected element type in feature: {name} expecting type: {kind}")
        kind = value_kind
        values.append(_convert(name, value))
    if not kind:
        return b""
    if kind == "bytes":
        payload = b"".join(_field(1, value) for value in values)
    elif kind == "float":
        payload = _field(1, struct.pack(f"<{len(values)}f", *values))
    else:
        payload = _field(1, b"".join(map(_varint, values)))
    return _field(_KIND_FIELDS[kind], payload)


def _kind(name: str, value: Any) -> str:
    kind = type(value)
    if kind is str or (kind is dict and is_b64_object(value)):
        return "bytes"
    if kind is float:
        return "float"
    if kind is int or kind is bool:
        return "int64"
    raise errors.invalid_argument(
        f"Feature: {name} has element with unexpected JSON type: {json_type_name(value)}")


def _convert(name: str, value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return to_bytes(value)
    if kind is dict:
        return decode_b64(value)
    if kind is float and abs(value) >= _FLT_OVERFLOW:  # what C's cast to float makes ±inf
        return math.copysign(math.inf, value)
    if kind is int and value > _INT64_MAX:
        raise errors.invalid_argument(
            f"Feature: {name} has uint64_t element. Only int64_t is supported.")
    return int(value) if kind is bool else value


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    value &= 0xFFFF_FFFF_FFFF_FFFF  # Negative int64s are written as ten bytes, two's complement.
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
