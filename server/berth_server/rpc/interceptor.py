"""A grpc.aio interceptor that records PredictionService calls as TF Serving does.

TF Serving counts every gRPC Predict, Classify and Regress call in `request_count{model_name,
status}` and times the successful ones in `request_latency{...,entrypoint="GRPC"}`; the same
calls go to the access log. Other methods pass through untouched. The record is opened in the
RPC's own context, so the layers below (`request_record.note_*`) fill in version and signature.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from berth_server import errors
from berth_server.observability import request_record
from berth_server.observability.request_record import RequestObserver

_SERVICE = "/tensorflow.serving.PredictionService/"
RECORDED_METHODS = frozenset(("Predict", "Classify", "Regress"))


class RecordingInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, observer: RequestObserver) -> None:
        self._observer = observer
        # The services' handlers are fixed objects: wrap each once, not once per call.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails],
                                         Awaitable[grpc.RpcMethodHandler]],
            handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        if (handler is None or not method.startswith(_SERVICE) or handler.unary_unary is None
                or method[len(_SERVICE):] not in RECORDED_METHODS):
            return handler
        wrapped = grpc.unary_unary_rpc_method_handler(
            self._recorded(method[len(_SERVICE):], handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _recorded(self, api: str, behavior: Callable[..., Awaitable[Any]],
                  ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        observer = self._observer
        # ByteSize() serializes the whole message: pay it only when the access log is kept.
        sizes = observer.wants_sizes

        async def recorded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            record = request_record.begin("GRPC")
            record.api, record.model_name = api, request.model_spec.name
            if sizes:
                record.request_bytes = request.ByteSize()
            call = behavior(request, context)
            del request  # an aborted call's state keeps this frame (see rpc.services._abort)
            try:
                response = await call
                if sizes:
                    record.response_bytes = response.ByteSize()
                return response
            except asyncio.CancelledError:
                record.code = errors.Code.CANCELLED
                raise
            except BaseException:
                record.code = _code_of(context)
                raise
            finally:
                observer.finish(record)
                del record  # it holds the model name, as long as the client sent it

        return recorded


def _code_of(context: grpc.aio.ServicerContext) -> errors.Code:
    code = context.code()
    if isinstance(code, grpc.StatusCode) and code is not grpc.StatusCode.OK:
        return errors.Code[code.name]
    return errors.Code.UNKNOWN
