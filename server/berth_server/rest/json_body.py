"""The JSON text layer shared by the REST codecs: parsing, error bodies, value printing.

TF Serving parses with rapidjson (iterative, `kParseNanAndInfFlag`, `kParseStopWhenDoneFlag`:
no depth limit, and whatever follows the root value is ignored) and quotes offending JSON values
in its error messages through rapidjson's PrettyWriter. This module reproduces both: the fast path
is orjson; bodies orjson refuses (NaN/Infinity tokens, invalid UTF-8, trailing text, syntax
errors, nesting past 1024 levels) are re-parsed by the standard library, which accepts those
tokens and reports errors that map onto rapidjson's texts, and a body nested deeper than it
recurses is read by a loop with its own stack. Parse-error offsets are where Python's parser
stopped, usually rapidjson's offset too.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import json
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import orjson

from berth_server import errors

_INT_MIN = -(2**63)
_UINT_END = 2**64
_FLT_RANGE = 3.4028234e38  # rapidjson's IsFloat() bound.
_MAX_INT_CHARS = 21  # longer than any int64/uint64 literal
# A JSON value quoted in an error message is cut after this many characters (as gRPC messages
# are), so an error about a large body costs no more than the body's parse.
MAX_SHOWN_CHARS = 1024

# Python's json messages (prefixes) → rapidjson's GetParseError_En texts.
_PARSE_REASONS: tuple[tuple[str, str], ...] = (
    ("Expecting property name", "Missing a name for object member."),
    ("Illegal trailing comma before end of object", "Missing a name for object member."),
    ("Expecting ':'", "Missing a colon after a name of object member."),
    ("Unterminated string", "Missing a closing quotation mark in string."),
    ("Invalid control character", "Invalid encoding in string."),
    ("Invalid \\escape", "Invalid escape character in string."),
    ("Invalid \\u", "Incorrect hex digit after \\u escape in string."),
)


def parse_body(body: bytes) -> dict[str, Any]:
    """Parse a request body that must be a JSON object, with TF Serving's error texts."""
    if not body:
        raise errors.invalid_argument("JSON Parse error: The document is empty")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = _parse_slow(body)
    if type(doc) is not dict:
        raise format_error(doc, "Is not object")
    return doc


def _parse_slow(body: bytes) -> Any:
    # surrogateescape keeps undecodable bytes, which go back to the same bytes when a string
    # becomes a tensor: rapidjson does not validate UTF-8 either.
    text = body.decode("utf-8", "surrogateescape")
    start = _skip_whitespace(text, 0)
    try:
        try:
            return _DECODER.raw_decode(text, start)[0]  # raw: text after the root is ignored
        except RecursionError:
            return _parse_deep(text, start)
    except json.JSONDecodeError as error:
        raise _parse_error(_reason(error, text), error.pos) from None
    except _NumberTooBig:
        raise errors.invalid_argument(
            "JSON Parse error: Number too big to be stored in double.") from None


def _parse_error(reason: str, offset: int) -> errors.ServingError:
    return errors.invalid_argument(f"JSON Parse error: {reason} at offset: {offset}")


def _parse_int(literal: str) -> int | float:
    """Integers outside int64/uint64 become doubles, as in rapidjson (and orjson)."""
    if len(literal) > _MAX_INT_CHARS:  # int() of thousands of digits is slow, then refused
        value = float(literal)
        if math.isinf(value):
            raise _NumberTooBig
        return value
    value = int(literal)
    return value if _INT_MIN <= value < _UINT_END else float(literal)


_DECODER = json.JSONDecoder(parse_int=_parse_int)
# Reads the one value that starts at an index (the decoder's C scanner; typeshed omits it).
_SCAN_ONCE: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SPACES = frozenset(" \t\n\r")


