"""Autoscaling: parsing `spec.autoscaling`, the autoscalers of both tracks, replica hand-over."""

from typing import Any

import pytest

from berth_operator import autoscaling, naming, render, spec

OWNER = render.Owner(name="fraud", namespace="ml", uid="uid-1")
BASE: dict[str, Any] = {
    "model": {"name": "fraud", "storage": {"pvc": {"claimName": "models"}}},
    "stable": {"version": 3},
    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
}
QUEUE_DEPTH: dict[str, Any] = {
    "type": "Pods",
    "pods": {
        "metric": {"name": "berth_serving_queue_depth"},
        "target": {"type": "AverageValue", "averageValue": "10"},
    },
}
MEMORY: dict[str, Any] = {
    "type": "Resource",
    "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 70}},
}


def children(
    scaling: dict[str, Any],
    *,
    canary: dict[str, Any] | None = None,
    stable_replicas: int | None = None,
) -> dict[str, Any]:
    raw = {**BASE, "autoscaling": scaling, **({"canary": canary} if canary else {})}
    objs = render.children(
        spec.parse(raw),
        OWNER,
        canary_on=canary is not None,
        weight=0,
        stable_replicas=stable_replicas,
    )
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objs}


def cpu(percent: int) -> dict[str, Any]:
    target = {"type": "Utilization", "averageUtilization": percent}
    return {"type": "Resource", "resource": {"name": "cpu", "target": target}}


def test_without_metrics_the_autoscaler_aims_at_80_percent_cpu() -> None:
    hpa = children({"maxReplicas": 4})["HorizontalPodAutoscaler/fraud"]["spec"]
    assert hpa["metrics"] == [cpu(80)]


def test_the_cpu_shortcut_keeps_working_and_joins_the_metrics() -> None:
    scaling = {"maxReplicas": 4, "targetCPUUtilizationPercentage": 60, "metrics": [QUEUE_DEPTH]}
    hpa = children(scaling)["HorizontalPodAutoscaler/fraud"]["spec"]
    assert hpa["metrics"] == [cpu(60), QUEUE_DEPTH]


def test_metrics_alone_replace_the_cpu_default() -> None:
    scaling = {"maxReplicas": 4, "metrics": [MEMORY, QUEUE_DEPTH]}
    assert children(scaling)["HorizontalPodAutoscaler/fraud"]["spec"]["metrics"] == [
        MEMORY,
        QUEUE_DEPTH,
    ]


def test_behavior_is_given_to_the_autoscaler_as_written() -> None:
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 600}}
    hpa = children({"maxReplicas": 4, "behavior": behavior})["HorizontalPodAutoscaler/fraud"]
    assert hpa["spec"]["behavior"] == behavior
    assert "behavior" not in children({"maxReplicas": 4})["HorizontalPodAutoscaler/fraud"]["spec"]


