"""A canary leaves without dropping requests: it drains at weight 0 until the Gateway has taken
the new route, and a promoted canary keeps its share until stable runs its version everywhere."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import waiting
from kube_control_plane import ControlPlane
from operator_harness import (
    DRAIN_SECONDS,
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

GATEWAY = {"parentRef": {"name": "ml", "namespace": "gateways"}, "hostnames": ["a.example.com"]}


def patch_md(plane: ControlPlane, namespace: str, body: object, kind: str = "merge") -> None:
    kubectl(
        plane, "patch", "md", "fraud", "-n", namespace, f"--type={kind}", "-p", json.dumps(body)
    )


def canary_serving(plane: ControlPlane, namespace: str, weight: int) -> None:
    patch_md(plane, namespace, {"spec": {"canary": {"version": 2, "weight": weight}}})
    wait_status(
        plane,
        namespace,
        "fraud",
        lambda s: s.get("canary", {}).get("readyReplicas") == 1 and s.get("weight") == weight,
        what=f"canary ready with weight {weight}",
    )


def report_taken(plane: ControlPlane, namespace: str, generation: int) -> None:
    """The Gateway controller's report: it has programmed `generation` of the HTTPRoute."""
    parent = {
        "parentRef": {"name": "ml", "namespace": "gateways"},
        "controllerName": "example.com/gateway-controller",
        "conditions": [
            {
                "type": "Accepted",
                "status": "True",
                "reason": "Accepted",
                "message": "",
                "observedGeneration": generation,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    merge_patch(
        plane,
        namespace,
        "httproute",
        "fraud-http",
        {"status": {"parents": [parent]}},
        subresource="status",
    )


def route(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    found = get(plane, namespace, "httproute", "fraud-http")
    assert found is not None
    return found


def test_a_removed_canary_goes_only_once_the_gateway_has_taken_its_zero_weight(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(control_plane, namespace, model_deployment("fraud", traffic=GATEWAY))
    wait_ready(control_plane, namespace, "fraud")
    canary_serving(control_plane, namespace, 30)
    report_taken(
        control_plane, namespace, route(control_plane, namespace)["metadata"]["generation"]
    )

    patch_md(control_plane, namespace, [{"op": "remove", "path": "/spec/canary"}], "json")
    md = wait_status(
        control_plane,
        namespace,
        "fraud",
        lambda s: "drainingSince" in s.get("canary", {}),
        what="the canary draining",
    )
    assert md["status"]["weight"] == 0
    waiting.wait_for(
        lambda: (
            backend_weights(control_plane, namespace, "fraud-http")
            == {"fraud-stable": 100, "fraud-canary": 0}
        ),
        timeout_seconds=30,
        message="the route at weight 0 for the canary",
        interval_seconds=0.5,
    )
    draining_since = datetime.fromisoformat(md["status"]["canary"]["drainingSince"])
    waiting.wait_for(
        lambda: (datetime.now(UTC) - draining_since).total_seconds() > DRAIN_SECONDS + 3,
        timeout_seconds=30,
        message="the drain time passed a few resyncs ago",
        interval_seconds=0.5,
    )
    assert get(control_plane, namespace, "deployment", "fraud-canary") is not None, (
        "deleted before the Gateway reported the weight-0 route"
    )

    report_taken(
        control_plane, namespace, route(control_plane, namespace)["metadata"]["generation"]
    )
    waiting.wait_for(
        lambda: get(control_plane, namespace, "deployment", "fraud-canary") is None,
        timeout_seconds=30,
        message="canary Deployment removed",
        interval_seconds=0.5,
    )
    assert backend_weights(control_plane, namespace, "fraud-http") == {"fraud-stable": 100}


def test_a_promoted_canary_keeps_its_share_until_stable_runs_its_version(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(control_plane, namespace, model_deployment("fraud"))
    wait_ready(control_plane, namespace, "fraud")
    canary_serving(control_plane, namespace, 20)
    # No room for stable's surge pod: its rollout to version 2 cannot finish yet.
    fill_pod_quota(control_plane, namespace, 2)

    kubectl(control_plane, "berth", "promote", "fraud", "-n", namespace)
    waiting.wait_for(
        lambda: condition(
            get(control_plane, namespace, "deployment", "fraud-stable"), "ReplicaFailure"
        ),
        timeout_seconds=30,
        message="stable's version 2 pod refused by the quota",
        interval_seconds=0.5,
    )
    wait_status(
        control_plane,
        namespace,
        "fraud",
        lambda s: s.get("observedGeneration") == 3,
        what="the operator has handled the promotion",
    )
    assert backend_weights(control_plane, namespace, "fraud-http") == {
        "fraud-stable": 80,
        "fraud-canary": 20,
    }
    assert get(control_plane, namespace, "deployment", "fraud-canary") is not None

    kubectl(control_plane, "delete", "resourcequota", "full", "-n", namespace)
    waiting.wait_for(
        lambda: get(control_plane, namespace, "deployment", "fraud-canary") is None,
        timeout_seconds=60,
        message="canary removed once stable runs version 2",
        interval_seconds=0.5,
    )
    md = wait_status(
        control_plane,
        namespace,
        "fraud",
        lambda s: "canary" not in s and s.get("stable", {}).get("readyReplicas") == 1,
        what="stable alone on version 2",
    )
    assert md["status"]["stable"]["version"] == 2
    assert backend_weights(control_plane, namespace, "fraud-http") == {"fraud-stable": 100}
