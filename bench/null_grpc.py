"""The gRPC transport ceiling: a grpc.aio PredictionService that decodes and answers a constant.

    python -m bench.null_grpc --port=PORT [--handoff_micros=200]

Berth's gRPC rows are divided by this server's rows from the same run: it pays exactly what any
grpc.aio server must (HTTP/2 framing, PredictRequest parsing, PredictResponse framing) and nothing
of Berth's, so the ratio shows what Berth's own work per request costs.

With `--handoff_micros`, each call waits for its answer from a thread, as a batching server's
calls do: the thread takes every call queued, waits that long (the batch timeout) and wakes the
event loop once to answer them all. It computes nothing, so its rows are the ceiling of any
server on grpc.aio that hands requests to a batch thread.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time

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


class HandOffPredictionService(NullPredictionService):
    """Predict answers the constant once a batch thread has handed the call back."""

    def __init__(self, wait_seconds: float) -> None:
        super().__init__()
        self._wait_seconds = wait_seconds
        self._queued: list[asyncio.Future[None]] = []
        self._work = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predict_pb2.PredictResponse:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            threading.Thread(target=self._batches, daemon=True).start()
        answered = self._loop.create_future()
        with self._work:
            self._queued.append(answered)
            self._work.notify()
        await answered
        return self._response

    def _batches(self) -> None:
        assert self._loop is not None
        while True:
            with self._work:
                while not self._queued:
                    self._work.wait()
            time.sleep(self._wait_seconds)
            with self._work:
                batch, self._queued = self._queued, []
            self._loop.call_soon_threadsafe(_answer, batch)


def _answer(batch: list[asyncio.Future[None]]) -> None:
    for answered in batch:
        if not answered.done():
            answered.set_result(None)


async def serve(port: int, handoff_micros: int | None) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 2**31 - 1)])
    servicer = (NullPredictionService() if handoff_micros is None
                else HandOffPredictionService(handoff_micros / 1e6))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(READY_LINE, flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--handoff_micros", type=int, help="answer through a batch thread")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.handoff_micros))


if __name__ == "__main__":
    main()