def _skip_whitespace(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    assert match is not None  # `*` matches the empty string too
    return match.end()


def _parse_deep(text: str, pos: int) -> Any:
    """The root container at `pos`, nested deeper than the json module recurses, read as
    rapidjson's iterative parser reads it: the open containers on a list, scalars by the json
    module's scanner, and rapidjson's error for a token that the parser's state does not take."""
    containers: list[Any] = []  # the open lists and dicts, innermost last
    keys: list[str] = []  # the pending key of each open dict
    state = "value"  # or "first_element", "first_key", "key", "colon", "next"
    while True:
        char = text[pos : pos + 1]
        if char in _SPACES:
            pos = _skip_whitespace(text, pos)
            char = text[pos : pos + 1]
        pos += 1
        if state == "value" or state == "first_element":
            if char == "[" or char == "{":
                containers.append([] if char == "[" else {})
                state = "first_element" if char == "[" else "first_key"
                continue
            if char == "]" and state == "first_element":
                value = containers.pop()
            else:
                value, pos = _scalar(text, pos - 1)
        elif state == "next":
            in_list = type(containers[-1]) is list
            if char == ",":
                state = "value" if in_list else "key"
                continue
            if char != ("]" if in_list else "}"):
                raise _parse_error("Missing a comma or ']' after an array element." if in_list
                                   else "Missing a comma or '}' after an object member.", pos - 1)
            value = containers.pop()
        elif state == "colon":
            if char != ":":
                raise _parse_error("Missing a colon after a name of object member.", pos - 1)
            state = "value"
            continue
        elif char == "}" and state == "first_key":
            value = containers.pop()
        elif char == '"':
            key, pos = _SCAN_ONCE(text, pos - 1)
            keys.append(key)
            state = "colon"
            continue
        else:
            raise _parse_error("Missing a name for object member.", pos - 1)
        if not containers:
            return value  # whatever follows the root is not read
        if type(containers[-1]) is list:
            containers[-1].append(value)
        else:
            containers[-1][keys.pop()] = value
        state = "next"


def _scalar(text: str, pos: int) -> tuple[Any, int]:
    """One string, number or literal (never a container: the scanner would recurse into it)."""
    if text[pos : pos + 1] in ("", "\0", "]", "}", ",", ":"):
        raise _parse_error("Invalid value.", pos)
    try:
        value, end = _SCAN_ONCE(text, pos)
    except StopIteration:
        raise _parse_error("Invalid value.", pos) from None
    return value, end


def _reason(error: json.JSONDecodeError, text: str) -> str:
    if error.msg.startswith("Expecting value"):
        # rapidjson's first state calls a document empty when no token may start a value there.
        at_root = not text[: error.pos].strip()
        empty = at_root and text[error.pos : error.pos + 1] in ("", "\0", "]", "}", ",", ":")
        return "The document is empty." if empty else "Invalid value."
    if error.msg.startswith(("Expecting ',' delimiter", "Illegal trailing comma")):
        if _innermost_container(text, error.pos) == "{":
            return "Missing a comma or '}' after an object member."
        return "Missing a comma or ']' after an array element."
    for prefix, reason in _PARSE_REASONS:
        if error.msg.startswith(prefix):
            return reason
    return "Unspecific syntax error."


def _innermost_container(text: str, end: int) -> str:
    """'{' or '[' for the container open at `end` (error path only)."""
    stack: list[str] = []
    in_string = escaped = False
    for char in text[:end]:
        if in_string:
            escaped = not escaped and char == "\\"
            in_string = escaped or char != '"'
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append(char)
        elif char in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def signature_name_of(body: dict[str, Any]) -> str:
    """The request's `signature_name`, or "" when absent (the caller applies the default)."""
    name = body.get("signature_name", "")
    if type(name) is not str:
        raise errors.invalid_argument(
            f"JSON Value: {value_to_string(body)} not formatted correctly. "
            "'signature_name' key must be a string value.")
    return name


def format_error(doc: Any, message: str) -> errors.ServingError:
    """TF Serving's `FormatError`: the offending value, then the complaint."""
    return errors.invalid_argument(f"JSON Value: {value_to_string(doc)} {message}")


def encode_error(message: str) -> bytes:
    """The REST error body. TF Serving pretty-prints it; the JSON value is the same."""
    try:
        return orjson.dumps({"error": message})
    except TypeError:  # it quotes body bytes that are not UTF-8 (kept as lone surrogates)
        printable = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in message)
        return orjson.dumps({"error": printable})


def dumps(value: Any) -> bytes:
    """Compact JSON with numpy arrays and scalars written natively by orjson."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def json_type_name(value: Any) -> str:
    """rapidjson's type names as TF Serving prints them in errors."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    return "String" if isinstance(value, str) else "Number"


