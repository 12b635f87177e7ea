"""`--monitoring_config_file`: TF Serving's MonitoringConfig text proto → the metrics path.

`prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }`; an empty path means
the default. Metrics are served on the REST port only, as in TF Serving.
"""

from __future__ import annotations

from google.protobuf import text_format

from berth_server import errors
from berth_server.protos import monitoring_pb2

DEFAULT_PATH = "/monitoring/prometheus/metrics"


def metrics_path(config_file: str) -> str | None:
    """The path to serve Prometheus metrics on, or None when they are not enabled."""
    if not config_file:
        return None
    try:
        with open(config_file) as handle:
            config = text_format.Parse(handle.read(), monitoring_pb2.MonitoringConfig())
    except OSError as error:
        raise errors.invalid_argument(f"Could not read {config_file}: {error}") from None
    except text_format.ParseError as error:
        raise errors.invalid_argument(
            f"Error parsing text-format tensorflow.serving.MonitoringConfig: {error}") from None
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    return prometheus.path or DEFAULT_PATH
