"""ModelDeployment spec → the complete list of desired children (pure; no API calls).

Everything the operator owns is returned on every call: the reconciler applies what differs from
the cluster and deletes owned objects that are not in the list (a removed canary, an HPA that is
no longer asked for, routes of a provider that was switched off).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from berth_operator import (
    autoscaling,
    configfiles,
    kinds,
    naming,
    network_policy,
    pods,
    routes,
    settings,
    spec,
)

Manifest = dict[str, Any]
DEFAULT_IMAGES = settings.ServerImages()
DEFAULT_SECURITY = settings.ServerSecurity()


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment the children belong to (ownerReferences need its uid)."""

    name: str
    namespace: str
    uid: str


def children(
    md: spec.ModelDeploymentSpec,
    owner: Owner,
    *,
    canary_on: bool,
    weight: int,
    mounted: Mapping[str, str] | None = None,
    images: settings.ServerImages = DEFAULT_IMAGES,
    security: settings.ServerSecurity = DEFAULT_SECURITY,
    stable_replicas: int | None = None,
) -> list[Manifest]:
    """Desired children; `canary_on` and `weight` come from the rollout decision, `mounted` is
    the config data live pods may still mount (`configfiles.still_mounted`), kept in the
    ConfigMap next to the tracks' own files; `images` the operator's server images and
    `security` what the cluster lets server pods do; `stable_replicas` the live stable
    Deployment's count, which sizes a canary without an autoscaler of its own."""
    tracks: list[tuple[naming.Track, int, int | None]] = [
        ("stable", md.stable_version, autoscaling.replicas(md, "stable", stable_replicas=None)),
    ]
    if canary_on and md.canary is not None:
        count = autoscaling.replicas(md, "canary", stable_replicas=stable_replicas)
        tracks.append(("canary", md.canary.version, count))
    data = dict(mounted or {})
    objs: list[Manifest] = []
    for track, version, replicas in tracks:
        data.update({f.key: f.text for f in configfiles.track_files(md, version)})
        objs.append(
            pods.deployment(
                md, owner.name, track, version=version, replicas=replicas, images=images,
                security=security,
            )
        )
        objs.append(
            _service(naming.track_name(owner.name, track), naming.track_selector(owner.name, track))
        )
    objs.insert(0, _config_map(owner.name, data))
    objs.append(_service(owner.name, {naming.LABEL_OWNER: owner.name}))
    objs += routes.RENDERERS[md.traffic.provider](
        md, owner.name, owner.namespace, weight, canary_on
    )
    objs += autoscaling.autoscalers(md, owner.name, owner.namespace, canary_on=canary_on)
    if md.disruption_budget.enabled:
        objs.append(_pdb(owner.name, md.disruption_budget))
    objs += network_policy.render(md, owner.name)
    return [_owned(obj, owner) for obj in objs]


def _config_map(owner: str, data: dict[str, str]) -> Manifest:
    return {
        **kinds.CONFIG_MAP.type_meta(),
        "metadata": {"name": naming.config_map_name(owner)},
        "data": dict(sorted(data.items())),
    }


def _service(name: str, selector: dict[str, str]) -> Manifest:
    return {
        **kinds.SERVICE.type_meta(),
        "metadata": {"name": name},
        "spec": {
            "selector": selector,
            "ports": [
                {
                    "name": "grpc",
                    "port": naming.GRPC_PORT,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "kubernetes.io/h2c",
                },
                {"name": "http", "port": naming.REST_PORT, "targetPort": "http", "protocol": "TCP"},
            ],
        },
    }


def _pdb(owner: str, budget: spec.DisruptionBudget) -> Manifest:
    """One budget over both tracks' servers; by default one server down at a time in drains."""
    body: Manifest = {"selector": {"matchLabels": {naming.LABEL_OWNER: owner}}}
    if budget.min_available is not None:
        body["minAvailable"] = budget.min_available
    else:
        body["maxUnavailable"] = 1 if budget.max_unavailable is None else budget.max_unavailable
    if budget.unhealthy_pod_eviction_policy:
        body["unhealthyPodEvictionPolicy"] = budget.unhealthy_pod_eviction_policy
    return {
        **kinds.POD_DISRUPTION_BUDGET.type_meta(),
        "metadata": {"name": owner},
        "spec": body,
    }


def _owned(obj: Manifest, owner: Owner) -> Manifest:
    """Labels, namespace and the controller ownerReference that garbage collection follows."""
    meta = obj["metadata"]
    meta["namespace"] = owner.namespace
    meta["labels"] = {**naming.owner_labels(owner.name), **meta.get("labels", {})}
    meta["ownerReferences"] = [
        {
            **kinds.MODEL_DEPLOYMENT.type_meta(),
            "name": owner.name,
            "uid": owner.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    return obj
