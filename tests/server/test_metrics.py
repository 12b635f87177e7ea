"""Prometheus metrics: TF Serving's names, labels and text format, and numbers that move."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import tensorflow as tf
import waiting
from server_http import get, post
from tensorflow_serving.apis import predict_pb2

from berth_server.observability import exposition, metrics

if TYPE_CHECKING:
    from conftest import ServerProcess

METRICS_PATH = "/monitoring/prometheus/metrics"
_SAMPLE = re.compile(r'^(?P<name>[:a-zA-Z_][:a-zA-Z0-9_]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, exported_models: Path,
           start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    config = tmp_path_factory.mktemp("monitoring") / "monitoring.config"
    config.write_text(f'prometheus_config {{ enable: true, path: "{METRICS_PATH}" }}\n')
    return start_module_server(f"--model_config_file={exported_models / 'models.config'}",
                               f"--monitoring_config_file={config}")


def scrape(server: ServerProcess) -> dict[str, list[tuple[dict[str, str], str]]]:
    """Samples by name, each with its labels and value text."""
    reply = get(server.rest_port, METRICS_PATH)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[tuple[dict[str, str], str]]] = {}
    for line in reply.body.decode().splitlines():
        assert not line.startswith("# HELP"), line
        if line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, line
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
        samples.setdefault(match["name"], []).append((labels, match["value"]))
    return samples


def value(samples: dict[str, list[tuple[dict[str, str], str]]], name: str,
          **labels: str) -> float:
    for sample_labels, text in samples.get(name, []):
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            return float(text)
    return 0.0


def grpc_predict(server: ServerProcess, model: str) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]], dtype=tf.float32))
    server.predict.Predict(request, timeout=30)


def test_request_count_and_latency_move_for_rest_and_grpc(server: ServerProcess) -> None:
    before = scrape(server)
    for _ in range(3):
        assert post(server.rest_port, "/v1/models/half_plus_two:predict",
                    {"instances": [1.0]}).status == 200
    grpc_predict(server, "half_plus_two")
    assert get(server.rest_port, "/v1/models/half_plus_two").status == 200
    after = scrape(server)
    count = ":tensorflow:serving:request_count"
    assert value(after, count, model_name="half_plus_two", status="OK") - \
        value(before, count, model_name="half_plus_two", status="OK") == 5
    latency = ":tensorflow:serving:request_latency_count"
    assert value(after, latency, model_name="half_plus_two", API="predict",
                 entrypoint="REST") - value(before, latency, model_name="half_plus_two",
                                            API="predict", entrypoint="REST") == 3
    assert value(after, latency, model_name="half_plus_two", API="Predict",
                 entrypoint="GRPC") >= 1
    assert value(after, latency, model_name="half_plus_two", API="", entrypoint="REST") >= 1
    assert value(after, ":tensorflow:serving:runtime_latency_count", model_name="half_plus_two",
                 API="Predict", runtime="TF1") >= 4


def test_failed_requests_are_counted_by_status_but_not_timed(server: ServerProcess) -> None:
    def failures() -> float:
        return value(scrape(server), ":tensorflow:serving:request_count",
                     model_name="half_plus_three", status="INVALID_ARGUMENT")

    before = failures()
    assert post(server.rest_port, "/v1/models/half_plus_three:predict",
                {"instances": "not a list"}).status == 400
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_three"  # and no inputs
    with pytest.raises(grpc.RpcError):
        server.predict.Predict(request, timeout=30)
    # grpc.aio puts an aborted call's status on the wire before the handler's `finally` runs,
    # so the count may trail the client's error by a moment.
    waiting.wait_for(failures, until=lambda count: count == before + 2, timeout_seconds=60,
                     interval_seconds=0.05, message="both failures in request_count")
    samples = scrape(server)
    assert value(samples, ":tensorflow:serving:request_latency_count",
                 model_name="half_plus_three") == 0


def test_requests_for_models_not_served_count_under_no_name(server: ServerProcess) -> None:
    """A made-up model name never becomes a label: clients cannot grow the metrics."""

    def unknown() -> float:
        return value(scrape(server), ":tensorflow:serving:request_count", model_name="",
                     status="NOT_FOUND")

    before = unknown()
    assert post(server.rest_port, "/v1/models/missing:predict", {"instances": [1]}).status == 404
    with pytest.raises(grpc.RpcError):
        grpc_predict(server, "missing")
    waiting.wait_for(unknown, until=lambda count: count == before + 2, timeout_seconds=60,
                     interval_seconds=0.05, message="both failures under model_name=\"\"")
    assert "missing" not in get(server.rest_port, METRICS_PATH).body.decode()


def test_latency_histogram_has_tf_servings_buckets(server: ServerProcess) -> None:
    post(server.rest_port, "/v1/models/half_plus_two:predict", {"instances": [1.0]})
    text = get(server.rest_port, METRICS_PATH).body.decode()
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    bounds = re.findall(r':tensorflow:serving:request_latency_bucket\{model_name="half_plus_two",'
                        r'API="predict",entrypoint="REST",le="([^"]+)"\}', text)
    assert bounds[:4] == ["10", "18", "32.4", "58.32"]
    assert len(bounds) == 34 and bounds[-1] == "+Inf"
    assert ":tensorflow:serving:request_count_total" not in text
    assert "_created" not in text


def test_model_life_cycle_metrics(server: ServerProcess) -> None:
    samples = scrape(server)
    assert value(samples, ":berth:serving:model_version_state", model_name="two_versions",
                 version="124") == 30
    assert value(samples, ":berth:serving:model_load_latency_count", model_name="half_plus_two",
                 status="OK") == 1
    assert ":tensorflow:serving:model_warmup_latency_count" in samples
    assert value(samples, ":berth:serving:queue_depth", model_name="half_plus_two") == 0
    for name in ("wrapped_run_count", "input_batch_size_count"):
        assert f":tensorflow:serving:batching_session:{name}" in samples


def test_metrics_are_off_without_a_monitoring_config(exported_models: Path,
                                                     start_server: Callable[..., Any]) -> None:
    plain = start_server(f"--model_base_path={exported_models / 'half_plus_two'}",
                         "--model_name=half_plus_two")
    assert get(plain.rest_port, METRICS_PATH).status == 404


def test_a_custom_metrics_path_is_served(tmp_path: Path, exported_models: Path,
                                         start_server: Callable[..., Any]) -> None:
    config = tmp_path / "monitoring.config"
    config.write_text('prometheus_config { enable: true, path: "/custom/metrics" }')
    custom = start_server(f"--model_base_path={exported_models / 'half_plus_two'}",
                          f"--monitoring_config_file={config}")
    assert get(custom.rest_port, "/custom/metrics").status == 200
    assert get(custom.rest_port, METRICS_PATH).status == 404


def test_exposition_escapes_label_values_and_formats_bounds() -> None:
    registry = metrics.Metrics()
    registry.record_request('we"ird\\name', "OK", "predict", "REST", 2e9)
    text = exposition.render(registry.registry).decode()
    assert ':tensorflow:serving:request_count{model_name="we\\"ird\\\\name",status="OK"} 1' in text
    assert 'le="1.47476e+09"} 0' in text
    assert 'le="+Inf"} 1' in text


def test_a_broken_monitoring_config_stops_startup(tmp_path: Path, exported_models: Path,
                                                  start_server: Callable[..., Any]) -> None:
    config = tmp_path / "monitoring.config"
    config.write_text("prometheus_config { enable: maybe }")
    server = start_server(f"--model_base_path={exported_models / 'half_plus_two'}",
                          f"--monitoring_config_file={config}", wait=False)
    assert server.process.wait(timeout=90) != 0
    assert "Failed to start server" in server.log()
    assert "MonitoringConfig" in server.log()
