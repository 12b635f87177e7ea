"""REST JSON exchanges as TF Serving 2.18+ answers them, against a real server.

Each case is one exchange of TF Serving's own tests (`util/json_tensor_test.cc`,
`model_servers/http_rest_api_handler_test.cc`), sent over HTTP to a model exported here whose
signatures give the outputs those tests build by hand: a rank-0 string, zero-batch tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tensorflow as tf
from server_http import post

if TYPE_CHECKING:
    from conftest import ServerProcess

PREDICT = "/v1/models/outputs:predict"
DEEP = 500_000


class _Outputs(tf.Module):
    """Signatures over one float input `x` whose outputs have the shapes under test."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def echo(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": x}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="x")])
    def echo_ints(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": x}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def scalar_text(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"label": tf.constant("hello"), "label_bytes": tf.constant(b"\x00\xff")}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def zero_batch(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"int_tensor": tf.zeros([0, 2], tf.int32)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def zero_batches(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"str_tensor": tf.zeros([0, 1, 2], tf.string),
                "float_tensor": tf.zeros([0, 3, 4])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def uneven_batches(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"int_tensor": tf.zeros([0, 2], tf.int32), "y": x}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    base = tmp_path_factory.mktemp("outputs")
    module = _Outputs()
    signatures = {"serving_default": module.echo, "echo_ints": module.echo_ints,
                  "scalar_text": module.scalar_text,
                  "zero_batch": module.zero_batch, "zero_batches": module.zero_batches,
                  "uneven_batches": module.uneven_batches}
    tf.saved_model.save(module, str(Path(base, "1")), signatures=signatures)
    return start_module_server("--model_name=outputs", f"--model_base_path={base}")


def test_a_rank_0_string_output_is_a_bare_value_in_columnar_format(
        server: ServerProcess) -> None:
    reply = post(server.rest_port, PREDICT, {"signature_name": "scalar_text", "inputs": [1.0]})
    assert reply.status == 200, reply.body
    assert reply.json() == {"outputs": {"label": "hello", "label_bytes": {"b64": "AP8="}}}


def test_a_rank_0_output_has_no_batch_in_row_format(server: ServerProcess) -> None:
    reply = post(server.rest_port, PREDICT, {"signature_name": "scalar_text", "instances": [1.0]})
    assert reply.status == 400
    assert reply.error.endswith("has no shape information ")


def test_an_integer_that_float_cannot_hold_is_rounded(server: ServerProcess) -> None:
    """json_tensor_test.cc FloatTensorWithPrecisionLoss: `1435774380` as `1435774380.0`."""
    for body in (b'{"instances": [1435774380]}', b'{"instances": [1435774380.0]}'):
        reply = post(server.rest_port, PREDICT, body)
        assert reply.status == 200, reply.body
        (served,) = reply.json()["predictions"]
        assert np.float32(served) == np.float32(1435774380)  # written at float32 precision


@pytest.mark.parametrize(("key", "answer"), [("instances", "predictions"), ("inputs", "outputs")])
def test_a_large_dense_body_is_served_as_a_small_one_is(server: ServerProcess, key: str,
                                                        answer: str) -> None:
    """Bodies past dense_body.MIN_BODY_BYTES are read straight into numpy."""
    values = np.round(np.random.default_rng(0).normal(size=4000), 3)
    for signature, sent in (("serving_default", values), ("echo_ints", values * 1000)):
        dtype = np.float32 if signature == "serving_default" else np.int32
        reply = post(server.rest_port, PREDICT, {"signature_name": signature,
                                                 key: sent.astype(dtype).tolist()})
        assert reply.status == 200, reply.body
        served = np.array(reply.json()[answer], dtype=dtype)
        assert np.array_equal(served, sent.astype(dtype)) and served.any()


def test_a_large_dense_body_the_signature_refuses_gets_the_general_error(
        server: ServerProcess) -> None:
    reply = post(server.rest_port, PREDICT, {"signature_name": "echo_ints",
                                             "instances": [0.5] * 4000})
    assert reply.status == 400
    assert reply.error == ("Failed to process element: 0 of 'instances' list. Error: "
                           "INVALID_ARGUMENT: JSON Value: 0.5 Type: Number is not of expected "
                           "type: int32")
    reply = post(server.rest_port, PREDICT, {"signature_name": "missing",
                                             "instances": [0.5] * 4000})
    assert reply.status == 400
    assert reply.error == 'Serving signature name: "missing" not found in signature def'


def test_doubles_beyond_float_become_infinity_or_zero(server: ServerProcess) -> None:
    """FloatTensorThatExceedsMaxReturnsInf and FloatTensorThatExceedsMinReturnsZero."""
    reply = post(server.rest_port, PREDICT, b'{"instances": [1.7976931348623157e+308, '
                                            b'-1.7976931348623157e+308, 2.2250738585072014e-308, '
                                            b'-2.2250738585072014e-308]}')
    assert reply.status == 200, reply.body
    assert reply.body.startswith(b'{"predictions":[Infinity,-Infinity,')
    large, small, tiny, negative_tiny = reply.json()["predictions"]
    assert (large, small, tiny, negative_tiny) == (math.inf, -math.inf, 0.0, 0.0)
    assert math.copysign(1, negative_tiny) == -1


@pytest.mark.parametrize("signature", ["zero_batch", "zero_batches"])
def test_outputs_with_a_zero_batch_are_no_predictions(server: ServerProcess,
                                                      signature: str) -> None:
    """FromJsonSingleZeroBatchTensor and FromJsonMultipleZeroBatchTensors."""
    reply = post(server.rest_port, PREDICT, {"signature_name": signature, "instances": [1.0]})
    assert reply.status == 200, reply.body
    assert reply.json() == {"predictions": []}


def test_a_zero_batch_beside_a_batch_of_one_is_inconsistent(server: ServerProcess) -> None:
    """FromJsonMultipleZeroBatchTensorsErrors."""
    reply = post(server.rest_port, PREDICT,
                 {"signature_name": "uneven_batches", "instances": [1.0]})
    assert reply.status == 400
    assert "has inconsistent batch size: " in reply.error


def test_a_deeply_nested_value_under_an_unknown_key_is_served(server: ServerProcess) -> None:
    """DeeplyNestedWellFormed: rapidjson parses iteratively, so depth is no error."""
    body = b'{"instances": [1.0], "nested": ' + b"[" * DEEP + b"]" * DEEP + b"}"
    reply = post(server.rest_port, PREDICT, body)
    assert reply.status == 200, reply.body[:300]
    assert reply.json() == {"predictions": [1.0]}


def test_a_deeply_nested_signature_name_is_not_a_string(server: ServerProcess) -> None:
    """DeeplyNestedMalformed."""
    body = b'{"signature_name": ' + b"[" * DEEP + b"]" * DEEP + b"}"
    reply = post(server.rest_port, PREDICT, body)
    assert reply.status == 400
    assert reply.error.endswith("'signature_name' key must be a string value.")
    assert len(reply.body) < 4096


def test_a_deeply_nested_body_with_a_missing_bracket_is_a_parse_error(
        server: ServerProcess) -> None:
    body = b'{"instances": [1.0], "nested": ' + b"[" * DEEP + b"]" * (DEEP - 1) + b"}"
    reply = post(server.rest_port, PREDICT, body)
    assert reply.status == 400
    assert reply.error == ("JSON Parse error: Missing a comma or ']' after an array element. at "
                           f"offset: {len(body) - 1}")


@pytest.mark.parametrize(("body", "message"), [
    ("", "JSON Parse error: The document is empty"),
    ("instances = [1, 2]", "JSON Parse error: Invalid value. at offset: 0"),
    (" }", "JSON Parse error: The document is empty. at offset: 1"),
])
def test_parse_errors_are_rapidjsons(server: ServerProcess, body: str, message: str) -> None:
    """http_rest_api_handler_test.cc PredictRequestErrors."""
    reply = post(server.rest_port, PREDICT, body)
    assert reply.status == 400
    assert reply.error == message


def test_text_after_the_json_object_is_ignored(server: ServerProcess) -> None:
    """rapidjson's kParseStopWhenDoneFlag: parsing ends with the root value."""
    reply = post(server.rest_port, PREDICT, '{"instances": [2.0]} and then some')
    assert reply.status == 200, reply.body
    assert reply.json() == {"predictions": [2.0]}


def test_a_uint64_feature_is_refused_with_tf_servings_words(server: ServerProcess) -> None:
    """ClassifyRegressRequestTest JsonErrors (the body is refused before the model is read)."""
    reply = post(server.rest_port, "/v1/models/outputs:classify",
                 '{"examples": [{"names": [20, 18446744073709551603]}]}')
    assert reply.status == 400
    assert reply.error == "Feature: names has uint64_t element. Only int64_t is supported."
