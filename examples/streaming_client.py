"""Stream predictions over one call: berth.serving.StreamingPredictionService/PredictStream.

Sends a stream of official PredictRequests (one sensor reading each, say) and prints one answer
per request, in order. A request that fails (here: one naming a model that does not exist)
gets an error answer of its own and the stream goes on. The stub is generated from
``protos/berth/serving/streaming.proto`` into ``berth_server.protos``.

    python examples/streaming_client.py --server=localhost:8500 --count=10
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator, Sequence

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from berth_server.protos import streaming_pb2, streaming_pb2_grpc

_CODE_NAMES = {status.value[0]: status.name for status in grpc.StatusCode}


def requests(model: str, values: Iterable[float]) -> Iterator[predict_pb2.PredictRequest]:
    """One PredictRequest per value: `x` = [value] on the model's serving_default."""
    for value in values:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.inputs["x"].CopyFrom(tf.make_tensor_proto([value], dtype=tf.float32))
        yield request


def stream(channel: grpc.Channel, request_iterator: Iterator[predict_pb2.PredictRequest],
           timeout_seconds: float | None = None,
           ) -> Iterator[streaming_pb2.StreamPredictResponse]:
    """Answers as they come, one per request, in request order."""
    stub = streaming_pb2_grpc.StreamingPredictionServiceStub(channel)
    return stub.PredictStream(request_iterator, timeout=timeout_seconds)  # type: ignore[no-any-return]


def describe(answer: streaming_pb2.StreamPredictResponse) -> str:
    if answer.HasField("error"):
        code = _CODE_NAMES.get(answer.error.code, str(answer.error.code))
        return f"#{answer.index}: error {code}: {answer.error.message}"
    y = tf.make_ndarray(answer.predict_response.outputs["y"]).tolist()
    return f"#{answer.index}: y={y} (version {answer.predict_response.model_spec.version.value})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stream predictions over one gRPC call.")
    parser.add_argument("--server", default="localhost:8500", help="host:port of the gRPC API")
    parser.add_argument("--model", default="half_plus_two", help="model name to call")
    parser.add_argument("--count", type=int, default=10, help="requests to stream")
    parser.add_argument("--timeout", type=float, default=30.0, help="whole-call deadline, seconds")
    args = parser.parse_args(argv)

    def mixed() -> Iterator[predict_pb2.PredictRequest]:
        for index, request in enumerate(requests(args.model, map(float, range(args.count)))):
            if index == args.count // 2:
                yield next(requests("no_such_model", [0.0]))  # answered with an error
            yield request

    with grpc.insecure_channel(args.server) as channel:
        for answer in stream(channel, mixed(), args.timeout):
            print(describe(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
