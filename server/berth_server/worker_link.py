"""The line between the supervisor and one of its workers: who the worker is, and two messages.

The supervisor starts each worker as `python -m berth_server` with the user's flags and
`BERTH_WORKER=<index>:<count>:<fd>:<run dir>` in its environment; `fd` is the worker's end of a
socket pair. Over it the worker says `loaded` once its models are AVAILABLE, and the supervisor
says `serve` once every worker has, so the ports open together and only when every worker can
answer (connections made before a worker opens all stay on the others: gRPC channels live for
hours). End of file on the line means the supervisor is gone: the worker drains and exits, so
no worker outlives it. `run dir` holds each worker's socket for its peers (`peer_socket`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Callable, Mapping
from pathlib import Path

ENV = "BERTH_WORKER"
LOADED = b"loaded\n"
SERVE = b"serve\n"


@dataclasses.dataclass(frozen=True)
class WorkerIdentity:
    index: int
    count: int
    fd: int
    run_dir: Path

    def to_env(self) -> str:
        return f"{self.index}:{self.count}:{self.fd}:{self.run_dir}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WorkerIdentity | None:
        """This process's identity, or None when it is not a worker."""
        value = environ.get(ENV)
        if not value:
            return None
        index, count, fd, run_dir = value.split(":", 3)
        return cls(int(index), int(count), int(fd), Path(run_dir))

    def peer_socket(self, index: int) -> Path:
        return self.run_dir / f"worker-{index}.sock"


class WorkerLine:
    """The worker's end of the line; open it on the worker's event loop."""

    def __init__(self, identity: WorkerIdentity) -> None:
        self.identity = identity
        self._serve = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None

    async def open(self, on_gone: Callable[[], None]) -> None:
        """Start reading the line; `on_gone` is called once, when the supervisor is gone."""
        sock = socket.socket(fileno=self.identity.fd)
        reader, self._writer = await asyncio.open_unix_connection(sock=sock)
        self._reading = asyncio.ensure_future(self._read(reader, on_gone))

    async def _read(self, reader: asyncio.StreamReader, on_gone: Callable[[], None]) -> None:
        while line := await reader.readline():
            if line == SERVE:
                self._serve.set()
        on_gone()

    async def loaded(self) -> None:
        """Report the models loaded, then wait until every worker has (`serve`)."""
        assert self._writer is not None, "open() first"
        self._writer.write(LOADED)
        await self._writer.drain()
        await self._serve.wait()

    def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
        if self._writer is not None:
            self._writer.close()
