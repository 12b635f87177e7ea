"""Fuzzing the REST and gRPC front doors with hypothesis: every input gets a proper answer.

Properties: no request crashes or hangs the server; REST never answers 500 and every /v1 error is
TF Serving's `{"error": ...}` JSON; gRPC answers only with the codes a bad request deserves.
`make test` runs a short, derandomized pass (300 inputs per target); `make fuzz` sets
BERTH_FUZZ_EXAMPLES=40000 and draws fresh inputs: 120,000 over the three targets.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
from tensorflow_serving.apis import predict_pb2

if TYPE_CHECKING:
    from conftest import ServerProcess

EXAMPLES = int(os.environ.get("BERTH_FUZZ_EXAMPLES", "300"))
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                         derandomize="BERTH_FUZZ_EXAMPLES" not in os.environ,
                         suppress_health_check=[HealthCheck.too_slow,
                                                HealthCheck.function_scoped_fixture])
MODELS = ["half_plus_two", "half_plus_two_tf2", "two_versions", "multi_io", "string_model", "mlp",
          "nope", ""]
REST_ANSWERS = {200, 400, 404, 405, 413, 429, 501, 503}
GRPC_ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.OUT_OF_RANGE}


@pytest.fixture(scope="module")
def server(exported_models: Path,
           start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_module_server(f"--model_config_file={exported_models / 'models.config'}")


class Http:
    """One keep-alive connection, reopened when the server closes it."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._connection: http.client.HTTPConnection | None = None

    def send(self, method: str, path: str, body: bytes,
             headers: dict[str, str]) -> tuple[int, dict[str, str], bytes] | None:
        """The answer, or None for a request http.client refuses to send (control chars)."""
        for attempt in range(2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection("127.0.0.1", self._port,
                                                              timeout=20)
            try:
                self._connection.request(method, path, body=body, headers=headers)
            except (http.client.InvalidURL, ValueError, UnicodeError):
                self.close()
                return None
            try:
                response = self._connection.getresponse()
                payload = response.read()
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
                continue
            answer = (response.status, {k.lower(): v for k, v in response.getheaders()},
                      payload)
            if response.getheader("connection", "").lower() == "close":
                self.close()
            return answer
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


@pytest.fixture(scope="module")
def rest(server: ServerProcess) -> Iterator[Http]:
    client = Http(server.rest_port)
    yield client
    client.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=24)
documents = st.fixed_dictionaries({}, optional={
    "instances": json_values, "inputs": json_values, "signature_name": json_values,
    "examples": json_values, "context": json_values}) | json_values
bodies = st.one_of(documents.map(lambda d: json.dumps(d).encode()),
                   st.binary(max_size=256),
                   st.text(max_size=64).map(str.encode))
segments = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=
                                          "?#/ \r\n\t"), max_size=12)
paths = st.one_of(
    st.builds(lambda name, version, verb: f"/v1/models/{name}{version}{verb}",
              st.sampled_from(MODELS) | segments,
              st.sampled_from(["", "/versions/123", "/versions/0", "/labels/stable",
                               "/versions/99999999999999999999", "/versions/-1"])
              | st.builds(lambda n: f"/versions/{n}", st.integers()),
              st.sampled_from(["", ":predict", ":classify", ":regress", "/metadata",
                               ":PREDICT", ":"]) | segments.map(lambda s: ":" + s)),
    segments.map(lambda s: "/" + s),
    st.sampled_from(["/v1/models", "/v1/", "/healthz", "/readyz", "/berth/v1/models"]))


@FUZZ_SETTINGS
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
       path=paths, body=bodies, gzip_header=st.booleans())
def test_rest_answers_every_request_properly(server: ServerProcess, rest: Http, method: str,
                                             path: str, body: bytes, gzip_header: bool) -> None:
    headers = {"Content-Type": "application/json"}
    if gzip_header:
        headers["Content-Encoding"] = "gzip"
    quoted = path.encode("utf-8", "surrogatepass").decode("latin-1")
    answer = rest.send(method, quoted, body, headers)
    assume(answer is not None)
    assert answer is not None
    status, reply_headers, payload = answer
    assert status in REST_ANSWERS, (status, payload[:300])
    if quoted.lower().startswith("/v1/") and status != 200 and method != "HEAD":
        assert reply_headers["content-type"] == "application/json"
        assert set(json.loads(payload)) == {"error"}
    assert server.process.poll() is None


dtypes = st.sampled_from([1, 2, 3, 4, 5, 6, 7, 9, 10, 14, 17, 18, 19, 22, 23]) | st.integers(
    min_value=0, max_value=30)


@st.composite
def tensors(draw: Any) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=draw(dtypes))
    dims = draw(st.lists(st.integers(min_value=-2, max_value=6) | st.sampled_from([2**40]),
                         max_size=4))
    proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims],
        unknown_rank=draw(st.booleans()) and not dims))
    filler = draw(st.sampled_from(["float", "int", "string", "content", "none"]))
    if filler == "float":
        proto.float_val.extend(draw(st.lists(st.floats(width=32), max_size=8)))
    elif filler == "int":
        proto.int_val.extend(draw(st.lists(st.integers(-2**31, 2**31 - 1), max_size=8)))
    elif filler == "string":
        proto.string_val.extend(draw(st.lists(st.binary(max_size=8), max_size=8)))
    elif filler == "content":
        proto.tensor_content = draw(st.binary(max_size=64))
    return proto


@FUZZ_SETTINGS
@given(model=st.sampled_from(MODELS), signature=st.sampled_from(
    ["", "serving_default", "regress_x_to_y", "classify_x_to_y", "nope"]),
       version=st.none() | st.integers(min_value=-1, max_value=2**63 - 1),
       inputs=st.dictionaries(st.sampled_from(["x", "a", "b", "text", "inputs", "zz"]), tensors(),
                              max_size=3),
       output_filter=st.lists(st.sampled_from(["y", "sum", "nope"]), max_size=2))
def test_grpc_predict_answers_every_request_properly(
        server: ServerProcess, model: str, signature: str, version: int | None,
        inputs: dict[str, tensor_pb2.TensorProto], output_filter: list[str]) -> None:
    request = predict_pb2.PredictRequest(output_filter=output_filter)
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for alias, proto in inputs.items():
        request.inputs[alias].CopyFrom(proto)
    try:
        server.predict.Predict(request, timeout=20)
    except grpc.RpcError as error:
        assert error.code() in GRPC_ANSWERS, (error.code(), error.details(), request)
    assert server.process.poll() is None


@FUZZ_SETTINGS
@given(payload=st.binary(max_size=512))
def test_grpc_raw_bytes_are_answered(server: ServerProcess, payload: bytes) -> None:
    predict = server.channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                                         request_serializer=None, response_deserializer=None)
    try:
        predict(payload, timeout=20)
    except grpc.RpcError as error:
        assert error.code() in GRPC_ANSWERS | {grpc.StatusCode.UNKNOWN}, error.details()
        if error.code() == grpc.StatusCode.UNKNOWN:
            assert "Error parsing message" in (error.details() or "")
    assert server.process.poll() is None
