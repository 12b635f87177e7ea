"""Children are repaired when deleted or edited by hand, and removed with their owner."""

from __future__ import annotations

import functools

import waiting
from kube_control_plane import ControlPlane
from operator_harness import (
    Operator,
    apply,
    backend_weights,
    get,
    gone,
    kubectl,
    merge_patch,
    model_deployment,
    wait_ready,
)

CHILDREN = (
    ("deployment", "fraud-stable"),
    ("service", "fraud-stable"),
    ("service", "fraud"),
    ("configmap", "fraud-config"),
    ("httproute", "fraud-http"),
    ("grpcroute", "fraud-grpc"),
    ("poddisruptionbudget", "fraud"),
)


def test_a_hand_deleted_child_is_restored(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(control_plane, namespace, model_deployment("fraud"))
    wait_ready(control_plane, namespace, "fraud")
    before = {
        kind: (get(control_plane, namespace, kind, name) or {})["metadata"]["uid"]
        for kind, name in (("deployment", "fraud-stable"), ("configmap", "fraud-config"))
    }
    kubectl(
        control_plane,
        "delete",
        "deployment/fraud-stable",
        "configmap/fraud-config",
        "-n",
        namespace,
    )

    for kind, name in (("deployment", "fraud-stable"), ("configmap", "fraud-config")):
        restored = waiting.wait_for(
            functools.partial(get, control_plane, namespace, kind, name),
            timeout_seconds=30,
            message=f"{kind}/{name} restored",
            interval_seconds=0.5,
        )
        assert restored["metadata"]["uid"] != before[kind]
    wait_ready(control_plane, namespace, "fraud")


def test_a_hand_edited_child_is_repaired(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(control_plane, namespace, model_deployment("fraud"))
    wait_ready(control_plane, namespace, "fraud")
    route_patch = {
        "spec": {
            "rules": [
                {
                    "backendRefs": [
                        {"name": "fraud-stable", "port": 8501, "weight": 10},
                        {"name": "elsewhere", "port": 8501, "weight": 90},
                    ]
                }
            ]
        }
    }
    merge_patch(control_plane, namespace, "httproute", "fraud-http", route_patch)
    kubectl(
        control_plane,
        "set",
        "image",
        "deployment/fraud-stable",
        "server=evil:latest",
        "-n",
        namespace,
    )

    waiting.wait_for(
        lambda: backend_weights(control_plane, namespace, "fraud-http") == {"fraud-stable": 100},
        timeout_seconds=30,
        message="route repaired",
        interval_seconds=0.5,
    )

    def image() -> str:
        deployment = get(control_plane, namespace, "deployment", "fraud-stable") or {}
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    waiting.wait_for(
        lambda: image() != "evil:latest",
        timeout_seconds=30,
        message="image repaired",
        interval_seconds=0.5,
    )


def test_deleting_the_model_deployment_removes_every_child(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(control_plane, namespace, model_deployment("fraud", canary={"version": 2, "weight": 5}))
    wait_ready(control_plane, namespace, "fraud")
    waiting.wait_for(
        lambda: get(control_plane, namespace, "deployment", "fraud-canary"),
        timeout_seconds=30,
        message="canary Deployment",
        interval_seconds=0.5,
    )
    for kind, name in CHILDREN:
        assert get(control_plane, namespace, kind, name) is not None, f"{kind}/{name}"

    kubectl(control_plane, "delete", "md", "fraud", "-n", namespace, "--timeout=60s")
    for kind, name in (*CHILDREN, ("deployment", "fraud-canary")):
        waiting.wait_for(
            functools.partial(gone, control_plane, namespace, kind, name),
            timeout_seconds=60,
            message=f"{kind}/{name} garbage-collected",
            interval_seconds=0.5,
        )
    pods = kubectl(control_plane, "get", "pods", "-n", namespace, "-o", "name").stdout.split()
    waiting.wait_for(
        lambda: (
            not kubectl(control_plane, "get", "pods", "-n", namespace, "-o", "name").stdout.split()
        ),
        timeout_seconds=60,
        message=f"pods gone ({pods})",
        interval_seconds=0.5,
    )
