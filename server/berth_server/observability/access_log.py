"""An optional JSON-lines access log: one object per finished request, sampled.

Line fields: `time` (UTC, RFC 3339 with ms), `entrypoint` (GRPC/REST), `api`, `model`,
`version` (null when no version was resolved), `signature`, `status` (canonical code name),
`latency_micros`, `request_bytes`, `response_bytes`; with `--num_workers`, also `worker` (the
index of the worker process that served it).

Successful requests are written with probability `sampling_rate`; failed ones always, since
they are the lines an operator looks for. Writes go to a buffered file (a few hundred ns on the
event loop); a daemon thread flushes it every `flush_interval_seconds`, and `close` flushes the
rest. Each flush writes whole lines, and worker processes open the file for appending, so their
lines never mix. Path `-` writes to stdout in chunks of at most PIPE_BUF bytes, which a pipe
writes whole, so worker processes sharing stdout do not mix their lines there either.
"""

from __future__ import annotations

import datetime
import random
import select
import threading
from typing import IO

import orjson

from berth_server import errors
from berth_server.observability.request_record import RequestRecord


class AccessLog:
    def __init__(self, path: str, *, sampling_rate: float = 1.0,
                 flush_interval_seconds: float = 1.0, worker: int | None = None) -> None:
        self._file: IO[bytes] = (open(path, "ab", buffering=1 << 16) if path != "-"  # noqa: SIM115
                                 else open(1, "ab", buffering=select.PIPE_BUF, closefd=False))
        self._worker = worker
        self._rate = min(1.0, max(0.0, sampling_rate))
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_forever, args=(flush_interval_seconds,),
                                         name="berth-access-log", daemon=True)
        self._flusher.start()

    def write(self, record: RequestRecord) -> None:
        if record.code == errors.Code.OK and self._rate < 1.0 and random.random() >= self._rate:
            return
        now = datetime.datetime.now(datetime.UTC)
        fields = {
            "time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "entrypoint": record.entrypoint, "api": record.api, "model": record.model_name,
            "version": record.version, "signature": record.signature,
            "status": record.code.name, "latency_micros": round(record.latency_micros),
            "request_bytes": record.request_bytes, "response_bytes": record.response_bytes,
        }
        if self._worker is not None:
            fields["worker"] = self._worker
        line = orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE)
        if not self._closed.is_set():
            self._file.write(line)

    def _flush_forever(self, interval_seconds: float) -> None:
        while not self._closed.wait(interval_seconds):
            self._file.flush()

    def close(self) -> None:
        self._closed.set()
        self._file.close()  # stdout's descriptor stays open (closefd=False)
