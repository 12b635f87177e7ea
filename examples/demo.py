"""Start berth-server on the example models, call every API with the official clients, stop.

    python examples/demo.py --models=build/models

Exits 0 only if every call answered as TF Serving would.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import grpc
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rest(url: str, body: dict[str, object] | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as response:
        return json.loads(response.read())


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise SystemExit(f"berth-server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("berth-server did not start")


def _example(x: float) -> tf.train.Example:
    return tf.train.Example(features=tf.train.Features(
        feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))}))


def _show(title: str, value: object) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    print(f"== {title}\n{str(text).strip()}\n")


def run_demo(channel: grpc.Channel, rest_url: str, config_path: Path) -> None:
    predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    model_stub = model_service_pb2_grpc.ModelServiceStub(channel)

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0, 2.0, 5.0], dtype=tf.float32))
    response = predict_stub.Predict(request, 10)
    _show("gRPC Predict half_plus_two [1, 2, 5]", tf.make_ndarray(response.outputs["y"]).tolist())

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "half_plus_two"
    classify.model_spec.signature_name = "classify_x_to_y"
    classify.input.example_list.examples.append(_example(20.0))
    _show("gRPC Classify classify_x_to_y x=20", str(predict_stub.Classify(classify, 10).result))

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "half_plus_two"
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.example_list.examples.append(_example(80.0))
    _show("gRPC Regress regress_x_to_y x=80", str(predict_stub.Regress(regress, 10).result))

    multi = inference_pb2.MultiInferenceRequest()
    multi.input.example_list.examples.append(_example(2.0))
    for signature, method in (("classify_x_to_y", "tensorflow/serving/classify"),
                              ("regress_x_to_y", "tensorflow/serving/regress")):
        task = multi.tasks.add(method_name=method)
        task.model_spec.name, task.model_spec.signature_name = "half_plus_two", signature
    _show("gRPC MultiInference", str(predict_stub.MultiInference(multi, 10)))

    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata.model_spec.name = "half_plus_two"
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    predict_stub.GetModelMetadata(metadata, 10).metadata["signature_def"].Unpack(signature_map)
    _show("gRPC GetModelMetadata signatures", sorted(signature_map.signature_def))

    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "two_versions"
    _show("gRPC GetModelStatus two_versions", str(model_stub.GetModelStatus(status, 10)))

    config = text_format.Parse(config_path.read_text(), model_server_config_pb2.ModelServerConfig())
    reload = model_management_pb2.ReloadConfigRequest(config=config)
    _show("gRPC HandleReloadConfigRequest", str(model_stub.HandleReloadConfigRequest(reload, 60)))

    try:
        request.model_spec.name = "no_such_model"
        predict_stub.Predict(request, 10)
        raise SystemExit("an unknown model must fail")
    except grpc.RpcError as error:
        _show("gRPC Predict unknown model", f"{error.code().name}: {error.details()}")

    base = f"{rest_url}/v1/models"
    _show("REST predict", _rest(f"{base}/half_plus_two:predict", {"instances": [1.0, 2.0, 5.0]}))
    _show("REST predict (columnar)", _rest(f"{base}/half_plus_two:predict",
                                           {"inputs": {"x": [[1.0], [2.0]]}}))
    _show("REST classify", _rest(f"{base}/half_plus_two:classify",
                                 {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}))
    _show("REST regress", _rest(f"{base}/half_plus_two:regress",
                                {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}))
    _show("REST status", _rest(f"{base}/half_plus_two"))
    _show("REST metadata (serving_default)",
          _rest(f"{base}/half_plus_two/metadata")["metadata"]["signature_def"]  # type: ignore[index]
          ["signature_def"]["serving_default"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("build/models"))
    args = parser.parse_args(argv)
    config_path = (args.models / "models.config").resolve()
    grpc_port, rest_port = _free_port(), _free_port()
    command = [sys.executable, "-m", "berth_server", f"--port={grpc_port}",
               f"--rest_api_port={rest_port}", f"--model_config_file={config_path}"]
    print("$", " ".join(command[2:]), flush=True)
    process = subprocess.Popen(command, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                               stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(rest_port, process)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            run_demo(channel, f"http://127.0.0.1:{rest_port}", config_path)
    finally:
        process.terminate()
        process.wait(timeout=30)
    print("demo finished: every API answered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
