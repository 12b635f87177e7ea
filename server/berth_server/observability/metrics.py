"""TF Serving's Prometheus metrics, with its names and labels, plus what TF Serving lacks.

Everything lives in one `CollectorRegistry` of its own (never the process-global one), rendered
in TF Serving's text format by `exposition`. Names follow TF Serving's exporter: the TF metric
path with `/` turned into `:` (`:tensorflow:serving:request_count`); Berth's additions use the
same spelling under `:berth:serving:` so nobody mistakes them for TF Serving's.

Hot path: prometheus-client's metric objects cost ~1 µs per increment and 2–3 µs per histogram
observation (a lock per value, a linear bucket scan), too much for thousands of REST requests a
second. So the per-request metrics (request_count, request_latency, runtime_latency, queue
depth) are plain counters behind a custom collector: a dict lookup, a bisect and two additions
(~1 µs a request). They are recorded and collected on the event loop only. The rest (model life
cycle, batching) use prometheus-client's thread-safe objects: the batching threads may call in.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from berth_server.core.servable_state import ServableId, State


def exponential_buckets(scale: float, growth: float, count: int) -> list[float]:
    """TF monitoring's `Buckets::Exponential`: `count` finite bounds scale·growth^i."""
    return [scale * growth**i for i in range(count)]


LATENCY_BUCKETS_MICROS = exponential_buckets(10, 1.8, 33)
QUEUING_BUCKETS_MICROS = exponential_buckets(100, 1.2, 52)
BATCH_SIZE_BUCKETS = exponential_buckets(1, 2, 14)
LOAD_BUCKETS_MICROS = exponential_buckets(1000, 2, 24)  # 1 ms … ~2.3 h

_TFS = ":tensorflow:serving:"
_BERTH = ":berth:serving:"
# Gauges holding a version's life-cycle state: across workers they merge to the state every
# worker has reached (`merge`); every other gauge is a quantity and adds up.
STATE_GAUGES = frozenset({_BERTH + "model_version_state"})


class _Histogram:
    """One label set's buckets (non-cumulative counts; the last one is +Inf) and sum."""

    __slots__ = ("counts", "total")

    def __init__(self, bucket_count: int) -> None:
        self.counts = [0] * (bucket_count + 1)
        self.total = 0.0


class _RequestCollector(Collector):
    """The per-request metrics as plain numbers, exported through prometheus-client."""

    def __init__(self) -> None:
        self.request_count: dict[tuple[str, str], int] = {}
        self.request_latency: dict[tuple[str, str, str], _Histogram] = {}
        self.runtime_latency: dict[tuple[str, str, str], _Histogram] = {}
        self.queue_depth: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        count = CounterMetricFamily(_TFS + "request_count", "", labels=["model_name", "status"])
        for labels, value in list(self.request_count.items()):
            count.add_metric(labels, value)
        yield count
        yield _histogram_family(_TFS + "request_latency", ["model_name", "API", "entrypoint"],
                                self.request_latency)
        yield _histogram_family(_TFS + "runtime_latency", ["model_name", "API", "runtime"],
                                self.runtime_latency)
        depth = GaugeMetricFamily(_BERTH + "queue_depth", "", labels=["model_name"])
        for name, value in list(self.queue_depth.items()):
            depth.add_metric([name], value)
        yield depth


def _histogram_family(name: str, label_names: Sequence[str],
                      children: dict[tuple[str, str, str], _Histogram]) -> Metric:
    family = HistogramMetricFamily(name, "", labels=label_names)
    for labels, histogram in list(children.items()):
        cumulative, buckets = 0, []
        for bound, count in zip([*LATENCY_BUCKETS_MICROS, float("inf")], histogram.counts,
                                strict=True):
            cumulative += count
            buckets.append((repr(bound), cumulative))
        family.add_metric(list(labels), buckets, histogram.total)
    return family


