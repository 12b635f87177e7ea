"""The server's observability parts, built from its options in one place.

Metrics always record (a few microseconds per request); `--monitoring_config_file` only decides
whether the REST port exposes them. The access log is opened only with `--access_log_file`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from berth_server.config import monitoring_config
from berth_server.observability.access_log import AccessLog
from berth_server.observability.metrics import Metrics
from berth_server.observability.request_record import RequestObserver
from berth_server.options import ServerOptions

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Observability:
    metrics: Metrics
    metrics_path: str | None
    access_log: AccessLog | None

    @classmethod
    def from_options(cls, opts: ServerOptions, *, worker: int | None = None) -> Observability:
        """`worker`: this process's index when it is one of several workers."""
        path = monitoring_config.metrics_path(opts.monitoring_config_file)
        if path and not opts.rest_api_port:
            log.warning("Prometheus metrics are enabled but --rest_api_port is not set; "
                        "they are served on the REST port only")
        access_log = (AccessLog(opts.access_log_file,
                                sampling_rate=opts.access_log_sampling_rate, worker=worker)
                      if opts.access_log_file else None)
        metrics = Metrics()
        return cls(metrics, path, access_log)

    def request_observer(self, is_served: Callable[[str], bool]) -> RequestObserver:
        """Where finished requests go; `is_served` says which model names may become labels."""
        return RequestObserver(self.metrics, self.access_log, is_served=is_served)

    def close(self) -> None:
        if self.access_log is not None:
            self.access_log.close()
