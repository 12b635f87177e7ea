"""What one request did, filled in as it goes, and where it goes when it is finished.

A transport opens a record when a request arrives (`begin`), the layers below note what they
learn through the context variable (`note_route`, `note_version`) without being handed the
record, and the transport hands the finished record to the `RequestObserver`: TF Serving's
request metrics and the optional access log, the same for both entrypoints. Each asyncio task
(one per HTTP request or RPC) sees only its own record; with no record open (warmup, tests)
every `note_*` is a no-op. Runs on the event loop; a few microseconds per request.
"""

from __future__ import annotations

import contextvars
import dataclasses
import time
from collections.abc import Callable
from typing import Protocol

from berth_server import errors
from berth_server.observability.metrics import Metrics

_CODE_NAMES = {code: code.name for code in errors.Code}  # Enum.name is a slow property


@dataclasses.dataclass(slots=True)
class RequestRecord:
    entrypoint: str  # "GRPC" or "REST", as TF Serving's entrypoint label
    api: str = ""  # gRPC method name, or the REST verb ("" for GETs, as TF Serving)
    model_name: str = ""
    version: int | None = None
    signature: str = ""
    code: errors.Code = errors.Code.OK
    request_bytes: int = 0
    response_bytes: int = 0
    http_status: int = 200
    started: float = dataclasses.field(default_factory=time.perf_counter)
    latency_micros: float = 0.0


current: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "berth_request_record", default=None)


def begin(entrypoint: str) -> RequestRecord:
    record = RequestRecord(entrypoint)
    current.set(record)
    return record


def note_route(model_name: str, api: str) -> None:
    record = current.get()
    if record is not None:
        record.model_name, record.api = model_name, api


def note_version(version: int) -> None:
    record = current.get()
    if record is not None:
        record.version = version


class RecordSink(Protocol):
    """Where finished records are written besides the metrics (the access log)."""

    def write(self, record: RequestRecord) -> None: ...


class RequestObserver:
    """Metrics label a request with its model's name only when that model is configured
    (`is_served`); any other name counts under "", which no model can have, so clients asking
    for made-up names cannot grow the metrics without bound."""

    def __init__(self, metrics: Metrics, access_log: RecordSink | None, *,
                 is_served: Callable[[str], bool]) -> None:
        self.metrics = metrics
        self._access_log = access_log
        self._is_served = is_served
        # Only the access log reads a record's byte counts; a transport may skip counting.
        self.wants_sizes = access_log is not None

    def finish(self, record: RequestRecord, *, metric_api: str | None = None) -> None:
        """Record a finished request; `metric_api` overrides the API label of the metrics."""
        record.latency_micros = (time.perf_counter() - record.started) * 1e6
        label = record.model_name if self._is_served(record.model_name) else ""
        self.metrics.record_request(label, _CODE_NAMES[record.code],
                                    record.api if metric_api is None else metric_api,
                                    record.entrypoint, record.latency_micros)
        if self._access_log is not None:
            self._access_log.write(record)
