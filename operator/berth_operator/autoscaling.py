"""Who sets each track's replicas, the HorizontalPodAutoscalers, and handing replicas over.

With `spec.autoscaling` the stable track belongs to an autoscaler named after the
ModelDeployment; the canary belongs to its own (`<name>-canary`, same metrics and behavior) when
`autoscaling.canary` gives bounds, else the operator sizes it from its weight and stable's live
replicas, so a canary at 25 % does not serve a quarter of the load with one pod. The autoscaler
is an HPA, or with `autoscaling.keda` a KEDA ScaledObject (`keda`) under the same rules.

Hand-over: server-side apply removes a field its last applier stops sending, and the API server
then defaults `spec.replicas` to 1. A Deployment the operator applied with replicas, now left to
an autoscaler, first gets its live count applied by a second field manager (`HANDOVER_MANAGER`);
the operator's own apply then drops only the operator's claim, and the autoscaler takes the field
over the first time it scales.
"""

from collections.abc import Mapping
from typing import Any

from berth_operator import keda, kinds, naming, spec

Manifest = dict[str, Any]
HANDOVER_MANAGER = f"{naming.FIELD_MANAGER}-handover"


def replicas(
    md: spec.ModelDeploymentSpec, track: naming.Track, *, stable_replicas: int | None
) -> int | None:
    """The track's Deployment replicas to apply; None leaves them to its autoscaler.
    `stable_replicas`: the live stable Deployment's count (what its autoscaler chose)."""
    scaling = md.autoscaling
    if track == "stable":
        return md.replicas if scaling is None else None
    assert md.canary is not None
    if scaling is None:
        return md.canary.replicas
    if scaling.canary is not None:
        return None
    return canary_replicas(md.canary, scaling, stable_replicas or scaling.min_replicas)


def canary_replicas(canary: spec.Canary, scaling: spec.Autoscaling, stable_replicas: int) -> int:
    """As many servers per share of traffic as stable has: stable × weight / (100 − weight),
    rounded up, at least `canary.replicas` and at most the autoscaler's maximum."""
    if canary.weight >= 100:
        return scaling.max_replicas
    share = -(-stable_replicas * canary.weight // (100 - canary.weight))
    return max(canary.replicas, min(share, scaling.max_replicas))


def autoscalers(
    md: spec.ModelDeploymentSpec, owner: str, namespace: str, *, canary_on: bool
) -> list[Manifest]:
    """The HorizontalPodAutoscalers `md` asks for, or its KEDA ScaledObjects with
    `autoscaling.keda` (never both); none without `spec.autoscaling`."""
    scaling = md.autoscaling
    if scaling is None:
        return []
    tracks: list[tuple[naming.Track, tuple[int, int]]] = [
        ("stable", (scaling.min_replicas, scaling.max_replicas))
    ]
    if canary_on and md.canary is not None and scaling.canary is not None:
        tracks.append(("canary", (scaling.canary.min_replicas, scaling.canary.max_replicas)))
    if scaling.keda is not None:
        return [
            keda.scaled_object(scaling, scaling.keda, owner, namespace, track, bounds)
            for track, bounds in tracks
        ]
    return [_hpa(owner, track, scaling, *bounds) for track, bounds in tracks]


def metrics(scaling: spec.Autoscaling) -> list[Manifest]:
    """The cpu shortcut (or the default cpu target) first, then the spec's metrics."""
    cpu = scaling.cpu_utilization_percentage
    shortcut: list[Manifest] = (
        []
        if cpu is None
        else [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": cpu},
                },
            }
        ]
    )
    return shortcut + [dict(metric) for metric in scaling.metrics]


def _hpa(
    owner: str, track: naming.Track, scaling: spec.Autoscaling, low: int, high: int
) -> Manifest:
    body: Manifest = {
        "scaleTargetRef": {**kinds.DEPLOYMENT.type_meta(), "name": naming.track_name(owner, track)},
        "minReplicas": low,
        "maxReplicas": high,
        "metrics": metrics(scaling),
    }
    if scaling.behavior:
        body["behavior"] = dict(scaling.behavior)
    name = owner if track == "stable" else naming.track_name(owner, track)
    return {
        **kinds.HORIZONTAL_POD_AUTOSCALER.type_meta(),
        "metadata": {"name": name},
        "spec": body,
    }


def handover(live: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> Manifest | None:
    """The apply (by `HANDOVER_MANAGER`) that keeps a live Deployment's replicas when `desired`
    stops carrying them; None when the operator does not hold the field."""
    if live is None or desired["kind"] != kinds.DEPLOYMENT.kind or "replicas" in desired["spec"]:
        return None
    count = live.get("spec", {}).get("replicas")
    if count is None or not _operator_applies_replicas(live):
        return None
    meta = desired["metadata"]
    return {
        **kinds.DEPLOYMENT.type_meta(),
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"replicas": count},
    }


REPLICAS_FIELD: Manifest = {"f:spec": {"f:replicas": {}}}
"""`spec.replicas` as a managedFields entry (fieldsV1) names it."""


def holds_replicas(entry: Mapping[str, Any]) -> bool:
    """Whether a managedFields entry is the operator's own apply holding `spec.replicas`."""
    return (
        entry.get("manager") == naming.FIELD_MANAGER
        and entry.get("operation") == "Apply"
        and "f:replicas" in (entry.get("fieldsV1") or {}).get("f:spec", {})
    )


def _operator_applies_replicas(live: Mapping[str, Any]) -> bool:
    return any(map(holds_replicas, live.get("metadata", {}).get("managedFields", [])))
