"""The streaming RPC in process: a real grpc.aio server and channel over a fake model, so that a
test can hold requests inside the model and watch ordering, errors, flow control, cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import predict_pb2

from berth_server import errors
from berth_server.protos import streaming_pb2_grpc
from berth_server.rpc import streaming as rpc_streaming
from berth_server.servables import inference
from berth_server.service.inference_service import InferenceService

SIGNATURE = meta_graph_pb2.SignatureDef(
    inputs={"x": meta_graph_pb2.TensorInfo(name="x:0", dtype=tf.float32.as_datatype_enum)},
    outputs={"y": meta_graph_pb2.TensorInfo(name="y:0", dtype=tf.float32.as_datatype_enum)},
    method_name="tensorflow/serving/predict")


class Model:
    """Doubles x; can hold requests (an asyncio gate) and counts what runs and what is cancelled."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.running = 0
        self.most_running = 0
        self.cancelled = 0
        self.jitter = False

    async def __call__(self, lease: Any, plan: inference.Plan, timeout_ms: int,
                       ) -> inference.Outputs:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.gate.wait()
            if self.jitter:
                await asyncio.sleep(random.random() / 1000)
            return {"y": plan.inputs["x"] * 2}
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


class FakeCore:
    """What the InferenceService reads of ServerCore and its manager: model "m", version 1."""

    def __init__(self) -> None:
        self.manager = self

    @staticmethod
    def resolve_version(name: str, version: int | None, label: str | None) -> int | None:
        return version

    def lease(self, name: str, version: int | None = None) -> FakeLease:
        if name != "m":
            raise errors.not_found(f"Servable not found for request: Latest({name})")
        return FakeLease()


class FakeLease(contextlib.AbstractContextManager["FakeLease"]):
    name, version = "m", 1
    servable = SimpleNamespace(signatures={"serving_default": SIGNATURE})

    def __exit__(self, *exc_info: object) -> None:
        return None


def fake_service(model: Model) -> InferenceService:
    return InferenceService(FakeCore(), model,  # type: ignore[arg-type]
                            check_method_names=False)


def request(value: float, model: str = "m", dtype: Any = np.float32,
            ) -> predict_pb2.PredictRequest:
    message = predict_pb2.PredictRequest()
    message.model_spec.name = model
    message.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([value], dtype=dtype)))
    return message


