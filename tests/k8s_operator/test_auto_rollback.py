"""A canary that never becomes ready gets no traffic and is rolled back after its deadline."""

from __future__ import annotations

import json

import waiting
from kube_control_plane import ControlPlane
from operator_harness import (
    Operator,
    apply,
    backend_weights,
    condition,
    fill_pod_quota,
    get,
    kubectl,
    merge_patch,
    model_deployment,
    wait_ready,
    wait_status,
)

DEADLINE_SECONDS = 8


def test_a_canary_that_never_gets_ready_is_rolled_back_by_the_operator(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(
        control_plane,
        namespace,
        model_deployment("fraud", progressDeadlineSeconds=DEADLINE_SECONDS),
    )
    wait_ready(control_plane, namespace, "fraud")
    # The namespace is full: the canary's pod can never be created (as with an exhausted quota).
    fill_pod_quota(control_plane, namespace, 1)

    merge_patch(
        control_plane, namespace, "md", "fraud", {"spec": {"canary": {"version": 2, "weight": 50}}}
    )
    waiting.wait_for(
        lambda: get(control_plane, namespace, "deployment", "fraud-canary"),
        timeout_seconds=30,
        message="canary Deployment",
        interval_seconds=0.5,
    )
    assert backend_weights(control_plane, namespace, "fraud-http") == {
        "fraud-stable": 100,
        "fraud-canary": 0,
    }

    md = wait_status(
        control_plane,
        namespace,
        "fraud",
        lambda s: "rolledBackCanary" in s,
        timeout=DEADLINE_SECONDS + 30,
        what="automatic rollback",
    )
    assert md["status"]["rolledBackCanary"]["version"] == 2
    degraded = condition(md, "Degraded") or {}
    assert (degraded.get("status"), degraded.get("reason")) == ("True", "CanaryRolledBack")
    assert (condition(md, "Ready") or {}).get("status") == "True"
    assert md["spec"]["canary"]["version"] == 2 and md["status"]["weight"] == 0
    waiting.wait_for(
        lambda: get(control_plane, namespace, "deployment", "fraud-canary") is None,
        timeout_seconds=30,
        message="canary Deployment removed",
        interval_seconds=0.5,
    )
    wait_status(
        control_plane, namespace, "fraud", lambda s: "canary" not in s, what="canary drained"
    )
    assert backend_weights(control_plane, namespace, "fraud-http") == {"fraud-stable": 100}
    events = waiting.wait_for(
        lambda: json.loads(
            kubectl(
                control_plane,
                "get",
                "events",
                "-n",
                namespace,
                "-o",
                "json",
                "--field-selector",
                "reason=CanaryRolledBack",
            ).stdout
        )["items"],
        timeout_seconds=30,
        message="CanaryRolledBack event",
        interval_seconds=0.5,
    )
    assert events[0]["type"] == "Warning"
    assert events[0]["involvedObject"]["name"] == "fraud"

    kubectl(
        control_plane,
        "patch",
        "md",
        "fraud",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op": "remove", "path": "/spec/canary"}]',
    )
    wait_status(
        control_plane,
        namespace,
        "fraud",
        lambda s: (
            "rolledBackCanary" not in s
            and (condition({"status": s}, "Degraded") or {}).get("status") == "False"
        ),
        what="rollback record cleared once the canary is removed",
    )
