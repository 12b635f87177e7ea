"""Where a finished request goes: TF Serving's request metrics and the optional access log.

Shared by the gRPC interceptor and the REST front door, so both entrypoints record the same
way. Runs on the event loop; costs a few microseconds (see `metrics.record_request`).
"""

from __future__ import annotations

import time

from berth_server import errors
from berth_server.observability import metrics as metrics_module
from berth_server.observability.access_log import AccessLog
from berth_server.observability.request_record import RequestRecord

_CODE_NAMES = {code: code.name for code in errors.Code}  # Enum.name is a slow property


class RequestObserver:
    def __init__(self, metrics: metrics_module.Metrics, access_log: AccessLog | None) -> None:
        self.metrics = metrics
        self._access_log = access_log

    def finish(self, record: RequestRecord, *, metric_api: str | None = None) -> None:
        """Record a finished request; `metric_api` overrides the API label of the metrics."""
        record.latency_micros = (time.perf_counter() - record.started) * 1e6
        self.metrics.record_request(record.model_name, _CODE_NAMES[record.code],
                                    record.api if metric_api is None else metric_api,
                                    record.entrypoint, record.latency_micros)
        if self._access_log is not None:
            self._access_log.write(record)
