"""The operator's own Prometheus metrics, on a registry of their own, served on `--metrics-port`.

Counted where the work happens (`handlers`): reconciles by result, errors by reason, API writes
by kind and verb, the latency of each server-side apply. The ModelDeployments gauge is computed
at scrape time from the conditions last seen on each object (fed by a watch handler), so a
deleted object drops out with its watch event. Safe to update from the event loop and from
worker threads; scrapes run on the HTTP server's own thread.
"""

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, get_args
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "berth_operator"
Result = Literal["ok", "invalid_spec", "apply_failed", "error"]
"""How a reconcile ended: children converged, spec refused, some children refused, or raised
(kopf retries it)."""
ErrorReason = Literal["InvalidSpec", "ApplyRefused", "ApiError", "InternalError"]
Verb = Literal["apply", "delete", "patch_status"]
APPLY_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ConditionCollector(Collector):
    """`berth_operator_model_deployments{namespace, condition, status, reason}`: how many
    ModelDeployments carry each condition, as their last seen status says."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
        self._lock = threading.Lock()

    def observe(self, namespace: str, name: str, conditions: Sequence[Mapping[str, Any]]) -> None:
        rows = [(c["type"], c["status"], c.get("reason", "")) for c in conditions if "type" in c]
        with self._lock:
            self._seen[(namespace, name)] = rows

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._seen.pop((namespace, name), None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            counts = Counter(
                (namespace, *row) for (namespace, _), rows in self._seen.items() for row in rows
            )
        family = GaugeMetricFamily(
            f"{PREFIX}_model_deployments",
            "ModelDeployments by condition type, status and reason.",
            labels=["namespace", "condition", "status", "reason"],
        )
        for labels, count in sorted(counts.items()):
            family.add_metric(list(labels), count)
        yield family


class OperatorMetrics:
    """Every metric the operator exports, registered on `registry` (never the global one, so
    two operators in one process, as in tests, do not collide)."""

    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self.reconciles = prometheus_client.Counter(
            f"{PREFIX}_reconciles",
            "Reconciles of a ModelDeployment, by result.",
            ["result"],
            registry=self.registry,
        )
        self.errors = prometheus_client.Counter(
            f"{PREFIX}_errors",
            "Errors met while reconciling, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.writes = prometheus_client.Counter(
            f"{PREFIX}_writes",
            "API writes by object kind and verb; a steady operator makes none.",
            ["kind", "verb"],
            registry=self.registry,
        )
        self.apply_seconds = prometheus_client.Histogram(
            f"{PREFIX}_apply_duration_seconds",
            "Latency of one server-side apply of a child object, by kind.",
            ["kind"],
            buckets=APPLY_BUCKETS_SECONDS,
            registry=self.registry,
        )
        self.conditions = ConditionCollector()
        self.registry.register(self.conditions)
        for result in get_args(Result):
            self.reconciles.labels(result)
        for reason in get_args(ErrorReason):
            self.errors.labels(reason)

    def reconciled(self, result: Result) -> None:
        self.reconciles.labels(result).inc()

    def error(self, reason: ErrorReason, count: int = 1) -> None:
        self.errors.labels(reason).inc(count)

    def wrote(self, kind: str, verb: Verb) -> None:
        self.writes.labels(kind, verb).inc()

    @contextlib.contextmanager
    def applying(self, kind: str) -> Iterator[None]:
        """Count one apply of `kind` and time it, refused or not."""
        self.wrote(kind, "apply")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.apply_seconds.labels(kind).observe(time.perf_counter() - start)


class MetricsServer:
    """The HTTP endpoint (any path answers, `/metrics` by convention) on its own daemon thread."""

    def __init__(self, metrics: OperatorMetrics, *, port: int, host: str = "0.0.0.0") -> None:
        server, thread = prometheus_client.start_http_server(
            port, addr=host, registry=metrics.registry
        )
        self._server: WSGIServer = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
