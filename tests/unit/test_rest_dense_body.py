"""The dense-body shortcut gives exactly what the general path gives: tensors, or its error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from berth_server import errors
from berth_server.rest import dense_body, json_body, json_tensor, predict_request

F, D, I8, I32, I64, U8, U64 = (json_tensor.DT_FLOAT, json_tensor.DT_DOUBLE, json_tensor.DT_INT8,
                               json_tensor.DT_INT32, json_tensor.DT_INT64, json_tensor.DT_UINT8,
                               json_tensor.DT_UINT64)
B, S = json_tensor.DT_BOOL, json_tensor.DT_STRING
ALL_DTYPES = (F, D, I8, I32, I64, U8, U64, B, S)


@pytest.fixture(autouse=True)
def any_size() -> Iterator[None]:
    """Take the shortcut for small bodies too, so each case stays readable."""
    saved, dense_body.MIN_BODY_BYTES = dense_body.MIN_BODY_BYTES, 0
    yield
    dense_body.MIN_BODY_BYTES = saved


def general(body: bytes, dtypes: dict[str, int]) -> Any:
    try:
        document = json_body.parse_body(body)
        name = json_body.signature_name_of(document)
        decoded = predict_request.decode_predict_request(document, dtypes, signature_name=name)
    except errors.ServingError as error:
        return ("error", error.code, error.message)
    return ("name", name), *_tensors(decoded)


def shortcut(body: bytes, dtypes: dict[str, int]) -> Any:
    """As rest.api runs a predict body."""
    try:
        parsed = predict_request.parse_predict_body(body)
        name = predict_request.signature_name_of(parsed)
        decoded = predict_request.decode_parsed_request(parsed, body, dtypes,
                                                        signature_name=name)
    except errors.ServingError as error:
        return ("error", error.code, error.message)
    return ("name", name), *_tensors(decoded)


def _tensors(decoded: predict_request.PredictInputs) -> list[Any]:
    return [decoded.row_format] + [
        (name, tensor.dtype.str, tensor.shape, tensor.flags.writeable,
         tensor.tolist() if tensor.dtype == object else tensor.tobytes())
        for name, tensor in sorted(decoded.tensors.items())]


def assert_same(body: bytes, dtypes: dict[str, int] | None = None) -> None:
    for dtype_map in ([{"x": dtype} for dtype in ALL_DTYPES] if dtypes is None else [dtypes]):
        assert shortcut(body, dtype_map) == general(body, dtype_map), (body, dtype_map)


DENSE = [
    b'{"instances": [[1.5, 2.25], [3.0, -4.5]]}',
    b'{"inputs": [[1.5, 2.25], [3.0, -4.5]]}',
    b'{"instances": [1, 2, 3]}',
    b'{"instances": [[[[0.001, 0.999, 0.5]]]]}',
    b' \n{ "signature_name" : "serving_default" ,\t"instances" :[ [ 1 ,2 ] , [3, 4] ] }\r\n',
    b'{"instances": [[1.5, 2]], "signature_name": "other"}',
    b'{"instances": [-0, -0.0, 0.0, 1e-400, 4.9e-324, 1.7976931348623157e308]}',
    b'{"instances": [3.4028235e38, 3.5e38, -1e300, 2.5e-46]}',
    b'{"instances": [9007199254740993, 9223372036854775807, -9223372036854775808]}',
    b'{"instances": [255, 256, -1, 127, -129, 2147483647, -2147483648, 4294967295]}',
    b'{"instances": [0.1, 0.2, 0.30000000000000004, 1E5, 1e+5, 2E-3]}',
    b'{"inst\\u0061nces": [1.0, 2.0]}',
]


@pytest.mark.parametrize("body", DENSE)
def test_a_dense_body_takes_the_shortcut_and_converts_identically(body: bytes) -> None:
    dense = dense_body.parse(body)
    assert dense is not None
    assert predict_request.decode_dense_request(dense, {"x": F}) is not None
    assert_same(body)


TRICKY = [
    b'{"instances": [[1, 2], [3]]}',  # ragged
    b'{"instances": [[1, 2], [3, 4, 5]]}',
    b'{"instances": [[1, 2, 3], [4], [5, 6]]}',  # ragged with the dense element count
    b'{"instances": [[1, 2], [[3], 4]]}',  # depth mismatch with the dense element count
    b'{"instances": [[1, [2]], [3, 4]]}',
    b'{"instances": [1, [2]]}',
    b'{"instances": [[1], 2]}',
    b'{"instances": [[1], []]}',
    b'{"instances": [[], []]}',
    b'{"instances": []}',
    b'{"instances": [[]]}',
    b'{"instances": [1.5, true]}',  # bools
    b'{"instances": [true, false]}',
    b'{"instances": [1, null]}',
    b'{"instances": [1, "2"]}',
    b'{"instances": ["a", "b"]}',
    b'{"instances": [{"b64": "AAEC"}, {"b64": "AwQ="}]}',
    b'{"instances": [[1, 2], {"b64": "AAEC"}]}',
    b'{"instances": [{"x": [1, 2]}, {"x": [3, 4]}]}',
    b'{"instances": [NaN, 1.0]}',  # TF Serving's parser takes these tokens
    b'{"instances": [Infinity, -Infinity]}',
    b'{"instances": [1e400]}',  # beyond a double
    b'{"instances": [18446744073709551615, 1]}',  # uint64, beyond int64
    b'{"instances": [18446744073709551616, 1]}',  # beyond uint64: a double
    b'{"instances": [123456789012345678901234567890]}',
    b'{"instances": [01]}',
    b'{"instances": [1.]}',
    b'{"instances": [.5]}',
    b'{"instances": [+1]}',
    b'{"instances": [1 2]}',
    b'{"instances": [1,]}',
    b'{"instances": [1, 2]',
    b'{"instances": [1, 2]} trailing',
    b'{"instances": [1, 2]}]',
    b'\xef\xbb\xbf{"instances": [1, 2]}',  # a byte order mark
    b'{"instances": [1, 2], "instances": [3, 4]}',  # duplicate keys: the last one counts
    b'{"instances": [1, 2], "inputs": [3, 4]}',
    b'{"instances": [1, 2], "other": 1}',
    b'{"instances": 1.5}',
    b'{"inputs": 1.5}',
    b'{"inputs": {"x": [1, 2]}}',
    b'{"inputs": {"b64": "AAEC"}}',
    b'{"signature_name": 3, "instances": [1, 2]}',
    b'{"signature_name": "a[0]", "instances": [1, 2]}',
    b'{"signature_name": "[1]", "instances": 0}',
    b'{"instances": 0, "signature_name": "[1, 2]"}',
    b'{"signature_name": "\\u005b", "instances": [1, 2]}',
    b'{"signature_name": "\xff", "instances": [1, 2]}',
    b'{"signature_name": "\\ud800", "instances": [1, 2]}',
    b'{"instances": [1, 2], "signature_name": null}',
    b'[1, 2]',
    b'{"instances": [1, 2]}' + b" " * 10,
    b'{"instances": ' + b"[" * 70 + b"1" + b"]" * 70 + b"}",  # past the rank limit
    b'{"instances": ' + b"[" * 2000 + b"1" + b"]" * 2000 + b"}",  # past simdjson's depth
    # A long first row before many short ones: the shape it implies is never built.
    json.dumps({"instances": [[1] * 3000] + [[1]] * 3000}).encode(),
]


@pytest.mark.parametrize("body", TRICKY)
def test_a_tricky_body_gives_what_the_general_path_gives(body: bytes) -> None:
    assert_same(body)


@pytest.mark.parametrize("number", [
    "1e-0000000000000000000001", "0e99999", "0.0e-99999999999999999999", "1.0e+308", "1e309",
    "0.1000000000000000055511151231257827021181583404541015625", "0." + "1" * 1000,
    "1" * 400 + ".5", "123456789012345678901234567890e-10", "9999999999999999999",
    "-9223372036854775808", "-9223372036854775809", "2.4703282292062327e-324",
    "2.4703282292062328e-324", "3.4028235677973366e38", "-1e-400",
])
def test_numbers_at_the_edges_of_the_parsers_read_alike(number: str) -> None:
    assert_same(f'{{"instances": [{number}, 1]}}'.encode())


@pytest.mark.parametrize("dtypes", [{}, {"x": F, "y": F}, {"x": 8}, {"x": 19}])
def test_signatures_the_shortcut_does_not_convert_for_keep_their_errors(
        dtypes: dict[str, int]) -> None:
    assert_same(b'{"instances": [[1.5, 2.0]]}', dtypes)
    assert_same(b'{"inputs": [[1.5, 2.0]]}', dtypes)


def test_random_dense_and_broken_bodies_agree() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        shape = tuple(rng.integers(1, 4, size=rng.integers(1, 4)))
        values = np.round(rng.normal(scale=10.0 ** rng.integers(-3, 12), size=shape),
                          rng.integers(0, 8))
        text = json.dumps({"instances": values.tolist()})
        if rng.random() < 0.5:
            text = text.replace(".0,", ",").replace(".0]", "]")  # integer literals
        if rng.random() < 0.3:  # a random byte of the array removed: ragged, deeper or broken
            at = int(rng.integers(len('{"instances": '), len(text) - 1))
            text = text[:at] + text[at + 1:]
        assert_same(text.encode())


def test_the_float_tensor_is_a_fresh_writable_array() -> None:
    dense = dense_body.parse(b'{"instances": [[1.5, 2.0]]}')
    assert dense is not None
    decoded = predict_request.decode_dense_request(dense, {"x": D})
    assert decoded is not None and decoded.tensors["x"].flags.writeable


def test_small_bodies_take_the_general_path() -> None:
    dense_body.MIN_BODY_BYTES = 2 << 10
    assert dense_body.parse(b'{"instances": [[1.5, 2.0]]}') is None
    big = json.dumps({"instances": [[0.5] * 1000]}).encode()
    assert dense_body.parse(big) is not None