class BatchingMetrics:
    """The batching layer's recorder: TF Serving's `batching_session` metrics.

    Call `record_batch` once per executed batch and `record_queuing_latency` once per task
    taken off a queue; both are safe from any thread.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        prefix = _TFS + "batching_session:"
        self._queuing_latency = Histogram(prefix + "queuing_latency", "", ["thread_pool_name"],
                                          buckets=QUEUING_BUCKETS_MICROS, registry=registry)
        self._wrapped_run_count = Counter(prefix + "wrapped_run_count", "", registry=registry)
        self._input_batch_size = Histogram(prefix + "input_batch_size", "",
                                           buckets=BATCH_SIZE_BUCKETS, registry=registry)
        self._processed_batch_size = Histogram(prefix + "processed_batch_size", "",
                                               buckets=BATCH_SIZE_BUCKETS, registry=registry)
        self._padding_size = Histogram(prefix + "padding_size", "", ["execution_batch_size"],
                                       buckets=BATCH_SIZE_BUCKETS, registry=registry)

    def record_queuing_latency(self, micros: float, *, thread_pool_name: str = "") -> None:
        self._queuing_latency.labels(thread_pool_name).observe(micros)

    def record_wrapped_run(self, input_batch_size: int) -> None:
        """One request entered the batching session with this many rows."""
        self._wrapped_run_count.inc()
        self._input_batch_size.observe(input_batch_size)

    def record_batch(self, processed_batch_size: int, padding_size: int) -> None:
        """One batch ran, padded up to `processed_batch_size` with `padding_size` rows."""
        self._processed_batch_size.observe(processed_batch_size)
        self._padding_size.labels(str(processed_batch_size)).observe(padding_size)


class Metrics:
    """The server's metrics; one instance per server, shared by every transport."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self._requests = _RequestCollector()
        r.register(self._requests)
        self.queue_depth = self._requests.queue_depth
        self._warmup_latency = Histogram(_TFS + "model_warmup_latency", "",
                                         ["model_path", "status"],
                                         buckets=LATENCY_BUCKETS_MICROS, registry=r)
        self._warmup_records = Counter(_TFS + "model_warmup_records_read", "",
                                       ["model_path", "status"], registry=r)
        self.batching = BatchingMetrics(r)
        self._load_latency = Histogram(_BERTH + "model_load_latency", "",
                                       ["model_name", "status"],
                                       buckets=LOAD_BUCKETS_MICROS, registry=r)
        self._version_state = Gauge(_BERTH + "model_version_state", "",
                                    ["model_name", "version"], registry=r)
        self._loading_since: dict[ServableId, float] = {}

    # -- per request (event loop only) ----------------------------------------------------

    def record_request(self, model_name: str, status: str, api: str, entrypoint: str,
                       latency_micros: float) -> None:
        """TF Serving's request_count, and request_latency for successful requests."""
        counts = self._requests.request_count
        key = (model_name, status)
        counts[key] = counts.get(key, 0) + 1
        if status == "OK":
            _observe(self._requests.request_latency, (model_name, api, entrypoint),
                     latency_micros)

    def record_runtime(self, model_name: str, api: str, micros: float) -> None:
        """Time spent running the model (TF Serving's `session.Run` time; runtime TF1)."""
        _observe(self._requests.runtime_latency, (model_name, api, "TF1"), micros)

    # -- model life cycle -------------------------------------------------------------------

    def record_warmup(self, model_path: str, status: str, micros: float, records: int) -> None:
        self._warmup_latency.labels(model_path, status).observe(micros)
        self._warmup_records.labels(model_path, status).inc(records)

    def on_state_change(self, servable_id: ServableId, state: State) -> None:
        """The manager's `on_change` hook: version state gauge and load latency."""
        self._version_state.labels(servable_id.name, str(servable_id.version)).set(int(state))
        now = time.perf_counter()
        if state == State.LOADING:
            self._loading_since[servable_id] = now
            return
        started = self._loading_since.pop(servable_id, None)
        if started is not None and state in (State.AVAILABLE, State.END):
            status = "OK" if state == State.AVAILABLE else "FAILED"
            self._load_latency.labels(servable_id.name, status).observe((now - started) * 1e6)


def _observe(children: dict[tuple[str, str, str], _Histogram], labels: tuple[str, str, str],
             value: float) -> None:
    histogram = children.get(labels)
    if histogram is None:
        histogram = children[labels] = _Histogram(len(LATENCY_BUCKETS_MICROS))
    histogram.counts[bisect.bisect_left(LATENCY_BUCKETS_MICROS, value)] += 1
    histogram.total += value
