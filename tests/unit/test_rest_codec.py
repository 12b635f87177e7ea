"""Predict request decoding: TF Serving's json_tensor rules and exact error texts."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest

from berth_server import errors
from berth_server.rest import json_body, json_tensor, predict_request
from berth_server.rest.json_body import parse_body, signature_name_of

FLOAT, DOUBLE, INT32, UINT8, INT16, INT8, STRING = 1, 2, 3, 4, 5, 6, 7
INT64, BOOL, HALF, UINT32, UINT64 = 9, 10, 19, 22, 23


def decode(body: bytes | dict[str, Any], dtypes: dict[str, int]) -> predict_request.PredictInputs:
    """Decode as the REST handler does: the signature name first, then the tensors."""
    document = parse_body(body if isinstance(body, bytes) else orjson.dumps(body))
    return predict_request.decode_predict_request(
        document, dtypes, signature_name=signature_name_of(document))


def error_of(body: bytes | dict[str, Any], dtypes: dict[str, int]) -> errors.ServingError:
    with pytest.raises(errors.ServingError) as caught:
        decode(body, dtypes)
    return caught.value


def assert_tensor(actual: np.ndarray, expected: Any, dtype: Any) -> None:
    assert actual.dtype == np.dtype(dtype)
    expected_array = np.array(expected, dtype=dtype)
    assert actual.shape == expected_array.shape
    assert np.array_equal(actual, expected_array, equal_nan=actual.dtype.kind == "f")


# (body, input dtypes, expected tensors {name: (values, numpy dtype)}, row format)
DECODED = [
    pytest.param(b'{"instances": [1.0, 2.0, 5.0]}', {"x": FLOAT},
                 {"x": ([1.0, 2.0, 5.0], np.float32)}, True, id="half_plus_two-doc-example"),
    pytest.param(b'{"instances": [[1,2],[3,4],[5,6]]}', {"default": INT32},
                 {"default": ([[1, 2], [3, 4], [5, 6]], np.int32)}, True, id="int32-rows"),
    pytest.param(b'{"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}', {"d": FLOAT},
                 {"d": ([1, 2, 3, 4, 5.003, 0.007, 0], np.float32)}, True, id="float-takes-ints"),
    pytest.param(b'{"instances": [1.0, 2, 3, 4, 0.662, 0, 0.0]}', {"d": DOUBLE},
                 {"d": ([1, 2, 3, 4, 0.662, 0, 0], np.float64)}, True, id="double-takes-ints"),
    pytest.param(b'{"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}', {"d": STRING},
                 {"d": ([b"hello", b"world"], object)}, True, id="b64-scalars-are-values"),
    pytest.param(b'{"instances": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}', {"d": STRING},
                 {"d": ([[b"hello"], [b"world"]], object)}, True, id="b64-lists"),
    pytest.param(b'{"instances": [{"d": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}]}',
                 {"d": STRING}, {"d": ([[[b"hello"], [b"world"]]], object)}, True,
                 id="named-b64"),
    pytest.param(b'{"instances": ["h\xc3\xa9", "b"]}', {"s": STRING},
                 {"s": ([b"h\xc3\xa9", b"b"], object)}, True, id="strings-as-utf8"),
    pytest.param(b'{"instances": ["\xff\xfe"]}', {"s": STRING},
                 {"s": ([b"\xff\xfe"], object)}, True, id="invalid-utf8-bytes-kept"),
    pytest.param(b'{"instances": [true, false]}', {"b": BOOL},
                 {"b": ([True, False], np.bool_)}, True, id="bool"),
    pytest.param(b'{"instances": [18446744073709551615, 0]}', {"u": UINT64},
                 {"u": ([2**64 - 1, 0], np.uint64)}, True, id="uint64-max"),
    pytest.param(b'{"instances": [4294967295]}', {"u": UINT32},
                 {"u": ([2**32 - 1], np.uint32)}, True, id="uint32-max"),
    pytest.param(b'{"instances": [-9223372036854775808, 9223372036854775807]}', {"i": INT64},
                 {"i": ([-(2**63), 2**63 - 1], np.int64)}, True, id="int64-bounds"),
    pytest.param(b'{"instances": [300, -1]}', {"i": INT8}, {"i": ([44, -1], np.int8)}, True,
                 id="int8-wraps-like-int_val"),
    pytest.param(b'{"instances": [255, -1]}', {"i": UINT8}, {"i": ([255, 255], np.uint8)}, True,
                 id="uint8-wraps-like-int_val"),
    pytest.param(b'{"instances": [-32768]}', {"i": INT16}, {"i": ([-32768], np.int16)}, True,
                 id="int16"),
    pytest.param(b'{"instances": [[]]}', {"e": FLOAT}, {"e": (np.zeros((1, 0)), np.float32)},
                 True, id="empty-rows"),
    pytest.param(b'{"instances": [1.0, NaN, Infinity, -Infinity]}', {"f": FLOAT},
                 {"f": ([1.0, np.nan, np.inf, -np.inf], np.float32)}, True, id="non-finite"),
    pytest.param(b'{"instances": [3.4028234663852886e38, 16777215, -16777215]}', {"f": FLOAT},
                 {"f": ([3.4028234663852886e38, 16777215, -16777215], np.float32)}, True,
                 id="float-limits"),
    pytest.param(b'{"instances": [16777217, 1435774380]}', {"f": FLOAT},
                 {"f": ([16777216, 1435774336], np.float32)}, True, id="float-rounds-ints"),
    pytest.param(b'{"instances": [1.7976931348623157e308, -1.7976931348623157e308, 1e-310]}',
                 {"f": FLOAT}, {"f": ([np.inf, -np.inf, 0.0], np.float32)}, True,
                 id="float-overflows-to-inf"),
    pytest.param(b'{"instances": [9007199254740993, 18446744073709551615]}', {"d": DOUBLE},
                 {"d": ([2.0**53, 2.0**64], np.float64)}, True, id="double-rounds-ints"),
    pytest.param(b'{"instances": [{"a": [1, 2], "b": "x"}, {"a": [3, 4], "b": "y"}]}',
                 {"a": INT32, "b": STRING},
                 {"a": ([[1, 2], [3, 4]], np.int32), "b": ([b"x", b"y"], object)}, True,
                 id="named-rows"),
    pytest.param(b'{"instances": [{"i": [[1,2],[3,4],[5,6]], "s": ["foo", "bar"],'
                 b' "f": [1.0, NaN], "d": [NaN]},'
                 b' {"i": [[7,8],[9,0],[1,2]], "s": ["baz", "bat"], "f": [2.0, Infinity],'
                 b' "d": [2.0]}]}',
                 {"i": INT32, "s": STRING, "f": FLOAT, "d": DOUBLE},
                 {"i": ([[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]], np.int32),
                  "s": ([[b"foo", b"bar"], [b"baz", b"bat"]], object),
                  "f": ([[1.0, np.nan], [2.0, np.inf]], np.float32),
                  "d": ([[np.nan], [2.0]], np.float64)}, True, id="tfs-multiple-named"),
    pytest.param(b'{"inputs": {"x": [[[1,2],[3,4],[5,6]]]}}', {"x": INT32},
                 {"x": ([[[1, 2], [3, 4], [5, 6]]], np.int32)}, False, id="columnar-named"),
    pytest.param(b'{"inputs": [[[1,2],[3,4],[5,6]]]}', {"x": INT32},
                 {"x": ([[[1, 2], [3, 4], [5, 6]]], np.int32)}, False, id="columnar-bare"),
    pytest.param(b'{"inputs": {"b64": "aGVsbG8="}}', {"x": STRING},
                 {"x": (b"hello", object)}, False, id="columnar-bare-b64-scalar"),
    pytest.param(b'{"inputs": {"i": [[1,2],[3,4]], "s": ["a"], "extra": 1}}',
                 {"i": INT32, "s": STRING},
                 {"i": ([[1, 2], [3, 4]], np.int32), "s": ([b"a"], object)}, False,
                 id="columnar-different-batch-extra-key-ignored"),
    pytest.param(b'{"inputs": 7.5}', {"x": DOUBLE}, {"x": (7.5, np.float64)}, False,
                 id="columnar-scalar-is-rank-0"),
]


@pytest.mark.parametrize(("body", "dtypes", "expected", "row_format"), DECODED)
def test_decodes_like_tf_serving(body: bytes, dtypes: dict[str, int],
                                 expected: dict[str, tuple[Any, Any]], row_format: bool) -> None:
    decoded = decode(body, dtypes)
    assert decoded.row_format is row_format
    assert decoded.tensors.keys() == expected.keys()
    for name, (values, dtype) in expected.items():
        assert_tensor(decoded.tensors[name], values, dtype)


def test_fast_and_exact_paths_agree_on_a_batch() -> None:
    rows = np.random.default_rng(0).random((64, 3, 4)).tolist()
    fast = decode({"instances": rows}, {"x": FLOAT}).tensors["x"]
    rows[-1][-1][-1] = float("inf")  # Sends the request through the value-by-value path.
    exact = decode(json.dumps({"instances": rows}).encode(), {"x": FLOAT}).tensors["x"]
    assert exact.shape == fast.shape == (64, 3, 4)
    assert np.array_equal(exact[:-1], fast[:-1]) and exact[-1, -1, -1] == np.inf


def doc(*lines: str) -> str:
    return "\n".join(lines)


ROW = "Failed to process element: {} of 'instances' list. Error: INVALID_ARGUMENT: "
ERRORS = [
    pytest.param(b'{"signature_name": 5, "instances": [1]}', {"x": INT32},
                 doc('JSON Value: {', '    "signature_name": 5,', '    "instances": [',
                     '        1', '    ]', "} not formatted correctly. 'signature_name' key must "
                     "be a string value."), id="signature-not-string"),
    pytest.param(b'{"instances": [1], "inputs": [1]}', {"x": INT32},
                 doc('JSON Value: {', '    "instances": [', '        1', '    ],',
                     '    "inputs": [', '        1', '    ]',
                     "} Not formatted correctly expecting only one of 'inputs' or 'instances' "
                     "keys to exist "), id="both-keys"),
    pytest.param(b'{"x": 1}', {"x": INT32}, "Missing 'inputs' or 'instances' key",
                 id="neither-key"),
    pytest.param(b'{"instances": 1}', {"x": INT32},
                 doc('JSON Value: {', '    "instances": 1',
                     "} Excepting 'instances' to be an list/array"), id="instances-not-list"),
    pytest.param(b'{"instances": []}', {"x": INT32},
                 doc('JSON Value: {', '    "instances": []', "} No values in 'instances' array"),
                 id="instances-empty"),
    pytest.param(b'{"instances": [1]}', {}, "Failed to get input map for signature: DEFAULT",
                 id="no-inputs"),
    pytest.param(b'{"instances": [[1,2],[3,4],[5,6,7]]}', {"x": INT32},
                 ROW.format(2) + "Expecting tensor size: 2 but got: 3", id="ragged-size"),
    pytest.param(b'{"instances": [[1,2],[3,4],[[5,6]]]}', {"x": INT32},
                 ROW.format(2) + "Expecting shape [2] but got: [1,2]", id="ragged-shape"),
    pytest.param(b'{"instances": [1, [1]]}', {"x": INT32},
                 ROW.format(1) + "Expecting shape [] but got: [1]", id="scalar-then-list"),
    pytest.param(b'{"instances": [[1, 2], [3]]}', {"x": FLOAT},
                 ROW.format(1) + "Expecting tensor size: 2 but got: 1", id="ragged-floats"),
    pytest.param(b'{"instances": [[[1, 2], [3]]]}', {"x": FLOAT},
                 ROW.format(0) + "Encountered list at unexpected size: 1 at level: 1 expected "
                 "size: 2", id="ragged-inside-row"),
    pytest.param(b'{"instances": [[1,2],["a", "b"]]}', {"x": INT32},
                 ROW.format(1) + 'JSON Value: "a" Type: String is not of expected type: int32',
                 id="string-for-int"),
    pytest.param(b'{"instances": [1.0]}', {"x": INT32},
                 ROW.format(0) + "JSON Value: 1.0 Type: Number is not of expected type: int32",
                 id="decimal-for-int"),
    pytest.param(b'{"instances": [2147483648]}', {"x": INT32},
                 ROW.format(0) + "JSON Value: 2147483648 Type: Number is not of expected type: "
                 "int32", id="int32-overflow"),
    pytest.param(b'{"instances": [2147483648]}', {"x": INT8},
                 ROW.format(0) + "JSON Value: 2147483648 Type: Number is not of expected type: "
                 "int8", id="int8-needs-int32"),
    pytest.param(b'{"instances": [9223372036854775808]}', {"x": INT64},
                 ROW.format(0) + "JSON Value: 9223372036854775808 Type: Number is not of "
                 "expected type: int64", id="int64-overflow"),
    pytest.param(b'{"instances": [-1]}', {"x": UINT32},
                 ROW.format(0) + "JSON Value: -1 Type: Number is not of expected type: uint32",
                 id="uint32-negative"),
    pytest.param(b'{"instances": [4294967296]}', {"x": UINT32},
                 ROW.format(0) + "JSON Value: 4294967296 Type: Number is not of expected type: "
                 "uint32", id="uint32-overflow"),
    pytest.param(b'{"instances": [-1]}', {"x": UINT64},
                 ROW.format(0) + "JSON Value: -1 Type: Number is not of expected type: uint64",
                 id="uint64-negative"),
    pytest.param(b'{"instances": [1]}', {"x": BOOL},
                 ROW.format(0) + "JSON Value: 1 Type: Number is not of expected type: bool",
                 id="number-for-bool"),
    pytest.param(b'{"instances": [true]}', {"x": FLOAT},
                 ROW.format(0) + "JSON Value: true Type: True is not of expected type: float",
                 id="bool-for-float"),
    pytest.param(b'{"instances": [null]}', {"x": FLOAT},
                 ROW.format(0) + "JSON Value: null Type: Null is not of expected type: float",
                 id="null-for-float"),
    pytest.param(b'{"instances": [1]}', {"x": STRING},
                 ROW.format(0) + "JSON Value: 1 Type: Number is not of expected type: string",
                 id="number-for-string"),
    pytest.param(b'{"instances": [1.5]}', {"x": HALF},
                 "Failed to process element: 0 of 'instances' list. Error: UNIMPLEMENTED: "
                 "Conversion of JSON Value: 1.5 to type: half", id="half-in-rows"),
    pytest.param(b'{"instances": [{"b64": "!!"}]}', {"x": STRING},
                 ROW.format(0) + "Unable to base64 decode", id="bad-base64"),
    pytest.param(b'{"instances": [1, 2]}', {"a": INT32, "b": INT32},
                 "instances is a plain list, but expecting list of objects as multiple input "
                 "tensors required as per tensorinfo_map", id="plain-rows-many-inputs"),
    pytest.param(b'{"instances": [{"a": 1, "b": 2}, [1]]}', {"a": INT32, "b": INT32},
                 "Expecting object but got list at item 1 of input list", id="object-then-list"),
    pytest.param(b'{"instances": [["a"], {"s": ["b"]}]}', {"s": STRING},
                 "Expecting value/list but got object at item 1 of input list",
                 id="list-then-object"),
    pytest.param(b'{"instances": [{"a": 1}]}', {"a": INT32, "b": INT32},
                 doc("Failed to process element: 0 of 'instances' list. JSON object: {",
                     '    "a": 1', "} keys must be equal to: a,b"), id="object-missing-key"),
    pytest.param(b'{"instances": [{"a": 1, "b": 2, "c": 3}]}', {"a": INT32, "b": INT32},
                 "Failed to process element: 0 key: c of 'instances' list. Error: "
                 "INVALID_ARGUMENT: JSON object: does not have named input: c",
                 id="object-extra-key"),
    pytest.param(b'{"instances": [{"a": [1], "b": 2}, {"a": [1, 2], "b": 3}]}',
                 {"a": INT32, "b": INT32},
                 "Failed to process element: 1 key: a of 'instances' list. Error: "
                 "INVALID_ARGUMENT: Expecting tensor size: 1 but got: 2", id="object-ragged"),
    pytest.param(b'{"inputs": [1, 2]}', {"a": INT32, "b": INT32},
                 "inputs is a plain value/list, but expecting an object as multiple input tensors "
                 "required as per tensorinfo_map", id="columnar-plain-many-inputs"),
    pytest.param(b'{"inputs": {"a": 1}}', {"a": INT32, "b": INT32},
                 "Missing named input: b in 'inputs' object.", id="columnar-missing-input"),
    pytest.param(b'{"inputs": [[1, 2], [3]]}', {"x": INT32},
                 "Encountered list at unexpected size: 1 at level: 1 expected size: 2",
                 id="columnar-ragged"),
    pytest.param(b'{"inputs": [[1], [[2]]]}', {"x": INT32},
                 "Encountered list at unexpected level: 2 expected < 2", id="columnar-too-deep"),
    pytest.param(b'{"inputs": [[1, 2], 3]}', {"x": INT32},
                 "JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at level: 2",
                 id="columnar-incorrect-level"),
    pytest.param(b'{"inputs": [{"b64": "aGk=", "x": 1}]}', {"x": STRING},
                 doc("JSON Value: {", '    "b64": "aGk=",', '    "x": 1',
                     "} not formatted correctly for base64 data"), id="b64-extra-key"),
    pytest.param(b'{"inputs": [{"b64": "aGk="}]}', {"x": FLOAT},
                 doc("JSON Value: {", '    "b64": "aGk="',
                     "} Type: Object is not of expected type: float"), id="b64-for-float"),
]


@pytest.mark.parametrize(("body", "dtypes", "message"), ERRORS)
def test_rejects_with_tf_serving_message(body: bytes, dtypes: dict[str, int],
                                         message: str) -> None:
    error = error_of(body, dtypes)
    assert error.code == errors.Code.INVALID_ARGUMENT
    assert error.message == message


@pytest.mark.parametrize(("dtype", "name"), [(HALF, "half"), (14, "bfloat16"),
                                             (8, "complex64"), (17, "uint16")])
def test_unsupported_dtype_in_columnar_format_is_unimplemented(dtype: int, name: str) -> None:
    error = error_of(b'{"inputs": [1.5]}', {"x": dtype})
    assert error.code == errors.Code.UNIMPLEMENTED
    assert error.message == f"Conversion of JSON Value: 1.5 to type: {name}"


def test_empty_tensor_of_unsupported_dtype_is_unimplemented() -> None:
    error = error_of(b'{"inputs": []}', {"x": HALF})
    assert error.code == errors.Code.UNIMPLEMENTED
    assert error.message == "Conversion of JSON Value: [] to type: half"


def test_object_where_a_number_belongs_is_a_type_error_even_for_unsupported_dtypes() -> None:
    error = error_of(b'{"inputs": [{"a": 1}]}', {"x": HALF})
    assert error.code == errors.Code.INVALID_ARGUMENT
    assert "Type: Object is not of expected type: half" in error.message


def test_b64_accepts_missing_padding_like_absl() -> None:
    tensor = decode(b'{"inputs": [{"b64": "aGk"}]}', {"x": STRING}).tensors["x"]
    assert tensor.tolist() == [b"hi"]


def test_dtype_names_follow_datatype_string() -> None:
    assert [json_tensor.dtype_name(d) for d in (1, 2, 7, 19, 23, 99)] == [
        "float", "double", "string", "half", "uint64", "unknown dtype enum (99)"]


def test_rank_is_limited_to_what_numpy_holds() -> None:
    assert decode(b'{"inputs": ' + b"[" * 64 + b"1" + b"]" * 64 + b"}", {"x": INT32}) \
        .tensors["x"].ndim == 64
    for body in (b'{"inputs": ' + b"[" * 65 + b"1" + b"]" * 65 + b"}",
                 b'{"instances": ' + b"[" * 65 + b"1" + b"]" * 65 + b"}",
                 b'{"inputs": ' + b"[" * 1000 + b'"a"' + b"]" * 1000 + b"}"):
        assert error_of(body, {"x": INT32}).message.endswith("over the limit of 64")


def test_deeply_nested_document_in_an_error_is_cut_short() -> None:
    body = b'{"instances": 1, "inputs": ' + b"[" * 1000 + b"1" + b"]" * 1000 + b"}"
    message = error_of(body, {"x": INT32}).message
    assert message.startswith('JSON Value: {\n    "instances": 1,\n    "inputs": [')
    assert "...TRUNCATED Not formatted correctly" in message
    assert len(message) < json_body.MAX_SHOWN_CHARS + 200


def test_an_error_about_a_huge_body_quotes_at_most_a_kilobyte_of_it() -> None:
    body = orjson.dumps({"signature_name": 1, "instances": list(range(1_000_000))})
    message = error_of(body, {"x": INT32}).message
    assert message.endswith("...TRUNCATED not formatted correctly. 'signature_name' key must be "
                            "a string value.")
    assert len(message) < json_body.MAX_SHOWN_CHARS + 200


def test_an_integer_of_thousands_of_digits_is_a_parse_error() -> None:
    assert error_of(b'{"instances": [' + b"9" * 5000 + b"]}", {"x": INT32}).message == (
        "JSON Parse error: Number too big to be stored in double.")
