"""Bad requests get TF Serving's code and message, and never take the server down.

REST answers `{"error": ...}` with TF Serving's code → HTTP status table; gRPC answers the same
code as its status. The module's last test checks that the server still serves after all of it.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import numpy as np
import pytest
import tensorflow as tf
from server_http import call, get, post
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

if TYPE_CHECKING:
    from conftest import ServerProcess

HPT = "/v1/models/half_plus_two"


def rest_error(server: ServerProcess, path: str, body: object = None, method: str = "POST",
               headers: dict[str, str] | None = None) -> tuple[int, str]:
    reply = call(server.rest_port, method, path, body, headers)  # type: ignore[arg-type]
    assert reply.headers["content-type"] == "application/json"
    return reply.status, reply.error


def grpc_error(call_fn: Callable[..., object], request: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call_fn(request, timeout=30)
    return raised.value.code(), raised.value.details()  # type: ignore[attr-defined]


def predict_request(model: str = "half_plus_two", **inputs: object) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return request


def example(x: float) -> example_pb2.Example:
    return example_pb2.Example(features=feature_pb2.Features(feature={
        "x": feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[x]))}))


X = np.array([[1.0]], np.float32)


class TestMalformedBodies:
    def test_malformed_json_names_the_parse_error_and_its_offset(
            self, shared_server: ServerProcess) -> None:
        status, message = rest_error(shared_server, f"{HPT}:predict", '{"instances": [1.0,')
        assert status == 400
        assert message.startswith("JSON Parse error: ")
        assert "at offset: " in message

    def test_an_empty_body_is_an_empty_document(self, shared_server: ServerProcess) -> None:
        assert rest_error(shared_server, f"{HPT}:predict", b"") == (
            400, "JSON Parse error: The document is empty")

    def test_a_body_that_is_not_an_object_is_refused(self, shared_server: ServerProcess) -> None:
        status, message = rest_error(shared_server, f"{HPT}:predict", "[1.0]")
        assert status == 400
        assert "Is not object" in message

    def test_a_body_without_inputs_or_instances_is_refused(
            self, shared_server: ServerProcess) -> None:
        assert rest_error(shared_server, f"{HPT}:predict", {"foo": [1.0]}) == (
            400, "Missing 'inputs' or 'instances' key")

    def test_a_body_with_both_inputs_and_instances_is_refused(
            self, shared_server: ServerProcess) -> None:
        status, message = rest_error(shared_server, f"{HPT}:predict",
                                     {"inputs": [1.0], "instances": [1.0]})
        assert status == 400
        assert "expecting only one of 'inputs' or 'instances' keys to exist" in message

    def test_a_signature_name_that_is_not_a_string_is_refused(
            self, shared_server: ServerProcess) -> None:
        status, message = rest_error(shared_server, f"{HPT}:predict",
                                     {"signature_name": 7, "instances": [1.0]})
        assert status == 400
        assert "'signature_name' key must be a string value" in message

    def test_an_empty_instances_list_is_refused(self, shared_server: ServerProcess) -> None:
        status, message = rest_error(shared_server, f"{HPT}:predict", {"instances": []})
        assert status == 400
        assert "No values in 'instances' array" in message

    def test_classify_without_examples_uses_tf_servings_wording(
            self, shared_server: ServerProcess) -> None:
        status, message = rest_error(shared_server, f"{HPT}:regress",
                                     {"signature_name": "regress_x_to_y"})
        assert status == 400
        assert "When method is classify, key 'examples' is expected and was not found" in message

    def test_non_utf8_bytes_in_a_float_input_are_a_bad_request(
            self, shared_server: ServerProcess) -> None:
        status, message = rest_error(shared_server, f"{HPT}:predict",
                                     b'{"instances": ["\xff\xfe"]}')
        assert status == 400
        assert "is not of expected type: float" in message

    def test_non_utf8_bytes_in_a_string_input_reach_the_model_unchanged(
            self, shared_server: ServerProcess) -> None:
        reply = post(shared_server.rest_port, "/v1/models/string_model:predict",
                     b'{"instances": ["a\xff"]}')
        assert reply.status == 200, reply.body
        (row,) = reply.json()["predictions"]
        assert row["upper_bytes"] == {"b64": "Qf8="}  # b"A\xff"
        assert row["length"] == 2

    def test_a_gzip_body_is_decompressed(self, shared_server: ServerProcess) -> None:
        body = gzip.compress(json.dumps({"instances": [1.0, 2.0, 5.0]}).encode())
        reply = post(shared_server.rest_port, f"{HPT}:predict", body,
                     {"Content-Encoding": "gzip", "Content-Type": "application/json"})
        assert reply.json() == {"predictions": [2.5, 3.0, 4.5]}

    def test_a_body_that_claims_gzip_but_is_not_is_a_bad_request(
            self, shared_server: ServerProcess) -> None:
        status, message = rest_error(shared_server, f"{HPT}:predict", b'{"instances": [1.0]}',
                                     headers={"Content-Encoding": "gzip"})
        assert status == 400
        assert "gzip" in message

    def test_a_body_far_over_grpcs_default_4mb_is_served(
            self, shared_server: ServerProcess) -> None:
        rows = 600_000  # ~8 MB of JSON; TF Serving's REST and gRPC limits are 2 GiB
        reply = post(shared_server.rest_port, f"{HPT}:predict",
                     {"instances": [[1.0]] * rows})
        assert reply.status == 200
        assert len(reply.json()["predictions"]) == rows

    def test_a_grpc_message_far_over_4mb_is_served(self, shared_server: ServerProcess) -> None:
        options = [("grpc.max_send_message_length", 64 << 20),
                   ("grpc.max_receive_message_length", 64 << 20)]
        with grpc.insecure_channel(f"127.0.0.1:{shared_server.grpc_port}", options) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            x = np.ones((2_000_000, 1), np.float32)  # 8 MB of tensor_content
            response = stub.Predict(predict_request(x=x), timeout=60)
        assert response.outputs["y"].tensor_shape.dim[0].size == 2_000_000


class TestWrongInputs:
    def test_a_string_for_a_float_input_is_a_type_error(
            self, shared_server: ServerProcess) -> None:
        status, message = rest_error(shared_server, f"{HPT}:predict", {"instances": ["a"]})
        assert status == 400
        assert 'JSON Value: "a" Type: String is not of expected type: float' in message

    def test_a_fraction_for_an_int64_input_is_a_type_error(
            self, shared_server: ServerProcess) -> None:
        status, message = rest_error(shared_server, "/v1/models/multi_io:predict",
                                     {"inputs": {"a": [[1.0, 2.0, 3.0]], "b": [1.5]}})
        assert status == 400
        assert "is not of expected type" in message

    def test_ragged_rows_are_refused(self, shared_server: ServerProcess) -> None:
        status, message = rest_error(shared_server, f"{HPT}:predict",
                                     {"instances": [[1.0], [2.0, 3.0]]})
        assert status == 400
        assert "Expecting tensor size: 1 but got: 2" in message

    def test_ragged_columns_are_refused(self, shared_server: ServerProcess) -> None:
        status, message = rest_error(shared_server, f"{HPT}:predict",
                                     {"inputs": [[1.0], [2.0, 3.0]]})
        assert status == 400
        assert "unexpected size" in message or "incorrect level" in message

    def test_a_row_missing_an_input_is_refused(self, shared_server: ServerProcess) -> None:
        status, message = rest_error(shared_server, "/v1/models/multi_io:predict",
                                     {"instances": [{"a": [1.0, 2.0, 3.0]}]})
        assert status == 400
        assert "keys must be equal to: a,b" in message

    def test_a_row_with_an_extra_input_is_refused(self, shared_server: ServerProcess) -> None:
        status, message = rest_error(shared_server, "/v1/models/multi_io:predict",
                                     {"instances": [{"a": [1.0, 2.0, 3.0], "b": 1, "c": 2}]})
        assert status == 400
        assert "c" in message

    def test_columns_missing_an_input_are_refused(self, shared_server: ServerProcess) -> None:
        assert rest_error(shared_server, "/v1/models/multi_io:predict",
                          {"inputs": {"a": [[1.0, 2.0, 3.0]]}}) == (
            400, "Missing named input: b in 'inputs' object.")

    def test_grpc_names_the_extra_and_the_missing_inputs(
            self, shared_server: ServerProcess) -> None:
        code, message = grpc_error(shared_server.predict.Predict,
                                   predict_request(x=X, z=X))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "Sent extra: {z}" in message
        code, message = grpc_error(shared_server.predict.Predict, predict_request())
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "Missing but required: {x}" in message

    def test_grpc_refuses_a_tensor_of_the_wrong_dtype(
            self, shared_server: ServerProcess) -> None:
        code, message = grpc_error(shared_server.predict.Predict,
                                   predict_request(x=np.array([b"a"], object)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "to be float" in message

    def test_grpc_refuses_a_tensor_without_a_dtype(self, shared_server: ServerProcess) -> None:
        request = predict_request()
        request.inputs["x"].CopyFrom(tensor_pb2.TensorProto(float_val=[1.0]))
        code, _ = grpc_error(shared_server.predict.Predict, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT

    def test_grpc_refuses_tensor_content_that_does_not_fill_its_shape(
            self, shared_server: ServerProcess) -> None:
        request = predict_request(x=np.ones((4, 1), np.float32))
        assert request.inputs["x"].tensor_content
        request.inputs["x"].tensor_shape.dim[0].size = 1000
        code, _ = grpc_error(shared_server.predict.Predict, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT

    def test_inputs_the_graph_cannot_combine_are_invalid_argument(
            self, shared_server: ServerProcess) -> None:
        request = predict_request("multi_io", a=np.ones((2, 3), np.float32),
                                  b=np.array([1, 2, 3], np.int64))
        code, message = grpc_error(shared_server.predict.Predict, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "Incompatible shapes" in message

    def test_an_unknown_output_filter_alias_is_refused(
            self, shared_server: ServerProcess) -> None:
        request = predict_request(x=X)
        request.output_filter.append("nope")
        code, message = grpc_error(shared_server.predict.Predict, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert message.startswith("output tensor alias not found in signature: nope")


class TestUnknownNames:
    def test_an_unknown_signature_is_400_over_rest(self, shared_server: ServerProcess) -> None:
        assert rest_error(shared_server, f"{HPT}:predict",
                          {"signature_name": "nope", "instances": [1.0]}) == (
            400, 'Serving signature name: "nope" not found in signature def')

    def test_an_unknown_signature_is_failed_precondition_over_grpc(
            self, shared_server: ServerProcess) -> None:
        request = predict_request(x=X)
        request.model_spec.signature_name = "nope"
        assert grpc_error(shared_server.predict.Predict, request) == (
            grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.')

    def test_an_unknown_classify_signature_is_invalid_argument(
            self, shared_server: ServerProcess) -> None:
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = "half_plus_two"
        request.model_spec.signature_name = "nope"
        request.input.example_list.examples.append(example(1.0))
        assert grpc_error(shared_server.predict.Classify, request) == (
            grpc.StatusCode.INVALID_ARGUMENT, "No signature was found with the name: nope")

    def test_an_unknown_model_is_not_found_on_both_transports(
            self, shared_server: ServerProcess) -> None:
        assert rest_error(shared_server, "/v1/models/nope:predict", {"instances": [1.0]}) == (
            404, "Servable not found for request: Latest(nope)")
        assert grpc_error(shared_server.predict.Predict, predict_request("nope", x=X)) == (
            grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)")

    def test_an_unknown_version_is_not_found_on_both_transports(
            self, shared_server: ServerProcess) -> None:
        assert rest_error(shared_server, f"{HPT}/versions/7:predict", {"instances": [1.0]}) == (
            404, "Servable not found for request: Specific(half_plus_two, 7)")
        request = predict_request(x=X)
        request.model_spec.version.value = 7
        assert grpc_error(shared_server.predict.Predict, request) == (
            grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(half_plus_two, 7)")

    def test_an_unknown_label_is_invalid_argument_on_both_transports(
            self, shared_server: ServerProcess) -> None:
        assert rest_error(shared_server, f"{HPT}/labels/nope:predict", {"instances": [1.0]}) == (
            400, "Unrecognized servable version label: nope")
        request = predict_request(x=X)
        request.model_spec.version_label = "nope"
        assert grpc_error(shared_server.predict.Predict, request) == (
            grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: nope")

    def test_a_model_spec_without_a_name_is_invalid_argument(
            self, shared_server: ServerProcess) -> None:
        assert grpc_error(shared_server.predict.Predict, predict_request("", x=X)) == (
            grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified.")

    def test_status_of_an_unknown_model_or_version_is_not_found(
            self, shared_server: ServerProcess) -> None:
        assert rest_error(shared_server, "/v1/models/nope", method="GET") == (
            404, "Could not find any versions of model nope")
        assert rest_error(shared_server, f"{HPT}/versions/7", method="GET") == (
            404, "Could not find version 7 of model half_plus_two")
        request = get_model_status_pb2.GetModelStatusRequest()
        assert grpc_error(shared_server.model_service.GetModelStatus, request) == (
            grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")

    def test_metadata_without_a_field_is_invalid_argument(
            self, shared_server: ServerProcess) -> None:
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = "half_plus_two"
        code, message = grpc_error(shared_server.predict.GetModelMetadata, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "metadata_field" in message


class TestExampleRequests:
    def test_classify_with_no_examples_is_input_is_empty(
            self, shared_server: ServerProcess) -> None:
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = "half_plus_two"
        request.model_spec.signature_name = "classify_x_to_y"
        assert grpc_error(shared_server.predict.Classify, request) == (
            grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")

    def multi(self, *tasks: tuple[str, str, str]) -> inference_pb2.MultiInferenceRequest:
        request = inference_pb2.MultiInferenceRequest()
        request.input.example_list.examples.append(example(1.0))
        for model, signature, method in tasks:
            task = request.tasks.add(method_name=method)
            task.model_spec.name = model
            task.model_spec.signature_name = signature
        return request

    def test_multi_inference_refuses_tasks_on_different_models(
            self, shared_server: ServerProcess) -> None:
        request = self.multi(("half_plus_two", "regress_x_to_y", "tensorflow/serving/regress"),
                             ("half_plus_three", "regress_x_to_y", "tensorflow/serving/regress"))
        code, _ = grpc_error(shared_server.predict.MultiInference, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT

    def test_multi_inference_refuses_a_signature_twice(
            self, shared_server: ServerProcess) -> None:
        task = ("half_plus_two", "regress_x_to_y", "tensorflow/serving/regress")
        assert grpc_error(shared_server.predict.MultiInference, self.multi(task, task)) == (
            grpc.StatusCode.INVALID_ARGUMENT, "Duplicate evaluation of signature")

    def test_multi_inference_refuses_a_predict_task_as_unimplemented(
            self, shared_server: ServerProcess) -> None:
        request = self.multi(("half_plus_two", "serving_default", "tensorflow/serving/predict"))
        code, _ = grpc_error(shared_server.predict.MultiInference, request)
        assert code == grpc.StatusCode.UNIMPLEMENTED


class TestRoutes:
    @pytest.mark.parametrize("version", ["99999999999999999999", "9223372036854775808"])
    def test_a_version_over_int64_fails_to_convert(
            self, shared_server: ServerProcess, version: str) -> None:
        status, message = rest_error(shared_server, f"{HPT}/versions/{version}:predict",
                                     {"instances": [1.0]})
        assert (status, message) == (400, f"Failed to convert version: {version} to numeric.")
        status, _ = rest_error(shared_server, f"{HPT}/versions/{version}", method="GET")
        assert status == 400

    @pytest.mark.parametrize(("method", "path"), [
        ("POST", f"{HPT}/versions/-1:predict"),
        ("POST", f"{HPT}/versions/abc:predict"),
        ("POST", f"{HPT}/version/123:predict"),
        ("POST", f"{HPT}/versions/123/labels/a:predict"),
        ("GET", f"{HPT}:predict"),
        ("PUT", f"{HPT}:predict"),
        ("DELETE", HPT),
        ("POST", HPT),
        ("POST", f"{HPT}:PREDICT"),
        ("POST", f"{HPT}:explain"),
    ])
    def test_other_methods_and_shapes_are_a_malformed_request(
            self, shared_server: ServerProcess, method: str, path: str) -> None:
        assert rest_error(shared_server, path, {"instances": [1.0]}, method=method) == (
            400, f"Malformed request: {method} {path}")

    def test_models_without_a_name_is_a_missing_model_name(
            self, shared_server: ServerProcess) -> None:
        assert rest_error(shared_server, "/v1/models", method="GET") == (
            400, "Missing model name in request.")

    def test_a_path_outside_v1_is_a_plain_404(self, shared_server: ServerProcess) -> None:
        reply = get(shared_server.rest_port, "/v2/models/half_plus_two")
        assert reply.status == 404
        assert not reply.headers["content-type"].startswith("application/json")

    def test_a_percent_encoded_model_name_is_decoded(self, shared_server: ServerProcess) -> None:
        reply = post(shared_server.rest_port, "/v1/models/half%5Fplus%5Ftwo:predict",
                     {"instances": [1.0]})
        assert reply.json() == {"predictions": [2.5]}

    def test_a_model_name_that_decodes_to_non_utf8_is_not_found(
            self, shared_server: ServerProcess) -> None:
        status, message = rest_error(shared_server, "/v1/models/%FF%FE:predict",
                                     {"instances": [1.0]})
        assert status == 404
        assert message.startswith("Servable not found for request: Latest(")

    def test_no_cors_headers_without_the_flag(self, shared_server: ServerProcess) -> None:
        reply = post(shared_server.rest_port, f"{HPT}:predict", {"instances": [1.0]})
        assert "access-control-allow-origin" not in reply.headers


@pytest.fixture(scope="module")
def cors_server(exported_models: Path,
                start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_module_server("--model_name=half_plus_two",
                               f"--model_base_path={exported_models / 'half_plus_two'}",
                               "--rest_api_enable_cors_support",
                               "--max_request_size_bytes=100000")


class TestCorsAndLimits:
    CORS = {"access-control-allow-origin": "*", "access-control-allow-methods": "POST, GET",
            "access-control-allow-headers": "Content-Type"}

    def test_a_preflight_with_an_origin_is_answered_with_the_cors_headers(
            self, cors_server: ServerProcess) -> None:
        reply = call(cors_server.rest_port, "OPTIONS", f"{HPT}:predict",
                     headers={"Origin": "http://example.com",
                              "Access-Control-Request-Method": "POST"})
        assert reply.status == 200
        assert reply.body == b""
        assert self.CORS.items() <= reply.headers.items()

    def test_a_preflight_without_an_origin_is_refused(self, cors_server: ServerProcess) -> None:
        assert rest_error(cors_server, f"{HPT}:predict", method="OPTIONS") == (
            400, "Origin header is missing in CORS preflight")

    def test_every_answer_carries_the_cors_headers(self, cors_server: ServerProcess) -> None:
        good = post(cors_server.rest_port, f"{HPT}:predict", {"instances": [1.0]})
        bad = post(cors_server.rest_port, "/v1/models/nope:predict", {"instances": [1.0]})
        assert good.status == 200 and bad.status == 404
        assert self.CORS.items() <= good.headers.items()
        assert self.CORS.items() <= bad.headers.items()

    def test_a_body_over_the_size_limit_is_refused_before_it_is_read(
            self, cors_server: ServerProcess) -> None:
        reply = post(cors_server.rest_port, f"{HPT}:predict", {"instances": [1.0] * 50_000})
        assert reply.status == 413
        assert "exceeds the maximum of 100000 bytes" in reply.error
        assert post(cors_server.rest_port, f"{HPT}:predict",
                    {"instances": [1.0]}).json() == {"predictions": [2.5]}


def test_the_server_still_serves_after_every_bad_request(
        shared_server: ServerProcess) -> None:
    assert shared_server.process.poll() is None
    assert post(shared_server.rest_port, f"{HPT}:predict",
                {"instances": [1.0, 2.0, 5.0]}).json() == {"predictions": [2.5, 3.0, 4.5]}
    response = shared_server.predict.Predict(predict_request(x=X), timeout=30)
    assert response.outputs["y"].float_val == [2.5]
    assert "Traceback" not in shared_server.log()
