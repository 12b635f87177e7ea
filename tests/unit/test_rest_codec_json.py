"""The REST JSON text layer: parsing with rapidjson's error texts, value printing, error bodies."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from berth_server import errors
from berth_server.rest import json_body


def parse_error(body: bytes) -> str:
    with pytest.raises(errors.ServingError) as caught:
        json_body.parse_body(body)
    assert caught.value.code == errors.Code.INVALID_ARGUMENT
    return caught.value.message


def test_parses_an_object() -> None:
    assert json_body.parse_body(b'{"instances": [1.0, 2]}') == {"instances": [1.0, 2]}


def test_accepts_nan_and_infinity_tokens() -> None:
    values = json_body.parse_body(b'{"a": [NaN, Infinity, -Infinity, 1]}')["a"]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, 1]


@pytest.mark.parametrize("body", [b'{"a": 18446744073709551616}',
                                  b'{"a": 18446744073709551616, "b": NaN}'])
def test_integers_beyond_uint64_become_doubles_on_both_paths(body: bytes) -> None:
    value = json_body.parse_body(body)["a"]
    assert type(value) is float and value == 2.0**64


def test_keeps_undecodable_bytes_for_string_tensors() -> None:
    text = json_body.parse_body(b'{"a": "\xff\xfeok"}')["a"]
    assert json_body.to_bytes(text) == b"\xff\xfeok"


def test_lone_surrogate_escape_does_not_crash() -> None:
    text = json_body.parse_body(b'{"a": "\\ud800"}')["a"]
    assert json_body.to_bytes(text) == b"\xed\xa0\x80"


@pytest.mark.parametrize(("body", "message"), [
    (b"", "JSON Parse error: The document is empty"),
    (b"   ", "JSON Parse error: The document is empty. at offset: 3"),
    (b'{"a":1,}', "JSON Parse error: Missing a name for object member. at offset: 7"),
    (b"{1: 2}", "JSON Parse error: Missing a name for object member. at offset: 1"),
    (b'{"a" 1}', "JSON Parse error: Missing a colon after a name of object member. at offset: 5"),
    (b'{"a": 1 "b": 2}',
     "JSON Parse error: Missing a comma or '}' after an object member. at offset: 8"),
    (b'{"a": [1 2]}',
     "JSON Parse error: Missing a comma or ']' after an array element. at offset: 9"),
    (b'{"a": "x]" "b"}',
     "JSON Parse error: Missing a comma or '}' after an object member. at offset: 11"),
    (b'{"a": }', "JSON Parse error: Invalid value. at offset: 6"),
    (b'{"a": tru}', "JSON Parse error: Invalid value. at offset: 6"),
    (b"instances = [1, 2]", "JSON Parse error: Invalid value. at offset: 0"),
    (b" ]", "JSON Parse error: The document is empty. at offset: 1"),
    (b'{"a": "x', "JSON Parse error: Missing a closing quotation mark in string. at offset: 6"),
    (b'{"a": "\\x"}', "JSON Parse error: Invalid escape character in string. at offset: 7"),
    (b'{"a": "\\u12g4"}',
     "JSON Parse error: Incorrect hex digit after \\u escape in string. at offset: 8"),
    (b'{"a": "\x01"}', "JSON Parse error: Invalid encoding in string. at offset: 7"),
])
def test_parse_errors_use_rapidjson_texts(body: bytes, message: str) -> None:
    assert parse_error(body) == message


@pytest.mark.parametrize(("body", "shown"), [
    (b"[1, 2]", "[\n    1,\n    2\n]"),
    (b"3.5", "3.5"),
    (b'"s"', '"s"'),
    (b"null", "null"),
])
def test_a_body_that_is_not_an_object_is_rejected(body: bytes, shown: str) -> None:
    assert parse_error(body) == f"JSON Value: {shown} Is not object"


def test_signature_name_defaults_to_empty_and_must_be_a_string() -> None:
    assert json_body.signature_name_of({}) == ""
    assert json_body.signature_name_of({"signature_name": "s"}) == "s"
    with pytest.raises(errors.ServingError) as caught:
        json_body.signature_name_of({"signature_name": ["s"]})
    assert caught.value.message == (
        'JSON Value: {\n    "signature_name": [\n        "s"\n    ]\n} not formatted correctly. '
        "'signature_name' key must be a string value.")


def test_error_body() -> None:
    body = json_body.encode_error('Servable not found for request: Latest("half")')
    assert orjson.loads(body) == {"error": 'Servable not found for request: Latest("half")'}


@pytest.mark.parametrize(("value", "text"), [
    ({}, "{}"),
    ([], "[]"),
    ({"a": [1, {"b": None}], "c": True},
     '{\n    "a": [\n        1,\n        {\n            "b": null\n        }\n    ],\n'
     '    "c": true\n}'),
    ("tab\there \"q\" é", '"tab\\there \\"q\\" é"'),
    # Nested doubles go through rapidjson's Writer::Double layout.
    ([0.1, 1.0, 100.0, 123.456, 1e20, 1e21, 1e-7, 0.000001, -2.5e-10, 1.5e300],
     "[\n    " + ",\n    ".join(["0.1", "1.0", "100.0", "123.456", "100000000000000000000.0",
                                 "1e21", "1e-7", "0.000001", "-2.5e-10", "1.5e300"]) + "\n]"),
    # A lone number goes through TF Serving's WriteDecimal, as float when it fits.
    (0.1, "0.1"),
    (1.0, "1.0"),
    (1e300, "1e+300"),
    (math.nan, "NaN"),
    (-math.inf, "-Infinity"),
])
def test_values_are_shown_as_tf_serving_shows_them(value: Any, text: str) -> None:
    assert json_body.value_to_string(value) == text


@pytest.mark.parametrize(("value", "float32", "text"), [
    # TF Serving's FromJsonSingleFloatTensorSixDigitPrecision expectations.
    (9000000.0, True, "9e+06"),
    (999999.0, True, "999999.0"),
    (0.5, True, "0.5"),
    (0.0003, True, "0.0003"),
    (0.00003, True, "3e-05"),
    (555557.5, True, "555557.5"),
    (0.123456789, True, "0.123456791"),
    (0.1, False, "0.1"),
    (0.1 + 0.2, False, "0.30000000000000004"),
    (3.0, False, "3.0"),
    (math.inf, True, "Infinity"),
])
def test_write_decimal_matches_tf_serving(value: float, float32: bool, text: str) -> None:
    assert json_body.write_decimal(value, float32=float32) == text


@pytest.mark.parametrize(("value", "decoded"), [
    ({"b64": "aGVsbG8="}, b"hello"),
    ({"b64": "aGVsbG8"}, b"hello"),
    ({"b64": ""}, b""),
])
def test_decode_b64(value: dict[str, Any], decoded: bytes) -> None:
    assert json_body.decode_b64(value) == decoded


@pytest.mark.parametrize(("value", "message"), [
    ({"b64": "a$b"}, "Unable to base64 decode"),
    ({"b64": "a"}, "Unable to base64 decode"),
    ({"b64": 1}, 'JSON Value: {\n    "b64": 1\n} not formatted correctly for base64 data'),
])
def test_decode_b64_errors(value: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.ServingError) as caught:
        json_body.decode_b64(value)
    assert caught.value.message == message


@pytest.mark.parametrize(("value", "is_b64"), [
    ({"b64": "x"}, True), ({"b64": "x", "y": 1}, False), ({"b64": 1}, False), ("x", False),
])
def test_b64_object_has_exactly_one_string_key(value: Any, is_b64: bool) -> None:
    assert json_body.is_b64_object(value) is is_b64
