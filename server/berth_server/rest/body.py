"""Reading a REST request body under one size limit, whether it is sent whole, chunked or gzip.

`--max_request_size_bytes` bounds what the server holds of one body: a `Content-Length` above it
is refused before the body is read, a chunked body when it grows past it, a gzip body when it
inflates past it. All three are RESOURCE_EXHAUSTED, answered with HTTP 413.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
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


async def read(scope: Scope, receive: Receive, max_bytes: int) -> bytes:
    """The whole body, inflated when its Content-Encoding is gzip."""
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(f"Request body exceeds the maximum of {max_bytes} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    encoding = dict(scope["headers"]).get(b"content-encoding", b"")
    if b"gzip" not in encoding.lower():
        return body
    return _gunzip(body, min(max_bytes, MAX_INFLATED_BYTES))


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    decompressor = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        data = decompressor.decompress(body, max_bytes)
    except (zlib.error, gzip.BadGzipFile) as error:
        raise errors.invalid_argument(f"Failed to decompress gzip request body: {error}") from None
    if decompressor.unconsumed_tail:
        raise BodyTooLarge(f"Decompressed request body exceeds the maximum of {max_bytes} bytes")
    return data
