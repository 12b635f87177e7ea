"""Keras 3 models held by a plain tf.Module and saved with tf.saved_model.save.

Their variables are tracked only through the object graph, so the session restore TF Serving
uses leaves them unset and every request fails with `Could not find variable ...`
(tensorflow/serving#2250, #2226; kserve#3801; keras#20096). Berth detects this at load and
serves the version with TensorFlow's object loader: same signatures, same APIs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from server_http import get, post
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

if TYPE_CHECKING:
    from conftest import ServerProcess


class _Serving(tf.Module):
    def __init__(self, model: keras.Model, spec: tf.TensorSpec) -> None:
        super().__init__()
        self.model = model
        self.serve = tf.function(lambda x: {"y": self.model(x)}, input_signature=[spec])


def _export(model: keras.Model, spec: tf.TensorSpec, path: Path,
            inputs: np.ndarray) -> np.ndarray:
    module = _Serving(model, spec)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return np.asarray(model(inputs))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keras")


@pytest.fixture(scope="module")
def exports(base: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """model name → (inputs, the outputs Keras computed) for an MLP and a small CNN."""
    keras.utils.set_random_seed(7)
    mlp = keras.Sequential([keras.Input((10,)), keras.layers.Dense(64, activation="relu"),
                            keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
    cnn = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                            keras.layers.Flatten(), keras.layers.Dense(3)])
    rows = np.linspace(-1, 1, 30, dtype=np.float32).reshape(3, 10)
    images = np.linspace(0, 1, 128, dtype=np.float32).reshape(2, 8, 8, 1)
    return {
        "mlp": (rows, _export(mlp, tf.TensorSpec([None, 10], tf.float32, name="x"),
                              base / "mlp" / "1", rows)),
        "cnn": (images, _export(cnn, tf.TensorSpec([None, 8, 8, 1], tf.float32, name="x"),
                                base / "cnn" / "1", images)),
    }


@pytest.fixture(scope="module")
def server(exports: dict[str, Any], base: Path,
           start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    config = base / "models.config"
    entries = "".join(f'config {{ name: "{name}" base_path: "{base / name}" '
                      'model_platform: "tensorflow" }' for name in exports)
    config.write_text(f"model_config_list {{ {entries} }}")
    return start_module_server(f"--model_config_file={config}")


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_rest_answers_what_keras_computed(server: ServerProcess, exports: dict[str, Any],
                                          name: str) -> None:
    inputs, expected = exports[name]
    reply = post(server.rest_port, f"/v1/models/{name}:predict", {"instances": inputs.tolist()})
    assert reply.status == 200, reply.body
    np.testing.assert_allclose(reply.json()["predictions"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_grpc_answers_what_keras_computed(server: ServerProcess, exports: dict[str, Any],
                                          name: str) -> None:
    inputs, expected = exports[name]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(inputs))
    response = server.predict.Predict(request, timeout=60)
    assert response.model_spec.version.value == 1
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), expected, rtol=1e-5,
                               atol=1e-6)


def test_the_versions_are_available_with_their_signatures(server: ServerProcess) -> None:
    for name in ("mlp", "cnn"):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        status = server.model_service.GetModelStatus(request, timeout=30)
        assert [s.state for s in status.model_version_status] == [
            get_model_status_pb2.ModelVersionStatus.AVAILABLE]
        signature = get(server.rest_port, f"/v1/models/{name}/metadata").json()[
            "metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert list(signature["inputs"]) == ["x"] and list(signature["outputs"]) == ["y"]
    assert "serving this version with TensorFlow's object loader" in server.log()


def test_bad_input_is_refused_in_tf_servings_words(server: ServerProcess) -> None:
    reply = post(server.rest_port, "/v1/models/mlp:predict", {"instances": [[1.0, 2.0]]})
    assert reply.status == 400, reply.body
    assert "<class" not in reply.error and "Internal error" not in reply.error


def _export_with_a_variable_left_out(path: Path) -> None:
    """A TF1 export whose checkpoint lacks `b`, which its signature reads: no loader can
    restore it, and a session would answer every request with an error (or nothing)."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        x = v1.placeholder(tf.float32, [None], name="x")
        a = v1.get_variable("a", initializer=2.0, use_resource=True)
        b = v1.get_variable("b", initializer=3.0, use_resource=True)
        y = tf.identity(a * x + b, name="y")
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(path))
        builder.add_meta_graph_and_variables(
            session, ["serve"], saver=v1.train.Saver(var_list=[a]),
            signature_def_map={"serving_default": v1.saved_model.predict_signature_def(
                {"x": x}, {"y": y})})
        builder.save()


def test_a_version_whose_signatures_read_unrestored_variables_is_never_available(
        tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    _export_with_a_variable_left_out(tmp_path / "broken" / "1")
    server = start_server(f"--model_base_path={tmp_path / 'broken'}", "--model_name=broken",
                          "--max_num_load_retries=0", wait=False)
    assert server.process.wait(timeout=120) == 1
    log = server.log()
    assert "read 1 variables that neither the session loader nor the object loader restored " \
           "(e.g. b); the version cannot serve" in log
    assert "Failed to start server" in log
