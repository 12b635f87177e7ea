"""TensorFlow's profiler service on the gRPC port, as TF Serving serves it (`--enable_profiler`).

TensorBoard's "Capture profile" (and `tf.profiler.experimental.client.trace`) calls
`tensorflow.ProfilerService` at the server's gRPC address. TensorFlow's own profiler server runs
in this process on a port of its own; the gRPC port forwards the service's calls to it byte for
byte, so its protos need no copy here. The trace is written where the capture asks
(its `repository_root`, TensorBoard's logdir), by this process.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import grpc
import tensorflow as tf

SERVICE = "tensorflow.ProfilerService"
_METHODS = ("Profile", "Terminate", "Monitor")
_UNLIMITED = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


def add_service(server: grpc.aio.Server) -> int:
    """Start TensorFlow's profiler server and forward its service from `server` (not started
    yet) to it; call inside the event loop. Returns the profiler server's own port, which
    TensorFlow opens on every interface."""
    port = _free_port()
    tf.profiler.experimental.server.start(port)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=_UNLIMITED)
    handlers = {name: grpc.unary_unary_rpc_method_handler(_forwarding(channel, name))
                for name in _METHODS}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    return port


def _forwarding(channel: grpc.aio.Channel, method: str,
                ) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]:
    call = channel.unary_unary(f"/{SERVICE}/{method}")

    async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            response: bytes = await call(request, timeout=context.time_remaining())
        except grpc.aio.AioRpcError as error:
            code, details = error.code(), error.details() or ""
        else:
            return response
        await context.abort(code, details)
        raise AssertionError("abort raises")  # for the type checker: abort() is not NoReturn

    return forward


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
