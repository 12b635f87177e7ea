"""Reading a REST request body under one size limit, whether it is sent whole, chunked or gzip.

`--max_request_size_bytes` bounds what the server holds of one body: a `Content-Length` above it
is refused before the body is read, a chunked body when it grows past it, a gzip body when it
inflates past it. All three are RESOURCE_EXHAUSTED, answered with HTTP 413.

`BodyBudget` bounds what the server holds of all bodies at once
(`--rest_api_max_body_bytes_in_flight`): bytes count from arrival until the request is
answered, and a body that would pass the budget while others hold bytes is UNAVAILABLE (503),
to retry later. A body alone may always reach the size limit.
"""

from __future__ import annotations

import contextlib
import gzip
import zlib
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from berth_server import errors

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

# Without a size limit, a gzip body may still inflate to no more than this.
MAX_INFLATED_BYTES = 100 << 20


class BodyTooLarge(errors.ServingError):
    """A body over the limit; HTTP 413 rather than RESOURCE_EXHAUSTED's usual 429."""

    def __init__(self, message: str) -> None:
        super().__init__(errors.Code.RESOURCE_EXHAUSTED, message)


class BodyBudget:
    """Bytes of request bodies held across every REST connection. Event loop only."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.held = 0

    @contextlib.contextmanager
    def holding(self) -> Iterator[Holding]:
        """One request's share; released when the request is answered."""
        share = Holding(self)
        try:
            yield share
        finally:
            self.held -= share.bytes


class Holding:
    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.bytes = 0

    def add(self, count: int) -> None:
        budget = self._budget
        if budget.held + count > budget.max_bytes and budget.held > self.bytes:
            raise errors.unavailable(
                f"The server already holds {budget.held} bytes of request bodies "
                f"(--rest_api_max_body_bytes_in_flight={budget.max_bytes}); retry later")
        budget.held += count
        self.bytes += count


def content_length(scope: Scope) -> int:
    """The declared `Content-Length` (0 when absent or unreadable)."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def check_declared_length(length: int, max_bytes: int) -> None:
    if length > max_bytes:
        raise BodyTooLarge(f"Request body of {length} bytes exceeds the maximum of {max_bytes} "
                           "bytes")


async def read(scope: Scope, receive: Receive, max_bytes: int, share: Holding) -> bytes:
    """The whole body, inflated when its Content-Encoding is gzip, counted in `share`."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise errors.ServingError(errors.Code.CANCELLED,
                                      "The client disconnected before its request body ended")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(f"Request body exceeds the maximum of {max_bytes} bytes")
        share.add(len(chunk))
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    encoding = dict(scope["headers"]).get(b"content-encoding", b"")
    if b"gzip" not in encoding.lower():
        return body
    data = _gunzip(body, min(max_bytes, MAX_INFLATED_BYTES))
    share.add(len(data))
    return data


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    decompressor = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        data = decompressor.decompress(body, max_bytes)
    except (zlib.error, gzip.BadGzipFile) as error:
        raise errors.invalid_argument(f"Failed to decompress gzip request body: {error}") from None
    if decompressor.unconsumed_tail:
        raise BodyTooLarge(f"Decompressed request body exceeds the maximum of {max_bytes} bytes")
    return data
