"""berth.serving.StreamingPredictionService: many PredictRequests over one bidirectional call.

Each request runs through `services.predict`, the path of unary Predict (and so through the
batching layer when it is on). Up to `max_in_flight` requests of a stream run at once, so one
stream can fill batches; answers are written in request order. While `max_in_flight` requests
are unanswered the reader stops pulling from the call, and HTTP/2 flow control holds the client
back: the server never buffers more than that per stream. A failing request becomes an `error`
response for that request only. When the call ends early (client cancel, deadline, shutdown),
the handler's cancellation cancels the reader and every in-flight request, which drops them from
the batching queues before they take a batch slot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from tensorflow_serving.apis import predict_pb2

from berth_server import errors
from berth_server.protos import streaming_pb2, streaming_pb2_grpc
from berth_server.rpc import services
from berth_server.servables import tensor_protos
from berth_server.service.inference_service import InferenceService

log = logging.getLogger(__name__)

MAX_IN_FLIGHT_PER_STREAM = 32
_MAX_MESSAGE_CHARS = 1024

_Answer = asyncio.Future[streaming_pb2.StreamPredictResponse]


class StreamingPredictionService(streaming_pb2_grpc.StreamingPredictionServiceServicer):
    def __init__(self, service: InferenceService, *, tensor_content_outputs: bool,
                 max_fill_bytes: int = tensor_protos.MAX_FILLED_BYTES,
                 max_in_flight: int = MAX_IN_FLIGHT_PER_STREAM) -> None:
        self._service = service
        self._tensor_content = tensor_content_outputs
        self._max_fill_bytes = max_fill_bytes
        self._max_in_flight = max(1, max_in_flight)

    async def PredictStream(self, request_iterator: AsyncIterator[predict_pb2.PredictRequest],
                            context: grpc.aio.ServicerContext,
                            ) -> AsyncIterator[streaming_pb2.StreamPredictResponse]:
        # A slot is taken before a request is read and given back once its answer is written.
        slots = asyncio.Semaphore(self._max_in_flight)
        answers: asyncio.Queue[_Answer | None] = asyncio.Queue()
        reader = asyncio.ensure_future(self._read(request_iterator, context, slots, answers))
        try:
            while (answer := await answers.get()) is not None:
                yield await answer
                slots.release()
            await reader  # a failed read ends the call with its error
        finally:
            reader.cancel()
            while not answers.empty():
                if (left := answers.get_nowait()) is not None:
                    left.cancel()

    async def _read(self, request_iterator: AsyncIterator[predict_pb2.PredictRequest],
                    context: grpc.aio.ServicerContext, slots: asyncio.Semaphore,
                    answers: asyncio.Queue[_Answer | None]) -> None:
        requests = aiter(request_iterator)
        index = 0
        try:
            while True:
                await slots.acquire()
                try:
                    request = await anext(requests)
                except StopAsyncIteration:
                    break
                answers.put_nowait(asyncio.ensure_future(self._answer(index, request, context)))
                index += 1
        finally:
            answers.put_nowait(None)  # after an error the writer awaits this task and gets it

    async def _answer(self, index: int, request: predict_pb2.PredictRequest,
                      context: grpc.aio.ServicerContext) -> streaming_pb2.StreamPredictResponse:
        try:
            response = await services.predict(self._service, request,
                                              services.remaining_ms(context),
                                              tensor_content_outputs=self._tensor_content,
                                              max_fill_bytes=self._max_fill_bytes)
        except errors.ServingError as error:
            return _error(index, error.code, error.message)
        except Exception:  # a bug must fail this request, not the stream
            log.exception("Streaming request %d failed", index)
            return _error(index, errors.Code.INTERNAL, errors.INTERNAL_MESSAGE)
        return streaming_pb2.StreamPredictResponse(index=index, predict_response=response)


def _error(index: int, code: errors.Code, message: str) -> streaming_pb2.StreamPredictResponse:
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[:_MAX_MESSAGE_CHARS] + "...TRUNCATED"
    return streaming_pb2.StreamPredictResponse(
        index=index, error=streaming_pb2.Status(code=int(code), message=message))


def add_service(server: grpc.aio.Server, service: InferenceService, *,
                tensor_content_outputs: bool,
                max_fill_bytes: int = tensor_protos.MAX_FILLED_BYTES) -> None:
    streaming_pb2_grpc.add_StreamingPredictionServiceServicer_to_server(
        StreamingPredictionService(service, tensor_content_outputs=tensor_content_outputs,
                                   max_fill_bytes=max_fill_bytes), server)
