"""Call Predict and GetModelStatus on half_plus_two the way TF Serving's own client examples do.

Nothing here is Berth-specific: the official ``tensorflow-serving-api`` stubs and
``tf.make_tensor_proto`` talk to Berth exactly as they talk to ``tensorflow_model_server``.

    python examples/grpc_client.py --server=localhost:8500
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)


def predict(
    channel: grpc.Channel, model: str, values: list[float], timeout_seconds: float
) -> predict_pb2.PredictResponse:
    """Predict with serving_default, feeding ``values`` as the float input ``x``."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(values, dtype=tf.float32))
    return stub.Predict(request, timeout_seconds)


def model_status(
    channel: grpc.Channel, model: str, timeout_seconds: float
) -> get_model_status_pb2.GetModelStatusResponse:
    """Every version's state; without a version in the spec the server reports them all."""
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    return stub.GetModelStatus(request, timeout_seconds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Predict and GetModelStatus over gRPC.")
    parser.add_argument("--server", default="localhost:8500", help="host:port of the gRPC API")
    parser.add_argument("--model", default="half_plus_two", help="model name to call")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-call deadline, seconds")
    parser.add_argument("values", nargs="*", type=float, default=[1.0, 2.0, 5.0])
    args = parser.parse_args(argv)

    with grpc.insecure_channel(args.server) as channel:
        response = predict(channel, args.model, args.values, args.timeout)
        version = response.model_spec.version.value
        y = tf.make_ndarray(response.outputs["y"]).tolist()
        print(f"{args.model} version {version}: x={args.values} -> y={y}")
        print(model_status(channel, args.model, args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
