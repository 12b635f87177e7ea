"""What one request did, filled in as it goes, for metrics and the access log.

A transport opens a record when a request arrives (`begin`), the layers below note what they
learn through the context variable (`note_route`, `note_version`, `note_error`, …) without
being handed the record, and the transport hands the finished record to the observer. Each
asyncio task (one per HTTP request or RPC) sees only its own record; with no record open (warmup,
tests) every `note_*` is a no-op.
"""

from __future__ import annotations

import contextvars
import dataclasses
import time

from berth_server import errors


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


def note_signature(signature: str) -> None:
    record = current.get()
    if record is not None:
        record.signature = signature


def note_error(code: errors.Code) -> None:
    record = current.get()
    if record is not None:
        record.code = code


def note_response(http_status: int, body_bytes: int) -> None:
    record = current.get()
    if record is not None:
        record.http_status, record.response_bytes = http_status, body_bytes
