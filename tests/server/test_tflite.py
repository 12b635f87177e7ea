"""TF Lite versions (`--prefer_tflite_model`), as TF Serving's testPredictOnTfLite and
testPredictWithSignatureDefOnTfLite call them, against models these tests convert.

Three ways a model.tflite carries its signatures: none (TF Serving makes `serving_default` of
its tensors, named `x` and `y`), TF Serving's `signature_defs_metadata` (aliases bound to
tensors by name), and TF Lite's own signatures (what current converters write).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
import tensorflow as tf
from flatbuffers import flexbuffers
from server_http import get, post
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils
from tensorflow_serving.apis import predict_pb2

if TYPE_CHECKING:
    from conftest import ServerProcess

VERSION = 123


def _half_plus_two_tflite(input_name: str) -> bytes:
    """y = 0.5 * x + 2 over x of shape [1, 1], converted from a TF1 session."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        x = v1.placeholder(tf.float32, [1, 1], name=input_name)
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(2.0, name="b")
        y = tf.add(a * x, b, name="y")
        session.run(v1.global_variables_initializer())
        converted: bytes = v1.lite.TFLiteConverter.from_session(session, [x], [y]).convert()
    return converted


def _with_signature_defs_metadata(content: bytes,
                                  signatures: dict[str, meta_graph_pb2.SignatureDef]) -> bytes:
    """The model with TF Serving's `signature_defs_metadata`: a flexbuffer map of key to
    serialized SignatureDef, each a flexbuffer String (Python's builder writes binary Strings
    only through its blob writer)."""
    builder = flexbuffers.Builder()
    with builder.Map():
        for key, signature in signatures.items():
            builder.Key(key)
            builder._WriteBlob(signature.SerializeToString(), append_zero=True,
                               type_=flexbuffers.Type.STRING)
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    buffer = schema.BufferT()
    buffer.data = bytearray(builder.Finish())
    model.buffers.append(buffer)
    metadata = schema.MetadataT()
    metadata.name, metadata.buffer = "signature_defs_metadata", len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), metadata]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _tensor_info(name: str) -> meta_graph_pb2.TensorInfo:
    info = meta_graph_pb2.TensorInfo(name=name, dtype=types_pb2.DT_FLOAT)
    info.tensor_shape.dim.add(size=1)
    info.tensor_shape.dim.add(size=1)
    return info


def _with_tflite_signatures() -> bytes:
    """A TF2 function converted with its signature: TF Lite's own `serving_default`."""
    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": 0.5 * x + 2.0}

    module = tf.Module()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], module)
    converted: bytes = converter.convert()
    return converted


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("tflite")
    signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    signature.inputs["x"].CopyFrom(_tensor_info("tflite_input:0"))
    signature.outputs["y"].CopyFrom(_tensor_info("y:0"))
    for name, content in (
            ("plain", _half_plus_two_tflite("x")),
            ("with_sigdef", _with_signature_defs_metadata(_half_plus_two_tflite("tflite_input"),
                                                          {"serving_default": signature})),
            ("tflite_signatures", _with_tflite_signatures())):
        version = base / name / f"{VERSION:08d}"
        version.mkdir(parents=True)
        (version / "model.tflite").write_bytes(content)
    (base / "models.config").write_text("model_config_list { " + "".join(
        f'config {{ name: "{name}" base_path: "{base / name}" model_platform: "tensorflow" }} '
        for name in ("plain", "with_sigdef", "tflite_signatures")) + "}")
    return base


@pytest.fixture(scope="module")
def server(models: Path, start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_module_server(f"--model_config_file={models / 'models.config'}",
                               "--prefer_tflite_model=true")


@pytest.mark.parametrize("name", ["plain", "with_sigdef", "tflite_signatures"])
def test_grpc_predict_answers_as_tf_serving_does(server: ServerProcess, name: str) -> None:
    """TF Serving's VerifyPredictRequest: x = [2.0] of shape [1], no output filter."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "serving_default"
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add(size=1)
    result = server.predict.Predict(request, timeout=60)
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert list(result.outputs["y"].float_val) == [3.0]
    assert result.model_spec.name == name
    assert result.model_spec.signature_name == "serving_default"
    assert result.model_spec.version.value == VERSION


@pytest.mark.parametrize("name", ["plain", "with_sigdef", "tflite_signatures"])
def test_rest_predict_resizes_the_batch(server: ServerProcess, name: str) -> None:
    for rows in ([[1.0]], [[1.0], [2.0], [5.0]], [[4.0], [6.0]]):
        reply = post(server.rest_port, f"/v1/models/{name}:predict", {"instances": rows})
        assert reply.status == 200, reply.body
        assert reply.json() == {"predictions": [[0.5 * row[0] + 2.0] for row in rows]}


def test_metadata_shows_the_signature_each_model_carries(server: ServerProcess) -> None:
    def inputs(name: str) -> dict[str, object]:
        reply = get(server.rest_port, f"/v1/models/{name}/metadata").json()
        signature = reply["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert list(signature["outputs"]) == ["y"]
        return dict(signature["inputs"]["x"])

    assert inputs("plain")["name"] == "x"
    assert inputs("with_sigdef")["name"] == "tflite_input:0"
    assert inputs("tflite_signatures")["dtype"] == "DT_FLOAT"


def test_a_wrong_input_is_refused_in_tf_servings_words(server: ServerProcess) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "plain"
    request.inputs["z"].dtype = types_pb2.DT_FLOAT
    request.inputs["z"].float_val.append(2.0)
    with pytest.raises(grpc.RpcError) as caught:
        server.predict.Predict(request, timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_without_the_flag_a_tflite_version_fails_as_in_tf_serving(
        models: Path, start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(f"--model_base_path={models / 'plain'}", "--model_name=plain",
                          "--max_num_load_retries=0", wait=False)
    assert server.process.wait(timeout=120) == 1
    assert "Failed to start server" in server.log()


def test_with_batching_each_call_to_a_tflite_model_gets_its_own_rows(
        models: Path, tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    batching = tmp_path / "batching.config"
    batching.write_text("max_batch_size { value: 16 } batch_timeout_micros { value: 20000 }")
    server = start_server(f"--model_config_file={models / 'models.config'}",
                          "--prefer_tflite_model=true", "--enable_batching",
                          f"--batching_parameters_file={batching}")
    rows = [[float(index)] for index in range(12)]
    with ThreadPoolExecutor(len(rows)) as pool:
        replies = list(pool.map(lambda row: post(server.rest_port,
                                                 "/v1/models/tflite_signatures:predict",
                                                 {"instances": [row]}), rows))
    assert [reply.json() for reply in replies] == [
        {"predictions": [[0.5 * row[0] + 2.0]]} for row in rows]
