"""KEDA ScaledObjects: the tracks' autoscalers when `spec.autoscaling.keda` is set.

One ScaledObject per autoscaled track, named like the HPA it replaces (`<name>`, `<name>-canary`)
and scaling that track's Deployment within the same bounds and behavior, on one Prometheus
trigger. KEDA makes the HorizontalPodAutoscaler itself (`keda-hpa-<name>`), so the operator
renders none of its own: one Deployment never has two autoscalers.

The named metrics sum a server series over the track's pods; KEDA divides the sum by the
replicas (AverageValue), so the threshold is per server:
- queueDepth: `:berth:serving:queue_depth`, requests waiting for or inside model execution;
- requestRate: the per-second rate of `:tensorflow:serving:request_count` over two minutes.
Pods are matched by the labels Prometheus' Kubernetes discovery gives every scraped pod,
`namespace` and `pod`; a track's pods are `<deployment>-<template hash>-<suffix>`, a name no
other ModelDeployment's pods match (names ending in a track are refused). A query of the user's
own gets the same matchers where it says `{{selector}}`.
"""

from typing import Any

from berth_operator import kinds, naming, spec

Manifest = dict[str, Any]
SELECTOR = "{{selector}}"
_SERIES: dict[spec.KedaMetric, str] = {
    "queueDepth": 'sum({{__name__=":berth:serving:queue_depth",{selector}}})',
    "requestRate": 'sum(rate({{__name__=":tensorflow:serving:request_count",{selector}}}[2m]))',
}


def selector(owner: str, namespace: str, track: naming.Track) -> str:
    """PromQL label matchers of one track's server pods."""
    deployment = naming.track_name(owner, track)
    return f'namespace="{namespace}",pod=~"{deployment}-[a-z0-9]+-[a-z0-9]+"'


def query(keda: spec.Keda, owner: str, namespace: str, track: naming.Track) -> str:
    matchers = selector(owner, namespace, track)
    if keda.metric is not None:
        return _SERIES[keda.metric].format(selector=matchers)
    assert keda.query is not None
    return keda.query.replace(SELECTOR, matchers)


def scaled_object(
    scaling: spec.Autoscaling,
    keda: spec.Keda,
    owner: str,
    namespace: str,
    track: naming.Track,
    bounds: tuple[int, int],
) -> Manifest:
    """The ScaledObject of one track; `bounds` its (min, max) replicas."""
    metadata = {
        "serverAddress": keda.server_address,
        "query": query(keda, owner, namespace, track),
        "threshold": keda.threshold,
    }
    if keda.activation_threshold is not None:
        metadata["activationThreshold"] = keda.activation_threshold
    trigger: Manifest = {"type": "prometheus", "metricType": "AverageValue", "metadata": metadata}
    if keda.authentication_ref is not None:
        trigger["authenticationRef"] = dict(keda.authentication_ref)
    body: Manifest = {
        "scaleTargetRef": {
            **kinds.DEPLOYMENT.type_meta(),
            "name": naming.track_name(owner, track),
        },
        "minReplicaCount": bounds[0],
        "maxReplicaCount": bounds[1],
        "triggers": [trigger],
    }
    if keda.polling_interval_seconds is not None:
        body["pollingInterval"] = keda.polling_interval_seconds
    if scaling.behavior:
        body["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": dict(scaling.behavior)}}
    name = owner if track == "stable" else naming.track_name(owner, track)
    return {**kinds.SCALED_OBJECT.type_meta(), "metadata": {"name": name}, "spec": body}
