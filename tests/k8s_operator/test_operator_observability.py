"""The operator's own observability on the real control plane: Normal events for each rollout
step, and its Prometheus endpoint after reconciles."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import waiting
from kube_control_plane import ControlPlane
from operator_harness import (
    Operator,
    apply,
    kubectl,
    merge_patch,
    model_deployment,
    wait_ready,
    wait_status,
)

FAMILIES = {
    "berth_operator_reconciles",
    "berth_operator_errors",
    "berth_operator_writes",
    "berth_operator_apply_duration_seconds",
    "berth_operator_model_deployments",
}


@pytest.fixture
def berth_operator(
    modeldeployment_crd: ControlPlane, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    """`python -m berth_operator --namespace <ns> --metrics-port <free port>`."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = Operator(modeldeployment_crd, namespace, log, metrics=True)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def normal_events(plane: ControlPlane, namespace: str, name: str) -> list[tuple[str, str]]:
    """(reason, message) of the Normal events about ModelDeployment `name`, oldest first."""
    listed = kubectl(
        plane,
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.kind=ModelDeployment,involvedObject.name={name},type=Normal",
        "-o",
        "json",
    ).stdout
    items = sorted(
        json.loads(listed)["items"],
        key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "",
    )
    return [(e["reason"], e["message"]) for e in items]


def canary(plane: ControlPlane, namespace: str, version: int, weight: int) -> None:
    body = {"spec": {"canary": {"version": version, "weight": weight}}}
    merge_patch(plane, namespace, "md", "fraud", body)
    wait_status(
        plane,
        namespace,
        "fraud",
        lambda s: s.get("canary", {}).get("readyReplicas") == 1 and s.get("weight") == weight,
        what=f"canary {version} ready with weight {weight}",
    )


def no_canary(plane: ControlPlane, namespace: str, what: str) -> None:
    wait_status(plane, namespace, "fraud", lambda s: "canary" not in s, what=what)


def test_rollout_steps_are_reported_as_normal_events(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(control_plane, namespace, model_deployment("fraud"))
    wait_ready(control_plane, namespace, "fraud")
    canary(control_plane, namespace, 2, 20)
    kubectl(control_plane, "berth", "promote", "fraud", "-n", namespace)
    no_canary(control_plane, namespace, "the promoted canary gone")
    canary(control_plane, namespace, 3, 10)
    kubectl(control_plane, "berth", "rollback", "fraud", "-n", namespace)
    no_canary(control_plane, namespace, "the withdrawn canary gone")

    wanted = [
        ("CanaryStarted", "canary version 2 started beside stable version 1"),
        ("WeightApplied", "canary version 2 takes 20% of traffic, stable version 1 80% (was 0%)"),
        ("Promoted", "canary version 2 promoted to stable (was version 1)"),
        ("CanaryStarted", "canary version 3 started beside stable version 2"),
        ("RolledBack", "canary version 3 withdrawn; traffic returns to stable version 2"),
    ]
    events = waiting.wait_for(
        lambda: normal_events(control_plane, namespace, "fraud"),
        until=lambda seen: all(event in seen for event in wanted),
        timeout_seconds=30,
        message="a Normal event for each rollout step",
        interval_seconds=0.5,
    )
    reasons = [reason for reason, _ in events]
    assert reasons.index("Promoted") < reasons.index("RolledBack")
    assert {reason for reason, _ in events} <= {
        "CanaryStarted",
        "WeightApplied",
        "Promoted",
        "RolledBack",
    }


def test_the_metrics_endpoint_reports_reconciles_writes_and_conditions(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(control_plane, namespace, model_deployment("fraud"))
    wait_ready(control_plane, namespace, "fraud")
    ready = {"namespace": namespace, "condition": "Ready", "status": "True"}

    def counted() -> dict[str, list[tuple[dict[str, str], float]]] | None:
        found = berth_operator.samples()
        gauge = found["berth_operator_model_deployments"]
        return found if any(ready.items() <= labels.items() for labels, _ in gauge) else None

    found = waiting.wait_for(
        counted, timeout_seconds=30, message="the Ready gauge", interval_seconds=0.5
    )
    assert FAMILIES <= found.keys()
    reconciles = {k["result"]: v for k, v in found["berth_operator_reconciles_total"]}
    assert reconciles["ok"] >= 1
    assert reconciles["error"] == 0
    writes = {(k["kind"], k["verb"]): v for k, v in found["berth_operator_writes_total"]}
    assert writes[("Deployment", "apply")] >= 1
    assert writes[("ModelDeployment", "patch_status")] >= 1
    applies = {k["kind"]: v for k, v in found["berth_operator_apply_duration_seconds_count"]}
    assert applies["Deployment"] == writes[("Deployment", "apply")]
    gauge = [
        (k, v) for k, v in found["berth_operator_model_deployments"] if k["condition"] == "Ready"
    ]
    assert gauge == [({**ready, "reason": "StableAvailable"}, 1.0)]

    kubectl(control_plane, "delete", "md", "fraud", "-n", namespace, "--wait", "--timeout=60s")
    waiting.wait_for(
        lambda: berth_operator.samples()["berth_operator_model_deployments"],
        until=lambda gauge: gauge == [],
        timeout_seconds=30,
        message="the deleted ModelDeployment gone from the gauge",
        interval_seconds=0.5,
    )
