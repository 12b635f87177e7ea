"""operator_metrics: the families, their names and labels, and the HTTP endpoint on port 0."""

import urllib.request

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from berth_operator import operator_metrics

Samples = dict[str, list[tuple[dict[str, str], float]]]


def samples(metrics: operator_metrics.OperatorMetrics) -> Samples:
    """Scraped text → {sample name: [(labels, value)]}."""
    text = prometheus_client.generate_latest(metrics.registry).decode()
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        found.setdefault(family.name, [])
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def test_every_family_is_exported_before_anything_happened() -> None:
    found = samples(operator_metrics.OperatorMetrics())
    assert {
        "berth_operator_reconciles",
        "berth_operator_errors",
        "berth_operator_writes",
        "berth_operator_apply_duration_seconds",
        "berth_operator_model_deployments",
    } <= found.keys()
    results = {labels["result"] for labels, _ in found["berth_operator_reconciles_total"]}
    assert results == {"ok", "invalid_spec", "apply_failed", "error"}


def test_applies_count_as_writes_and_are_timed_even_when_refused() -> None:
    metrics = operator_metrics.OperatorMetrics()
    with metrics.applying("Service"):
        pass
    with pytest.raises(RuntimeError), metrics.applying("Service"):
        raise RuntimeError("refused")
    metrics.wrote("Deployment", "delete")
    found = samples(metrics)
    writes = {(k["kind"], k["verb"]): v for k, v in found["berth_operator_writes_total"]}
    assert writes == {("Service", "apply"): 2, ("Deployment", "delete"): 1}
    assert found["berth_operator_apply_duration_seconds_count"] == [({"kind": "Service"}, 2)]


def test_the_conditions_gauge_counts_objects_and_forgets_deleted_ones() -> None:
    metrics = operator_metrics.OperatorMetrics()
    ready = [{"type": "Ready", "status": "True", "reason": "StableAvailable"}]
    metrics.conditions.observe("ns", "a", ready)
    metrics.conditions.observe("ns", "b", ready)
    metrics.conditions.observe("ns", "b", ready)
    labels = {
        "namespace": "ns",
        "condition": "Ready",
        "status": "True",
        "reason": "StableAvailable",
    }
    assert samples(metrics)["berth_operator_model_deployments"] == [(labels, 2.0)]
    metrics.conditions.forget("ns", "a")
    metrics.conditions.forget("ns", "b")
    assert samples(metrics)["berth_operator_model_deployments"] == []


def test_the_endpoint_serves_the_registry_and_closes() -> None:
    metrics = operator_metrics.OperatorMetrics()
    metrics.reconciled("ok")
    server = operator_metrics.MetricsServer(metrics, port=0, host="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    finally:
        server.close()
    assert 'berth_operator_reconciles_total{result="ok"} 1.0' in text