def is_b64_object(value: Any) -> bool:
    """`{"b64": "<string>"}` with exactly that one key: bytes, not a named-input object."""
    return type(value) is dict and len(value) == 1 and type(value.get("b64")) is str


def decode_b64(value: dict[str, Any]) -> bytes:
    """Decode a b64 object leniently about padding, like absl's Base64Unescape."""
    if not is_b64_object(value):
        raise errors.invalid_argument(
            f"JSON Value: {value_to_string(value)} not formatted correctly for base64 data")
    text: str = value["b64"]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        stripped = text.rstrip("=")
        try:
            return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise errors.invalid_argument("Unable to base64 decode") from None


def to_bytes(text: str) -> bytes:
    """A JSON string's bytes; undecodable body bytes (kept as surrogates) come back unchanged."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # A lone surrogate from a \u escape.
        return text.encode("utf-8", "surrogatepass")


class _NumberTooBig(ValueError):
    """An integer literal beyond even a double's range."""


class _Full(Exception):
    """The printed value reached MAX_SHOWN_CHARS."""


class _Printed(list[str]):
    """The printed parts, refusing to grow past MAX_SHOWN_CHARS."""

    size = 0

    def append(self, part: str) -> None:
        super().append(part)
        self.size += len(part)
        if self.size > MAX_SHOWN_CHARS:
            raise _Full


def value_to_string(value: Any) -> str:
    """TF Serving's `JsonValueToString`: a lone float as `WriteDecimal`, else PrettyWriter.

    At most MAX_SHOWN_CHARS of it, then `...TRUNCATED`.
    """
    if type(value) is float:
        if abs(value) <= _FLT_RANGE:
            return write_decimal(value, float32=True)
        return write_decimal(value, float32=False)
    parts = _Printed()
    try:
        _pretty(value, "", parts)
    except RecursionError:  # orjson accepts 1024 levels of nesting; this walk takes two per level.
        return "<value nested too deeply to print>"
    except _Full:
        return "".join(parts)[:MAX_SHOWN_CHARS] + "...TRUNCATED"
    return "".join(parts)


def write_decimal(value: float, *, float32: bool) -> str:
    """TF Serving's `WriteDecimal`: printf %g, else max_digits10; whole numbers get `.0`."""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("-Infinity" if value < 0 else "Infinity")
    if float32:
        value = float(np.float32(value))
    text = f"{value:g}"
    parsed = float(text)
    if (np.float32(parsed) != np.float32(value)) if float32 else (parsed != value):
        text = f"{value:.9g}" if float32 else f"{value:.17g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _pretty(value: Any, indent: str, out: list[str]) -> None:
    """rapidjson's PrettyWriter layout: 4-space indent, one member or element per line."""
    if isinstance(value, dict):
        _pretty_container("{", ((_quote(key) + ": ", item) for key, item in value.items()), "}",
                          indent, out)
    elif isinstance(value, list):
        _pretty_container("[", (("", item) for item in value), "]", indent, out)
    elif isinstance(value, str):
        out.append(_quote(value))
    elif type(value) is float:
        out.append(_rapidjson_double(value))
    else:
        out.append(json.dumps(value))


def _pretty_container(start: str, items: Iterator[tuple[str, Any]], end: str, indent: str,
                      out: list[str]) -> None:
    """Walks `items` lazily, so a cut print of a huge container stops early."""
    inner = indent + "    "
    empty = True
    for key, item in items:
        out.append((start + "\n" if empty else ",\n") + inner + key)
        empty = False
        _pretty(item, inner, out)
    out.append(start + end if empty else "\n" + indent + end)


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _rapidjson_double(value: float) -> str:
    """rapidjson's `Writer::Double` (shortest digits laid out by its `Prettify`)."""
    if not math.isfinite(value):
        return write_decimal(value, float32=False)
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    _, digit_tuple, k = decimal.Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    length = len(digits)
    assert isinstance(k, int)
    kk = length + k
    prefix = "-" if value < 0 else ""
    if 0 <= k and kk <= 21:
        return f"{prefix}{digits}{'0' * k}.0"
    if 0 < kk <= 21:
        return f"{prefix}{digits[:kk]}.{digits[kk:]}"
    if -6 < kk <= 0:
        return f"{prefix}0.{'0' * -kk}{digits}"
    mantissa = digits if length == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{prefix}{mantissa}e{kk - 1}"
