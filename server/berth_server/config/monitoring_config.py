"""`--monitoring_config_file`: TF Serving's MonitoringConfig text proto → the metrics path.

`prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }`; an empty path means
the default. Metrics are served on the REST port only, as in TF Serving.
"""

from __future__ import annotations

from berth_server.config import text_protos
from berth_server.protos import monitoring_pb2

DEFAULT_PATH = "/monitoring/prometheus/metrics"


def metrics_path(config_file: str) -> str | None:
    """The path to serve Prometheus metrics on, or None when they are not enabled."""
    if not config_file:
        return None
    config = text_protos.read_file(config_file, monitoring_pb2.MonitoringConfig(),
                                   type_name="tensorflow.serving.MonitoringConfig")
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    return prometheus.path or DEFAULT_PATH
