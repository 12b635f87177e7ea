"""REST response bodies: predict layouts, number formatting, strings, classify/regress."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from berth_server import errors
from berth_server.rest.response import (
    encode_classify_response,
    encode_predict_response,
    encode_regress_response,
)

INTS = np.array([[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]], dtype=np.int32)
WORDS = np.array([[b"hello", b"world"], [b"tf", b"serving"]], dtype=object)


def parsed(body: bytes) -> Any:
    return json.loads(body)  # The standard library also reads NaN and Infinity.


def test_row_format_single_output_is_one_entry_per_row() -> None:
    assert parsed(encode_predict_response({"x": INTS}, True)) == {
        "predictions": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]]}


def test_columnar_single_output_is_bare() -> None:
    assert parsed(encode_predict_response({"x": np.arange(1, 6, dtype=np.int32)}, False)) == {
        "outputs": [1, 2, 3, 4, 5]}


def test_columnar_scalar_output_is_allowed() -> None:
    assert encode_predict_response({"x": np.array(2.5, np.float32)}, False) == b'{"outputs":2.5}'


def test_half_plus_two_documented_exchange() -> None:
    body = encode_predict_response({"y": np.array([2.5, 3.0, 4.5], np.float32)}, True)
    assert body == b'{"predictions":[2.5,3.0,4.5]}'


def test_several_outputs_tf_serving_example() -> None:
    outputs: dict[str, np.ndarray] = {
        "double_scalar_tensor": np.array([8.0, 9.0]),
        "float_tensor": np.array([[1.0], [2.0]], np.float32),
        "int_tensor": INTS,
        "str_tensor": np.array([[b"foo", b"bar"], [b"baz", b"bat"]], dtype=object),
        "str_tensor_bytes": WORDS,
    }
    assert parsed(encode_predict_response(outputs, True)) == {"predictions": [
        {"double_scalar_tensor": 8.0, "float_tensor": [1.0],
         "int_tensor": [[1, 2], [3, 4], [5, 6]], "str_tensor": ["foo", "bar"],
         "str_tensor_bytes": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]},
        {"double_scalar_tensor": 9.0, "float_tensor": [2.0],
         "int_tensor": [[7, 8], [9, 0], [1, 2]], "str_tensor": ["baz", "bat"],
         "str_tensor_bytes": [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}]}]}
    assert parsed(encode_predict_response(outputs, False)) == {"outputs": {
        "double_scalar_tensor": [8.0, 9.0], "float_tensor": [[1.0], [2.0]],
        "int_tensor": INTS.tolist(), "str_tensor": [["foo", "bar"], ["baz", "bat"]],
        "str_tensor_bytes": [[{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
                             [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}]]}}


@pytest.mark.parametrize(("values", "dtype", "text"), [
    ([0.1, 0.2, 1.0 / 3.0], np.float32, b"[0.1,0.2,0.33333334]"),
    ([3.0, -0.0, 0.0], np.float32, b"[3.0,-0.0,0.0]"),
    ([0.1, 3.0], np.float64, b"[0.1,3.0]"),
    ([np.nan, np.inf, 3.0, -np.inf], np.float32, b"[NaN,Infinity,3.0,-Infinity]"),
    ([np.nan, 0.1], np.float64, b"[NaN,0.1]"),
    ([2**64 - 1], np.uint64, b"[18446744073709551615]"),
    ([-(2**63)], np.int64, b"[-9223372036854775808]"),
    ([-1, 255], np.int16, b"[-1,255]"),
    ([True, False], np.bool_, b"[true,false]"),
])
def test_numbers_are_written_at_the_tensor_precision(values: list[Any], dtype: Any,
                                                     text: bytes) -> None:
    body = encode_predict_response({"x": np.array(values, dtype)}, False)
    assert body == b'{"outputs":' + text + b"}"


def test_six_digit_precision_values_keep_their_float32_value() -> None:
    values = np.array([[9000000, 999999, 0.5], [0.0003, 0.00003, 555557.5]], np.float32)
    written = parsed(encode_predict_response({"x": values}, True))["predictions"]
    assert np.array_equal(np.array(written, np.float32), values)


def test_non_finite_values_per_row_with_several_outputs() -> None:
    outputs: dict[str, np.ndarray] = {
        "f": np.array([[np.nan, 1.0], [2.0, -np.inf]], np.float32),
        "i": np.array([1, 2], np.int64)}
    assert encode_predict_response(outputs, True) == (
        b'{"predictions":[{"f":[NaN,1.0],"i":1},{"f":[2.0,-Infinity],"i":2}]}')


def test_non_finite_scalar() -> None:
    assert encode_predict_response({"x": np.array(np.nan, np.float32)}, False) == (
        b'{"outputs":NaN}')


def test_non_contiguous_arrays_are_written_in_logical_order() -> None:
    transposed = np.arange(6, dtype=np.int32).reshape(2, 3).T
    assert parsed(encode_predict_response({"x": transposed}, False)) == {
        "outputs": [[0, 3], [1, 4], [2, 5]]}


def test_bytes_suffix_writes_b64_and_other_strings_are_text() -> None:
    outputs = {"a_bytes": np.array([b"\xff\x00"], dtype=object),
               "a": np.array([b"caf\xc3\xa9"], dtype=object)}
    assert parsed(encode_predict_response(outputs, True)) == {
        "predictions": [{"a_bytes": {"b64": "/wA="}, "a": "café"}]}


def test_invalid_utf8_text_is_replaced_not_a_crash() -> None:
    body = encode_predict_response({"s": np.array([b"ok\xff"], dtype=object)}, False)
    assert parsed(body) == {"outputs": ["ok\ufffd"]}


def test_numpy_bytes_and_str_arrays_are_strings() -> None:
    assert parsed(encode_predict_response({"s": np.array([b"a", b"bc"])}, False)) == {
        "outputs": ["a", "bc"]}
    assert parsed(encode_predict_response({"s_bytes": np.array(["hi"])}, False)) == {
        "outputs": [{"b64": "aGk="}]}


def test_empty_string_tensor() -> None:
    assert encode_predict_response({"s": np.empty((2, 0), dtype=object)}, True) == (
        b'{"predictions":[[],[]]}')


@pytest.mark.parametrize(("outputs", "row_format", "message"), [
    ({}, True, "Cannot convert empty tensor map to JSON"),
    ({}, False, "Cannot convert empty tensor map to JSON"),
    ({"x": np.array(1, np.int32)}, True, "Tensor name: x has no shape information "),
    ({"a": np.zeros((0, 2)), "b": np.zeros((1, 2))}, True,
     "Tensor name: b has inconsistent batch size: 1 expecting: 0"),
    ({"a": np.zeros(2), "b": np.zeros(3)}, True,
     "Tensor name: b has inconsistent batch size: 3 expecting: 2"),
    ({"x": np.ones(2, np.complex64)}, False,
     "Failed to write JSON value for tensor type: complex64"),
    ({"x": np.ones(2, np.float16)}, False, "Failed to write JSON value for tensor type: half"),
    ({"x": np.ones(2, np.uint16)}, True, "Failed to write JSON value for tensor type: uint16"),
])
def test_predict_response_errors(outputs: Mapping[str, np.ndarray], row_format: bool,
                                 message: str) -> None:
    with pytest.raises(errors.ServingError) as caught:
        encode_predict_response(outputs, row_format)
    assert caught.value.code == errors.Code.INVALID_ARGUMENT
    assert caught.value.message == message


def test_classify_half_plus_two_documented_exchange() -> None:
    assert encode_classify_response([[("", 3.0)]]) == b'{"results":[[["",3.0]]]}'


def test_classify_scores_are_float32_and_labels_text() -> None:
    body = encode_classify_response([[("a", 0.1), (b"b", float("nan"))], [("c", 0.25)]])
    assert body == b'{"results":[[["a",0.1],["b",NaN]],[["c",0.25]]]}'


def test_regress_half_plus_two_documented_exchange() -> None:
    assert encode_regress_response([3.0]) == b'{"results":[3.0]}'
    assert encode_regress_response([0.1, float("inf")]) == b'{"results":[0.1,Infinity]}'


@pytest.mark.parametrize(("encode", "message"), [
    (encode_classify_response, "Cannot convert empty ClassificationResults to JSON"),
    (encode_regress_response, "Cannot convert empty RegressionResults to JSON"),
])
def test_empty_results_are_rejected(encode: Any, message: str) -> None:
    with pytest.raises(errors.ServingError) as caught:
        encode([])
    assert caught.value.message == message
