"""Autoscaling on the control plane: hand-over to the autoscaler, both tracks, and its schema."""

from __future__ import annotations

import json
from typing import Any

import pytest
import waiting
from kube_control_plane import ControlPlane
from operator_harness import (
    CPU,
    Operator,
    apply,
    autoscaled,
    get,
    kubectl,
    model_deployment,
    replica_counts,
    wait_ready,
    wait_status,
)


def test_handing_replicas_to_the_autoscaler_never_lowers_them(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(control_plane, namespace, model_deployment("handed", replicas=3, resources=CPU))
    wait_ready(control_plane, namespace, "handed", timeout=180)
    with replica_counts(control_plane, namespace, "handed-stable") as seen:
        scaling = {"minReplicas": 1, "maxReplicas": 5}
        apply(control_plane, namespace, autoscaled("handed", autoscaling=scaling))
        wait_ready(control_plane, namespace, "handed", timeout=180)
        assert get(control_plane, namespace, "hpa", "handed") is not None
        # A rollout re-applies the Deployment, now without replicas.
        apply(
            control_plane,
            namespace,
            autoscaled("handed", autoscaling=scaling, stable={"version": 2}),
        )
        wait_ready(control_plane, namespace, "handed", timeout=180)
    assert min(seen) == 3, seen
    live = get(control_plane, namespace, "deployment", "handed-stable")
    assert live is not None and live["spec"]["replicas"] == 3


QUEUE_DEPTH: dict[str, Any] = {
    "type": "Pods",
    "pods": {
        "metric": {"name": "berth_serving_queue_depth"},
        "target": {"type": "AverageValue", "averageValue": "10"},
    },
}
MEMORY_UTILIZATION: dict[str, Any] = {
    "type": "Resource",
    "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 70}},
}


def refusal(plane: ControlPlane, namespace: str, manifest: dict[str, Any]) -> str:
    result = kubectl(
        plane, "apply", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False
    )
    assert result.returncode != 0, "accepted"
    return result.stderr


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"autoscaling": {"maxReplicas": 3}, "resources": {}}, "spec.resources.requests.cpu"),
        (
            {
                "autoscaling": {
                    "maxReplicas": 3,
                    "targetCPUUtilizationPercentage": 70,
                    "metrics": [QUEUE_DEPTH],
                },
                "resources": {"requests": {"memory": "1Gi"}},
            },
            "spec.resources.requests.cpu",
        ),
        (
            {"autoscaling": {"maxReplicas": 3, "metrics": [MEMORY_UTILIZATION]}},
            "spec.resources.requests must hold",
        ),
        (
            {"autoscaling": {"maxReplicas": 3, "metrics": [{"type": "Pods"}]}},
            "spec.autoscaling.metrics[0]",
        ),
        (
            {
                "autoscaling": {
                    "maxReplicas": 3,
                    "metrics": [
                        {
                            "type": "Pods",
                            "pods": {
                                **QUEUE_DEPTH["pods"],
                                "target": {"type": "Utilization", "averageUtilization": 50},
                            },
                        }
                    ],
                }
            },
            "spec.autoscaling.metrics[0].pods.target",
        ),
        (
            {"autoscaling": {"maxReplicas": 3, "canary": {"minReplicas": 4, "maxReplicas": 3}}},
            "spec.autoscaling.canary.minReplicas",
        ),
    ],
)
def test_the_api_server_refuses_an_autoscaler_it_could_not_run(
    modeldeployment_crd: ControlPlane, namespace: str, spec: dict[str, Any], field: str
) -> None:
    stderr = refusal(modeldeployment_crd, namespace, autoscaled("bad", **spec))
    assert field in stderr, stderr


def test_the_api_server_takes_metrics_behavior_and_canary_bounds_without_a_cpu_request(
    modeldeployment_crd: ControlPlane, namespace: str
) -> None:
    scaling = {
        "maxReplicas": 6,
        "metrics": [QUEUE_DEPTH],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}},
        "canary": {"maxReplicas": 2},
    }
    manifest = autoscaled("queued", autoscaling=scaling)
    manifest["spec"]["resources"] = {"requests": {"memory": "1Gi"}}
    apply(modeldeployment_crd, namespace, manifest)
    stored = get(modeldeployment_crd, namespace, "md", "queued")
    assert stored is not None
    assert stored["spec"]["autoscaling"] == {
        **scaling,
        "minReplicas": 1,
        "canary": {"minReplicas": 1, "maxReplicas": 2},
    }


def test_the_cpu_shortcut_of_existing_specs_is_still_taken(
    modeldeployment_crd: ControlPlane, namespace: str
) -> None:
    scaling = {"minReplicas": 1, "maxReplicas": 4, "targetCPUUtilizationPercentage": 70}
    apply(modeldeployment_crd, namespace, autoscaled("legacy", autoscaling=scaling))


def deployment_replicas(plane: ControlPlane, namespace: str, name: str) -> int | None:
    live = get(plane, namespace, "deployment", name)
    return None if live is None else live["spec"].get("replicas")


def test_both_tracks_get_autoscalers_that_keep_them_within_their_bounds(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    scaling = {
        "minReplicas": 2,
        "maxReplicas": 4,
        "metrics": [QUEUE_DEPTH],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}},
        "canary": {"minReplicas": 2, "maxReplicas": 3},
    }
    apply(
        control_plane,
        namespace,
        autoscaled("both", autoscaling=scaling, canary={"version": 2, "weight": 20}),
    )
    for hpa, target, bounds in (
        ("both", "both-stable", (2, 4)),
        ("both-canary", "both-canary", (2, 3)),
    ):
        live = waiting.wait_for(
            lambda h=hpa: get(control_plane, namespace, "hpa", h),
            timeout_seconds=180,
            interval_seconds=0.5,
            message=f"hpa {hpa}",
        )
        assert live["spec"]["scaleTargetRef"]["name"] == target
        assert (live["spec"]["minReplicas"], live["spec"]["maxReplicas"]) == bounds
        assert live["spec"]["metrics"] == [QUEUE_DEPTH]
        waiting.wait_for(
            lambda t=target: deployment_replicas(control_plane, namespace, t) == 2,
            timeout_seconds=180,
            interval_seconds=1,
            message=f"{target} raised to its autoscaler's minimum",
        )
    wait_status(
        control_plane,
        namespace,
        "both",
        lambda s: s.get("canary", {}).get("readyReplicas") == 2,
        timeout=180,
        what="two canary servers ready",
    )


def test_a_canary_without_bounds_grows_with_stable_by_its_weight(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(
        control_plane,
        namespace,
        autoscaled(
            "shared",
            autoscaling={"minReplicas": 3, "maxReplicas": 6},
            canary={"version": 2, "weight": 50},
        ),
    )
    waiting.wait_for(
        lambda: deployment_replicas(control_plane, namespace, "shared-stable") == 3,
        timeout_seconds=180,
        interval_seconds=1,
        message="stable raised to its autoscaler's minimum",
    )
    waiting.wait_for(
        lambda: deployment_replicas(control_plane, namespace, "shared-canary") == 3,
        timeout_seconds=180,
        interval_seconds=0.5,
        message="the canary at half the traffic as large as stable",
    )
    assert get(control_plane, namespace, "hpa", "shared-canary") is None