def test_a_canary_with_bounds_gets_its_own_autoscaler_and_leaves_replicas_to_it() -> None:
    scaling = {"maxReplicas": 8, "metrics": [QUEUE_DEPTH], "canary": {"maxReplicas": 3}}
    objs = children(scaling, canary={"version": 4, "weight": 10})
    hpa = objs["HorizontalPodAutoscaler/fraud-canary"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "fraud-canary"
    assert (hpa["minReplicas"], hpa["maxReplicas"], hpa["metrics"]) == (1, 3, [QUEUE_DEPTH])
    assert "replicas" not in objs["Deployment/fraud-canary"]["spec"]


def test_a_removed_canary_takes_its_autoscaler_with_it() -> None:
    objs = children({"maxReplicas": 8, "canary": {"maxReplicas": 3}})
    assert "HorizontalPodAutoscaler/fraud-canary" not in objs


@pytest.mark.parametrize(
    ("weight", "stable", "floor", "expected"),
    [
        (25, 6, 1, 2),  # a quarter of the traffic: a third of stable's servers, rounded up
        (50, 6, 1, 6),
        (10, 2, 1, 1),
        (0, 6, 1, 1),
        (10, 2, 3, 3),  # canary.replicas is the floor
        (90, 6, 1, 8),  # never above maxReplicas
        (100, 6, 1, 8),
    ],
)
def test_a_canary_without_bounds_follows_its_weight_times_stables_replicas(
    weight: int, stable: int, floor: int, expected: int
) -> None:
    canary = {"version": 4, "weight": weight, "replicas": floor}
    objs = children({"maxReplicas": 8}, canary=canary, stable_replicas=stable)
    assert objs["Deployment/fraud-canary"]["spec"]["replicas"] == expected
    assert "HorizontalPodAutoscaler/fraud-canary" not in objs


def test_a_canary_before_stable_exists_is_sized_from_stables_minimum() -> None:
    objs = children({"minReplicas": 3, "maxReplicas": 8}, canary={"version": 4, "weight": 50})
    assert objs["Deployment/fraud-canary"]["spec"]["replicas"] == 3


def test_a_fixed_size_canary_keeps_its_replicas_without_autoscaling() -> None:
    md = spec.parse({**BASE, "replicas": 6, "canary": {"version": 4, "weight": 50}})
    assert autoscaling.replicas(md, "canary", stable_replicas=6) == 1


@pytest.mark.parametrize(
    ("scaling", "field"),
    [
        ({"maxReplicas": 3, "metrics": [{"type": "Object"}]}, "spec.autoscaling.metrics[0].type"),
        ({"maxReplicas": 3, "metrics": [{"type": "Pods"}]}, "spec.autoscaling.metrics[0].pods"),
        (
            {"maxReplicas": 3, "metrics": [{"type": "Resource", "resource": {"name": "cpu"}}]},
            "spec.autoscaling.metrics[0].resource.target.type",
        ),
        (
            {"maxReplicas": 3, "canary": {"minReplicas": 4, "maxReplicas": 3}},
            "spec.autoscaling.canary.minReplicas",
        ),
        ({"maxReplicas": 3, "canary": {}}, "spec.autoscaling.canary.maxReplicas"),
    ],
)
def test_a_bad_autoscaling_spec_names_the_field(scaling: dict[str, Any], field: str) -> None:
    with pytest.raises(spec.SpecError) as caught:
        spec.parse({**BASE, "autoscaling": scaling})
    assert caught.value.field == field


def live_deployment(manager: str, fields: dict[str, Any], replicas: int = 3) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "fraud-stable",
            "managedFields": [
                {"manager": manager, "operation": "Apply", "fieldsV1": {"f:spec": fields}}
            ],
        },
        "spec": {"replicas": replicas},
    }


def desired_stable(scaling: dict[str, Any] | None) -> dict[str, Any]:
    raw = {**BASE, "autoscaling": scaling} if scaling else {**BASE, "replicas": 2}
    objs = render.children(spec.parse(raw), OWNER, canary_on=False, weight=0)
    (deployment,) = [o for o in objs if o["kind"] == "Deployment"]
    return deployment


def test_a_hand_over_first_applies_the_live_count_under_another_manager() -> None:
    live = live_deployment(naming.FIELD_MANAGER, {"f:replicas": {}, "f:template": {}})
    assert autoscaling.handover(live, desired_stable({"maxReplicas": 5})) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "fraud-stable", "namespace": "ml"},
        "spec": {"replicas": 3},
    }


def test_no_hand_over_once_the_operator_no_longer_holds_replicas() -> None:
    live = live_deployment("kube-controller-manager", {"f:replicas": {}})
    assert autoscaling.handover(live, desired_stable({"maxReplicas": 5})) is None
    assert autoscaling.handover(None, desired_stable({"maxReplicas": 5})) is None


def test_no_hand_over_while_the_operator_sets_replicas_itself() -> None:
    live = live_deployment(naming.FIELD_MANAGER, {"f:replicas": {}})
    assert autoscaling.handover(live, desired_stable(None)) is None
