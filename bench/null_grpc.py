"""The gRPC transport ceiling: a grpc.aio PredictionService that decodes and answers a constant.

    python -m bench.null_grpc --port=PORT

Berth's gRPC rows are divided by this server's rows from the same run: it pays exactly what any
grpc.aio server must (HTTP/2 framing, PredictRequest parsing, PredictResponse framing) and nothing
of Berth's, so the ratio shows what Berth's own work per request costs.
"""

from __future__ import annotations

import argparse
import asyncio

import grpc
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

READY_LINE = "null-grpc ready"


def constant_response() -> predict_pb2.PredictResponse:
    """The answer every request gets: one float32 [1, 1] output, as the MLP would return."""
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)] * 2)
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape, float_val=[0.5])
    response = predict_pb2.PredictResponse()
    response.outputs["y"].CopyFrom(tensor)
    response.model_spec.name = "mlp"
    return response


class NullPredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict returns the constant; the servicer's deserializer has already parsed the request."""

    def __init__(self) -> None:
        self._response = constant_response()

    async def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predict_pb2.PredictResponse:
        return self._response


async def serve(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 2**31 - 1)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        NullPredictionService(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(READY_LINE, flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
