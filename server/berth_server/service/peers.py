"""The workers' channel to each other: one JSON request and one JSON answer per connection.

Each worker listens on a Unix socket of its own in the supervisor's private run directory
(`worker_link.WorkerIdentity.peer_socket`). Calls are few (a scrape, a status or readiness
check, a reload), so a connection per call keeps the channel plain: nothing to multiplex, and a
worker that is gone shows as a refused connection. A frame is a 4-byte big-endian length, then
that many bytes of JSON.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

Message = dict[str, Any]
Handler = Callable[[Message], Awaitable[Message]]
_LENGTH = struct.Struct(">I")
_MAX_FRAME_BYTES = 256 << 20


class Unreachable(Exception):
    """The peer did not answer: it is gone, or it took longer than the call allowed."""


async def serve(path: Path, handler: Handler) -> asyncio.AbstractServer:
    """Answer every connection on `path` with `handler`'s answer to its one request."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            _write(writer, await handler(await _read(reader)))
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass  # the caller went away
        except Exception:  # a bug costs this call (the caller sees Unreachable), not the worker
            log.exception("A peer's call failed")
        finally:
            writer.close()

    return await asyncio.start_unix_server(on_connection, path=str(path))


async def call(path: Path, request: Message, *, timeout_seconds: float | None) -> Message:
    try:
        async with asyncio.timeout(timeout_seconds):
            reader, writer = await asyncio.open_unix_connection(str(path))
            try:
                _write(writer, request)
                await writer.drain()
                return await _read(reader)
            finally:
                writer.close()
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as error:
        raise Unreachable(f"{type(error).__name__}: {error}") from None


def _write(writer: asyncio.StreamWriter, message: Message) -> None:
    payload = orjson.dumps(message)
    writer.write(_LENGTH.pack(len(payload)) + payload)


async def _read(reader: asyncio.StreamReader) -> Message:
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > _MAX_FRAME_BYTES:
        raise ValueError(f"a frame of {length} bytes")
    message: Message = orjson.loads(await reader.readexactly(length))
    return message