async def until(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(3000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def serve(model: Model, test: Callable[[streaming_pb2_grpc.StreamingPredictionServiceStub],
                                       Awaitable[None]]) -> None:
    async def main() -> None:
        server = grpc.aio.server()
        rpc_streaming.add_service(server, fake_service(model), tensor_content_outputs=False)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await test(streaming_pb2_grpc.StreamingPredictionServiceStub(channel))
        finally:
            model.gate.set()
            await server.stop(None)

    asyncio.run(main())


async def requests(values: list[float], pulled: list[int] | None = None,
                   ) -> AsyncIterator[predict_pb2.PredictRequest]:
    for value in values:
        if pulled is not None:
            pulled[0] += 1
        yield request(value)


def y(answer: Any) -> list[float]:
    assert not answer.HasField("error"), answer.error
    return list(tf.make_ndarray(answer.predict_response.outputs["y"]))


def test_answers_come_in_request_order_although_requests_finish_out_of_order() -> None:
    model = Model()
    model.jitter = True

    async def test(stub: streaming_pb2_grpc.StreamingPredictionServiceStub) -> None:
        values = [float(v) for v in range(300)]
        answers = [a async for a in stub.PredictStream(requests(values))]
        assert [a.index for a in answers] == list(range(300))
        assert [y(a) for a in answers] == [[2 * v] for v in values]
        assert model.most_running > 1  # the stream really worked on several at once

    serve(model, test)


def test_a_failing_request_gets_its_own_error_and_the_stream_goes_on() -> None:
    async def bad_and_good() -> AsyncIterator[predict_pb2.PredictRequest]:
        yield request(1.0)
        yield request(2.0, model="missing")
        yield request(3.0, dtype=np.int32)
        yield request(4.0)

    async def test(stub: streaming_pb2_grpc.StreamingPredictionServiceStub) -> None:
        answers = [a async for a in stub.PredictStream(bad_and_good())]
        assert [a.index for a in answers] == [0, 1, 2, 3]
        assert y(answers[0]) == [2.0] and y(answers[3]) == [8.0]
        assert answers[1].error.code == errors.Code.NOT_FOUND
        assert answers[1].error.message == "Servable not found for request: Latest(missing)"
        assert answers[2].error.code == errors.Code.INVALID_ARGUMENT
        assert "Expects arg[0] to be float32 but int32 is provided" in answers[2].error.message

    serve(Model(), test)


def test_a_stream_runs_at_most_the_in_flight_bound_and_then_stops_reading() -> None:
    model = Model()

    async def test(stub: streaming_pb2_grpc.StreamingPredictionServiceStub) -> None:
        model.gate.clear()
        values = [float(v) for v in range(500)]
        call = stub.PredictStream(requests(values))
        await until(lambda: model.running == rpc_streaming.MAX_IN_FLIGHT_PER_STREAM,
                    "the stream to fill its in-flight bound")
        model.gate.set()
        answers = [a async for a in call]
        assert [y(a) for a in answers] == [[2 * v] for v in values]
        assert model.most_running == rpc_streaming.MAX_IN_FLIGHT_PER_STREAM

    serve(model, test)


def test_cancelling_the_call_cancels_the_streams_running_requests_at_once() -> None:
    model = Model()

    async def test(stub: streaming_pb2_grpc.StreamingPredictionServiceStub) -> None:
        model.gate.clear()
        call = stub.PredictStream(requests([float(v) for v in range(10)]))
        await until(lambda: model.running == 10, "ten requests to run")
        call.cancel()
        await until(lambda: model.cancelled == 10 and model.running == 0,
                    "the server to cancel the stream's requests")
        with pytest.raises(asyncio.CancelledError):
            await call.read()

    serve(model, test)


def test_many_concurrent_streams_each_get_their_own_answers() -> None:
    model = Model()
    model.jitter = True

    async def one(stub: streaming_pb2_grpc.StreamingPredictionServiceStub, stream: int) -> None:
        values = [float(stream * 1000 + i) for i in range(40)]
        answers = [a async for a in stub.PredictStream(requests(values))]
        assert [y(a) for a in answers] == [[2 * v] for v in values]

    async def test(stub: streaming_pb2_grpc.StreamingPredictionServiceStub) -> None:
        await asyncio.gather(*(one(stub, s) for s in range(24)))

    serve(model, test)


def test_an_answer_is_never_more_than_one_response() -> None:
    # One message per request on the stream, carrying that request's rows only: whether it
    # succeeds, is refused (unknown model, wrong dtype) or its model raises, and past the
    # in-flight bound.
    count = 3 * rpc_streaming.MAX_IN_FLIGHT_PER_STREAM
    outcomes = ["ok", "unknown model", "wrong dtype", "model raises"]

    class Raising(Model):
        async def __call__(self, lease: Any, plan: inference.Plan, timeout_ms: int,
                           ) -> inference.Outputs:
            if outcomes[int(plan.inputs["x"][0]) % 4] == "model raises":
                raise RuntimeError("model failed")
            return await super().__call__(lease, plan, timeout_ms)

    async def mixed() -> AsyncIterator[predict_pb2.PredictRequest]:
        for i in range(count):
            outcome = outcomes[i % 4]
            yield request(float(i), model="missing" if outcome == "unknown model" else "m",
                          dtype=np.int32 if outcome == "wrong dtype" else np.float32)

    model = Raising()
    model.jitter = True

    async def test(stub: streaming_pb2_grpc.StreamingPredictionServiceStub) -> None:
        answers = [a async for a in stub.PredictStream(mixed())]
        assert [a.index for a in answers] == list(range(count))  # each index exactly once
        for answer in answers:
            if outcomes[answer.index % 4] == "ok":
                assert y(answer) == [2.0 * answer.index]  # its own row, not a neighbour's
            else:
                assert answer.WhichOneof("result") == "error" and answer.error.code != 0

    serve(model, test)
