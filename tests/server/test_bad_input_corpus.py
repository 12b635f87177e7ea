"""A corpus of malformed requests, REST and gRPC, each with the answer TF Serving gives.

Data-driven: one row per request. REST rows give the HTTP status (and, where the wording is
pinned, a fragment of the `{"error": ...}` message); gRPC rows give the status code. Every error
must come back as a well-formed answer from a server that keeps running.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from server_http import call
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    regression_pb2,
)

if TYPE_CHECKING:
    from conftest import ServerProcess

HPT = "/v1/models/half_plus_two"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(exported_models: Path,
           start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_module_server(f"--model_config_file={exported_models / 'models.config'}")


@dataclasses.dataclass(frozen=True)
class Rest:
    id: str
    method: str
    path: str
    body: bytes | str | None
    status: int
    message: str = ""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


REST_CORPUS = [
    Rest("not-json", "POST", f"{HPT}:predict", "{", 400),
    Rest("empty-body", "POST", f"{HPT}:predict", "", 400),
    Rest("json-array-body", "POST", f"{HPT}:predict", "[1.0]", 400),
    Rest("json-string-body", "POST", f"{HPT}:predict", '"instances"', 400),
    Rest("no-instances-or-inputs", "POST", f"{HPT}:predict", '{"foo": 1}', 400,
         "Missing 'inputs' or 'instances' key"),
    Rest("instances-and-inputs", "POST", f"{HPT}:predict",
         '{"instances": [1.0], "inputs": [1.0]}', 400),
    Rest("instances-not-a-list", "POST", f"{HPT}:predict", '{"instances": 1.0}', 400),
    Rest("instances-empty", "POST", f"{HPT}:predict", '{"instances": []}', 400),
    Rest("mixed-types", "POST", f"{HPT}:predict", '{"instances": [1.0, "a"]}', 400),
    Rest("ragged-rows", "POST", f"{HPT}:predict", '{"instances": [[1.0], [1.0, 2.0]]}', 400),
    Rest("string-for-float", "POST", f"{HPT}:predict", '{"instances": ["a"]}', 400),
    Rest("object-for-float", "POST", f"{HPT}:predict", '{"instances": [{"y": 1.0}]}', 400),
    Rest("deep-nesting", "POST", f"{HPT}:predict",
         '{"instances": ' + "[" * 5000 + "]" * 5000 + "}", 400),
    Rest("signature-name-not-string", "POST", f"{HPT}:predict",
         '{"instances": [1.0], "signature_name": 5}', 400),
    Rest("unknown-signature", "POST", f"{HPT}:predict",
         '{"instances": [1.0], "signature_name": "nope"}', 400),
    Rest("multi-io-unknown-input", "POST", "/v1/models/multi_io:predict",
         '{"inputs": {"zzz": [1.0]}}', 400),
    Rest("multi-io-missing-input", "POST", "/v1/models/multi_io:predict",
         '{"inputs": {"a": [[1.0, 2.0, 3.0]]}}', 400),
    Rest("bad-b64", "POST", "/v1/models/string_model:predict",
         '{"instances": [{"b64": "!!!not base64"}]}', 400),
    Rest("invalid-utf8", "POST", f"{HPT}:predict", b'{"instances": ["\xff\xfe"]}', 400),
    Rest("gzip-header-plain-body", "POST", f"{HPT}:predict", '{"instances": [1.0]}', 400,
         headers={"Content-Encoding": "gzip"}),
    Rest("unknown-model", "POST", "/v1/models/nope:predict", '{"instances": [1.0]}', 404,
         "Servable not found for request: Latest(nope)"),
    Rest("unknown-version", "POST", f"{HPT}/versions/999:predict", '{"instances": [1.0]}', 404),
    Rest("unknown-label", "POST", f"{HPT}/labels/nope:predict", '{"instances": [1.0]}', 400,
         "Unrecognized servable version label: nope"),
    Rest("version-overflow", "POST", f"{HPT}/versions/99999999999999999999:predict",
         '{"instances": [1.0]}', 400, "Failed to convert version"),
    Rest("uppercase-verb", "POST", f"{HPT}:PREDICT", '{"instances": [1.0]}', 400,
         "Malformed request"),
    Rest("unknown-verb", "POST", f"{HPT}:explain", '{"instances": [1.0]}', 400,
         "Malformed request"),
    Rest("get-on-predict", "GET", f"{HPT}:predict", None, 400, "Malformed request"),
    Rest("post-on-status", "POST", HPT, '{"instances": [1.0]}', 400, "Malformed request"),
    Rest("put", "PUT", f"{HPT}:predict", '{"instances": [1.0]}', 400, "Malformed request"),
    Rest("delete", "DELETE", HPT, None, 400, "Malformed request"),
    Rest("singular-version", "GET", f"{HPT}/version/123", None, 400, "Malformed request"),
    Rest("version-and-label", "GET", f"{HPT}/versions/123/labels/a", None, 400,
         "Malformed request"),
    Rest("non-numeric-version", "GET", f"{HPT}/versions/abc", None, 400, "Malformed request"),
    Rest("missing-model-name", "GET", "/v1/models", None, 400, "Missing model name in request."),
    Rest("status-unknown-model", "GET", "/v1/models/nope", None, 404),
    Rest("metadata-unknown-model", "GET", "/v1/models/nope/metadata", None, 404),
    Rest("metadata-unknown-version", "GET", f"{HPT}/versions/7/metadata", None, 404),
    Rest("classify-without-examples", "POST", f"{HPT}:classify", '{"foo": []}', 400),
    Rest("classify-examples-not-list", "POST", f"{HPT}:classify", '{"examples": "x"}', 400),
    Rest("regress-example-not-object", "POST", f"{HPT}:regress", '{"examples": [1]}', 400),
    Rest("classify-on-predict-only-model", "POST", "/v1/models/mlp:classify",
         '{"examples": [{"x": 1.0}]}', 400),
    Rest("outside-v1", "GET", "/v2/models/half_plus_two", None, 404),
    Rest("root", "GET", "/", None, 404),
    Rest("body-too-deep-object", "POST", f"{HPT}:predict",
         '{"inputs": ' + '{"a":' * 3000 + "1" + "}" * 3000 + "}", 400),
]


@pytest.mark.parametrize("case", REST_CORPUS, ids=[case.id for case in REST_CORPUS])
def test_rest_corpus(server: ServerProcess, case: Rest) -> None:
    reply = call(server.rest_port, case.method, case.path, case.body,
                 headers={**JSON, **case.headers})
    assert reply.status == case.status, reply.body[:300]
    if case.path.startswith("/v1/"):
        assert reply.headers["content-type"] == "application/json"
        assert case.message in reply.error
    assert server.process.poll() is None


def _tensor(value: Any, dtype: Any = tf.float32) -> Any:
    return tf.make_tensor_proto(value, dtype=dtype)


def _predict(model: str = "half_plus_two", *, signature: str = "", version: int | None = None,
             label: str = "", output_filter: tuple[str, ...] = (),
             **inputs: Any) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(output_filter=list(output_filter))
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(value)
    return request


def _bad_tensor_content() -> Any:
    proto = _tensor([[1.0]])
    proto.ClearField("float_val")
    proto.tensor_content = b"\x00" * 7  # not a multiple of 4 bytes, nor [1,1]
    return proto


def _examples_request(kind: Any, model: str, signature: str = "") -> Any:
    request = kind()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    return request


@dataclasses.dataclass(frozen=True)
class Grpc:
    id: str
    method: str
    request: Callable[[], Any]
    code: grpc.StatusCode


X = _tensor([[1.0]])
GRPC_CORPUS = [
    Grpc("predict-no-model-name", "Predict", lambda: _predict("", x=X),
         grpc.StatusCode.INVALID_ARGUMENT),
    Grpc("predict-unknown-model", "Predict", lambda: _predict("nope", x=X),
         grpc.StatusCode.NOT_FOUND),
    Grpc("predict-unknown-version", "Predict", lambda: _predict(version=999, x=X),
         grpc.StatusCode.NOT_FOUND),
    Grpc("predict-unknown-label", "Predict", lambda: _predict(label="nope", x=X),
         grpc.StatusCode.INVALID_ARGUMENT),
    Grpc("predict-no-inputs", "Predict", lambda: _predict(), grpc.StatusCode.INVALID_ARGUMENT),
    Grpc("predict-extra-input", "Predict", lambda: _predict(x=X, z=X),
         grpc.StatusCode.INVALID_ARGUMENT),
    Grpc("predict-wrong-dtype", "Predict", lambda: _predict(x=_tensor([["a"]], tf.string)),
         grpc.StatusCode.INVALID_ARGUMENT),
    Grpc("predict-unknown-signature", "Predict", lambda: _predict(signature="nope", x=X),
         grpc.StatusCode.FAILED_PRECONDITION),
    Grpc("predict-bad-tensor-content", "Predict", lambda: _predict(x=_bad_tensor_content()),
         grpc.StatusCode.INVALID_ARGUMENT),
    Grpc("predict-unknown-output-filter", "Predict",
         lambda: _predict(x=X, output_filter=("nope",)), grpc.StatusCode.INVALID_ARGUMENT),
    Grpc("predict-wrong-rank-mlp", "Predict",
         lambda: _predict("mlp", x=_tensor(np.ones((2, 3), np.float32))),
         grpc.StatusCode.INVALID_ARGUMENT),
    Grpc("classify-no-input", "Classify",
         lambda: _examples_request(classification_pb2.ClassificationRequest, "half_plus_two",
                                   "classify_x_to_y"), grpc.StatusCode.INVALID_ARGUMENT),
    Grpc("regress-no-input", "Regress",
         lambda: _examples_request(regression_pb2.RegressionRequest, "half_plus_two",
                                   "regress_x_to_y"), grpc.StatusCode.INVALID_ARGUMENT),
    Grpc("regress-unknown-model", "Regress",
         lambda: _examples_request(regression_pb2.RegressionRequest, "nope"),
         grpc.StatusCode.NOT_FOUND),
    Grpc("metadata-no-fields", "GetModelMetadata",
         lambda: get_model_metadata_pb2.GetModelMetadataRequest(
             model_spec={"name": "half_plus_two"}), grpc.StatusCode.INVALID_ARGUMENT),
    Grpc("metadata-unsupported-field", "GetModelMetadata",
         lambda: get_model_metadata_pb2.GetModelMetadataRequest(
             model_spec={"name": "half_plus_two"}, metadata_field=["nope"]),
         grpc.StatusCode.INVALID_ARGUMENT),
    Grpc("metadata-unknown-model", "GetModelMetadata",
         lambda: get_model_metadata_pb2.GetModelMetadataRequest(
             model_spec={"name": "nope"}, metadata_field=["signature_def"]),
         grpc.StatusCode.NOT_FOUND),
    Grpc("status-no-spec", "GetModelStatus", get_model_status_pb2.GetModelStatusRequest,
         grpc.StatusCode.INVALID_ARGUMENT),
    Grpc("status-unknown-model", "GetModelStatus",
         lambda: get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "nope"}),
         grpc.StatusCode.NOT_FOUND),
    Grpc("multi-inference-no-tasks", "MultiInference", inference_pb2.MultiInferenceRequest,
         grpc.StatusCode.INVALID_ARGUMENT),
    Grpc("multi-inference-two-models", "MultiInference",
         lambda: inference_pb2.MultiInferenceRequest(tasks=[
             {"model_spec": {"name": "half_plus_two"},
              "method_name": "tensorflow/serving/regress"},
             {"model_spec": {"name": "half_plus_three"},
              "method_name": "tensorflow/serving/regress"}]),
         grpc.StatusCode.INVALID_ARGUMENT),
    Grpc("reload-without-model-list", "HandleReloadConfigRequest",
         model_management_pb2.ReloadConfigRequest, grpc.StatusCode.INVALID_ARGUMENT),
]

_SERVICES = {"GetModelStatus": "ModelService", "HandleReloadConfigRequest": "ModelService"}


def _call(server: ServerProcess, method: str, request: Any) -> None:
    stub = server.model_service if _SERVICES.get(method) == "ModelService" else server.predict
    getattr(stub, method)(request, timeout=30)


@pytest.mark.parametrize("case", GRPC_CORPUS, ids=[case.id for case in GRPC_CORPUS])
def test_grpc_corpus(server: ServerProcess, case: Grpc) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _call(server, case.method, case.request())
    assert caught.value.code() == case.code, caught.value.details()
    assert caught.value.details()
    assert server.process.poll() is None


@pytest.mark.parametrize("payload", [b"\xff\xff\xff\xff", b"\x0a\x05", b"\x12" * 64],
                         ids=["garbage", "truncated-field", "repeated-tags"])
def test_undecodable_grpc_messages_are_answered_not_crashed_on(server: ServerProcess,
                                                               payload: bytes) -> None:
    predict = server.channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                                         request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as caught:
        predict(payload, timeout=30)
    # grpc.aio answers a request it cannot deserialize with UNKNOWN (C++ servers: INTERNAL).
    assert caught.value.code() == grpc.StatusCode.UNKNOWN
    assert "Error parsing message" in caught.value.details()
    assert server.process.poll() is None


def test_a_gzip_body_that_expands_past_100_mb_is_refused(server: ServerProcess) -> None:
    bomb = gzip.compress(b" " * (101 << 20))
    reply = call(server.rest_port, "POST", f"{HPT}:predict", bomb,
                 headers={**JSON, "Content-Encoding": "gzip"})
    assert reply.status == 413
    assert f"Decompressed request body exceeds the maximum of {100 << 20} bytes" in reply.error


def test_the_corpus_is_big_enough() -> None:
    assert len(REST_CORPUS) + len(GRPC_CORPUS) >= 40
