"""What one REST connection may hold, and for how long: the HTTP protocol under the REST front.

uvicorn's httptools protocol parses requests; on its own it keeps any number of connections, a
header of any size, and a request whose bytes never finish arriving. This subclass bounds each:
too many open connections are answered 503 and closed at once, a header over its size or count
limit 431, and a request whose headers (or body) are not complete within their deadline 408.
Every refusal is one short JSON error body, then the connection closes.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from berth_server.rest import json_body


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    max_header_bytes: int  # request line and headers together
    max_header_count: int
    header_timeout_seconds: float  # from a request's first byte (or the connection) to its headers
    body_timeout_seconds: float  # from a request's headers to its last body byte


_LINGER_SECONDS = 1.0


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a request that is being refused."""


def protocol_class(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, bound to `limits`."""

    class Protocol(LimitedHttpToolsProtocol):
        LIMITS = limits

    return Protocol


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    LIMITS: ConnectionLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refusal: tuple[int, str] | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._reading_headers = True
        self._header_bytes = 0
        self._header_count = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limit = self.LIMITS.max_connections
        if len(self.connections) > limit:
            self._refuse(503, f"The REST port already has {limit} open connections "
                              "(--rest_api_max_connections); retry later")
            return
        self._arm(self.LIMITS.header_timeout_seconds,
                  "Request headers were not received within "
                  f"{self.LIMITS.header_timeout_seconds:g} seconds")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refusal is None:
                self._refuse(400, "Invalid HTTP request received.")
            else:
                self._respond_and_close(*self._refusal)
            return
        if self._reading_headers:
            # Still inside a request's headers: httptools holds every byte of them so far.
            self._header_bytes += len(data)
            if self._header_bytes > self.LIMITS.max_header_bytes:
                self._refuse(431, "Request headers exceed the maximum of "
                                  f"{self.LIMITS.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True
        self._header_count = 0
        if self._deadline is None:  # a keep-alive connection's next request
            self._arm(self.LIMITS.header_timeout_seconds,
                      "Request headers were not received within "
                      f"{self.LIMITS.header_timeout_seconds:g} seconds")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.LIMITS.max_header_count:
            self._refusal = (431, "Request has more than the maximum of "
                                  f"{self.LIMITS.max_header_count} headers")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._header_bytes = 0
        self._arm(self.LIMITS.body_timeout_seconds,
                  f"Request body was not received within {self.LIMITS.body_timeout_seconds:g} "
                  "seconds")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float, message: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._on_deadline, message)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _on_deadline(self, message: str) -> None:
        self._deadline = None
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # answered already (say 413 to a declared length)
            return
        self._refuse(408, message)

    def _refuse(self, status: int, message: str) -> None:
        self._refusal = (status, message)
        self._respond_and_close(status, message)

    def _respond_and_close(self, status: int, message: str) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        body = json_body.encode_error(message)
        self.transport.write(b"".join((
            STATUS_LINE[status], b"content-type: application/json\r\n",
            b"content-length: ", str(len(body)).encode(), b"\r\n", b"connection: close\r\n\r\n",
            body)))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        # A close with unread bytes in the socket resets the connection, and the client may
        # lose the answer: send it and a FIN, discard what still arrives, close a moment later.
        self.transport.write_eof()
        self.loop.call_later(_LINGER_SECONDS, self.transport.close)
