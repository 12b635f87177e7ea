"""Canary rollouts driven with kubectl: weights, promotion, rollback by patch and by the plugin."""

from __future__ import annotations

import json

import waiting
from kube_control_plane import ControlPlane
from operator_harness import (
    Operator,
    apply,
    backend_weights,
    condition,
    get,
    kubectl,
    model_deployment,
    wait_ready,
    wait_status,
)


def patch(
    plane: ControlPlane, namespace: str, name: str, body: object, kind: str = "merge"
) -> None:
    kubectl(plane, "patch", "md", name, "-n", namespace, f"--type={kind}", "-p", json.dumps(body))


def start_canary(plane: ControlPlane, namespace: str, name: str, weight: int) -> None:
    patch(plane, namespace, name, {"spec": {"canary": {"version": 2, "weight": weight}}})
    wait_status(
        plane,
        namespace,
        name,
        lambda s: s.get("canary", {}).get("readyReplicas") == 1 and s.get("weight") == weight,
        what=f"canary ready with weight {weight}",
    )


def test_a_canary_comes_up_takes_its_weight_and_is_promoted(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(control_plane, namespace, model_deployment("fraud"))
    wait_ready(control_plane, namespace, "fraud")

    start_canary(control_plane, namespace, "fraud", 20)
    assert backend_weights(control_plane, namespace, "fraud-http") == {
        "fraud-stable": 80,
        "fraud-canary": 20,
    }
    canary = get(control_plane, namespace, "deployment", "fraud-canary")
    assert canary is not None
    assert canary["spec"]["template"]["metadata"]["labels"]["serving.berth.dev/version"] == "2"

    patch(control_plane, namespace, "fraud", {"spec": {"canary": {"weight": 50}}})
    waiting.wait_for(
        lambda: (
            backend_weights(control_plane, namespace, "fraud-http")
            == {"fraud-stable": 50, "fraud-canary": 50}
        ),
        timeout_seconds=30,
        message="50/50 split",
        interval_seconds=0.5,
    )

    out = kubectl(control_plane, "berth", "promote", "fraud", "-n", namespace).stdout
    assert "stable version is now 2" in out
    md = wait_status(
        control_plane,
        namespace,
        "fraud",
        lambda s: (
            s.get("stable", {}).get("version") == 2
            and "canary" not in s
            and s.get("stable", {}).get("readyReplicas") == 1
        ),
        what="promotion",
    )
    assert [h["version"] for h in md["status"]["history"]] == [1, 2]
    assert "canary" not in md["spec"]
    waiting.wait_for(
        lambda: get(control_plane, namespace, "deployment", "fraud-canary") is None,
        timeout_seconds=30,
        message="canary Deployment removed",
        interval_seconds=0.5,
    )
    assert backend_weights(control_plane, namespace, "fraud-http") == {"fraud-stable": 100}
    stable = get(control_plane, namespace, "deployment", "fraud-stable")
    assert stable is not None
    assert stable["spec"]["template"]["metadata"]["labels"]["serving.berth.dev/version"] == "2"


def test_removing_the_canary_with_kubectl_rolls_back(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(control_plane, namespace, model_deployment("fraud"))
    wait_ready(control_plane, namespace, "fraud")
    start_canary(control_plane, namespace, "fraud", 30)

    patch(control_plane, namespace, "fraud", [{"op": "remove", "path": "/spec/canary"}], "json")
    waiting.wait_for(
        lambda: backend_weights(control_plane, namespace, "fraud-http") == {"fraud-stable": 100},
        timeout_seconds=30,
        message="all traffic back on stable",
        interval_seconds=0.5,
    )
    waiting.wait_for(
        lambda: get(control_plane, namespace, "deployment", "fraud-canary") is None,
        timeout_seconds=30,
        message="canary Deployment removed",
        interval_seconds=0.5,
    )
    md = wait_status(
        control_plane, namespace, "fraud", lambda s: "canary" not in s, what="status without canary"
    )
    assert md["status"]["stable"]["version"] == 1


def test_the_plugin_rolls_back_a_canary_and_to_an_earlier_revision(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(control_plane, namespace, model_deployment("fraud"))
    wait_ready(control_plane, namespace, "fraud")
    start_canary(control_plane, namespace, "fraud", 10)
    kubectl(control_plane, "berth", "promote", "fraud", "-n", namespace)
    wait_status(
        control_plane,
        namespace,
        "fraud",
        lambda s: [h["version"] for h in s.get("history", [])] == [1, 2],
        what="revision 2",
    )

    patch(control_plane, namespace, "fraud", {"spec": {"canary": {"version": 3, "weight": 10}}})
    wait_status(control_plane, namespace, "fraud", lambda s: "canary" in s, what="canary 3")
    out = kubectl(control_plane, "berth", "rollback", "fraud", "-n", namespace).stdout
    assert "canary removed" in out
    wait_status(control_plane, namespace, "fraud", lambda s: "canary" not in s, what="no canary")

    kubectl(control_plane, "berth", "rollback", "fraud", "--to-revision", "1", "-n", namespace)
    md = wait_status(
        control_plane,
        namespace,
        "fraud",
        lambda s: s.get("stable", {}).get("version") == 1 and s["stable"].get("readyReplicas") == 1,
        what="stable back on version 1",
    )
    assert [(h["revision"], h["version"]) for h in md["status"]["history"]] == [
        (1, 1),
        (2, 2),
        (3, 1),
    ]
    assert (condition(md, "Ready") or {}).get("status") == "True"
    history = kubectl(control_plane, "berth", "history", "fraud", "-n", namespace).stdout
    assert [line.split()[:2] for line in history.splitlines()[1:]] == [
        ["1", "1"],
        ["2", "2"],
        ["3", "1"],
    ]
    status = kubectl(control_plane, "berth", "status", "fraud", "-n", namespace).stdout
    assert "stable: version 1, 1/1 ready" in status
