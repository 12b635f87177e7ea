"""KEDA: `spec.autoscaling.keda` parsed, and rendered as a ScaledObject per autoscaled track."""

from typing import Any

import pytest

from berth_operator import autoscaling, render, spec

OWNER = render.Owner(name="fraud", namespace="ml", uid="uid-1")
BASE: dict[str, Any] = {
    "model": {"name": "fraud", "storage": {"pvc": {"claimName": "models"}}},
    "stable": {"version": 3},
}
PROMETHEUS = "http://prometheus-operated.monitoring:9090"
QUEUE = {"serverAddress": PROMETHEUS, "metric": "queueDepth", "threshold": 8}
STABLE_PODS = 'namespace="ml",pod=~"fraud-stable-[a-z0-9]+-[a-z0-9]+"'


def children(
    scaling: dict[str, Any], *, canary: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    raw = {**BASE, "autoscaling": scaling, **({"canary": canary} if canary else {})}
    objs = render.children(spec.parse(raw), OWNER, canary_on=canary is not None, weight=0)
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objs}


def test_keda_replaces_the_autoscaler_of_the_stable_track() -> None:
    objs = children({"minReplicas": 2, "maxReplicas": 10, "keda": QUEUE})
    assert not [key for key in objs if key.startswith("HorizontalPodAutoscaler/")]
    scaled = objs["ScaledObject/fraud"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["metadata"]["ownerReferences"][0]["name"] == "fraud"
    assert scaled["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fraud-stable"},
        "minReplicaCount": 2,
        "maxReplicaCount": 10,
        "triggers": [
            {
                "type": "prometheus",
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": PROMETHEUS,
                    "query": f'sum({{__name__=":berth:serving:queue_depth",{STABLE_PODS}}})',
                    "threshold": "8",
                },
            }
        ],
    }
    assert "replicas" not in objs["Deployment/fraud-stable"]["spec"]


def test_the_request_rate_is_summed_over_the_tracks_pods() -> None:
    rate = {**QUEUE, "metric": "requestRate", "threshold": "50"}
    scaling = {"maxReplicas": 4, "keda": rate, "canary": {"maxReplicas": 2}}
    objs = children(scaling, canary={"version": 4, "weight": 10})
    (trigger,) = objs["ScaledObject/fraud-canary"]["spec"]["triggers"]
    assert trigger["metadata"]["query"] == (
        'sum(rate({__name__=":tensorflow:serving:request_count",'
        'namespace="ml",pod=~"fraud-canary-[a-z0-9]+-[a-z0-9]+"}[2m]))'
    )


def test_a_query_of_ones_own_gets_the_tracks_pods_for_its_selector() -> None:
    own = "sum(rate(:tensorflow:serving:request_latency_count{ {{selector}} }[2m]))"
    scaling = {"maxReplicas": 4, "keda": {"serverAddress": PROMETHEUS, "query": own,
                                          "threshold": "0.5"}}
    (trigger,) = children(scaling)["ScaledObject/fraud"]["spec"]["triggers"]
    assert trigger["metadata"]["query"] == (
        f"sum(rate(:tensorflow:serving:request_latency_count{{ {STABLE_PODS} }}[2m]))"
    )
    assert trigger["metadata"]["threshold"] == "0.5"


def test_every_keda_option_reaches_the_scaled_object() -> None:
    options = {
        **QUEUE,
        "activationThreshold": 1,
        "pollingIntervalSeconds": 15,
        "authenticationRef": {"name": "prometheus", "kind": "ClusterTriggerAuthentication"},
    }
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 600}}
    body = children({"maxReplicas": 4, "behavior": behavior, "keda": options})[
        "ScaledObject/fraud"
    ]["spec"]
    (trigger,) = body["triggers"]
    assert trigger["metadata"]["activationThreshold"] == "1"
    assert trigger["authenticationRef"] == options["authenticationRef"]
    assert body["pollingInterval"] == 15
    assert body["advanced"] == {"horizontalPodAutoscalerConfig": {"behavior": behavior}}


def test_a_canary_with_bounds_gets_its_own_scaled_object() -> None:
    scaling = {"maxReplicas": 8, "keda": QUEUE, "canary": {"minReplicas": 1, "maxReplicas": 3}}
    objs = children(scaling, canary={"version": 4, "weight": 10})
    body = objs["ScaledObject/fraud-canary"]["spec"]
    assert body["scaleTargetRef"]["name"] == "fraud-canary"
    assert (body["minReplicaCount"], body["maxReplicaCount"]) == (1, 3)
    assert "fraud-canary-[a-z0-9]+" in body["triggers"][0]["metadata"]["query"]
    assert "replicas" not in objs["Deployment/fraud-canary"]["spec"]


def test_a_canary_without_bounds_is_sized_by_its_weight_as_with_an_hpa() -> None:
    md = spec.parse({**BASE, "autoscaling": {"maxReplicas": 8, "keda": QUEUE},
                     "canary": {"version": 4, "weight": 25}})
    assert autoscaling.replicas(md, "canary", stable_replicas=6) == 2
    objs = children({"maxReplicas": 8, "keda": QUEUE}, canary={"version": 4, "weight": 25})
    assert "ScaledObject/fraud-canary" not in objs


def test_keda_needs_no_cpu_request() -> None:
    parsed = spec.parse({**BASE, "autoscaling": {"maxReplicas": 4, "keda": QUEUE}})
    assert parsed.autoscaling is not None and parsed.autoscaling.keda is not None
    assert parsed.resources.requests == {}


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"threshold": 8, "metric": "queueDepth"}, "spec.autoscaling.keda.serverAddress"),
        ({**QUEUE, "query": "up"}, "spec.autoscaling.keda"),
        ({"serverAddress": PROMETHEUS, "threshold": 8}, "spec.autoscaling.keda"),
        ({**QUEUE, "metric": "latency"}, "spec.autoscaling.keda.metric"),
        ({**QUEUE, "threshold": "-1"}, "spec.autoscaling.keda.threshold"),
        ({**QUEUE, "threshold": None}, "spec.autoscaling.keda.threshold"),
        ({**QUEUE, "authenticationRef": {"kind": "TriggerAuthentication"}},
         "spec.autoscaling.keda.authenticationRef.name"),
    ],
)
def test_a_bad_keda_spec_names_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(spec.SpecError) as caught:
        spec.parse({**BASE, "autoscaling": {"maxReplicas": 4, "keda": options}})
    assert caught.value.field == field


def test_keda_does_not_take_hpa_metrics_too() -> None:
    scaling = {"maxReplicas": 4, "keda": QUEUE, "targetCPUUtilizationPercentage": 70}
    with pytest.raises(spec.SpecError) as caught:
        spec.parse({**BASE, "autoscaling": scaling})
    assert caught.value.field == "spec.autoscaling.keda"
