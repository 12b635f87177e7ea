"""ModelDeployment spec → the complete list of desired children (pure; no API calls).

Everything the operator owns is returned on every call: the reconciler applies what differs from
the cluster and deletes owned objects that are not in the list (a removed canary, an HPA that is
no longer asked for, routes of a provider that was switched off).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from berth_operator import configfiles, kinds, naming, pods, routes, settings, spec

Manifest = dict[str, Any]
DEFAULT_IMAGES = settings.ServerImages()


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
) -> list[Manifest]:
    """Desired children; `canary_on` and `weight` come from the rollout decision, `mounted` is
    the config data live pods may still mount (`configfiles.still_mounted`), kept in the
    ConfigMap next to the tracks' own files; `images` the operator's server images."""
    tracks: list[tuple[naming.Track, int, int | None]] = [
        ("stable", md.stable_version, None if md.autoscaling else md.replicas),
    ]
    if canary_on and md.canary is not None:
        tracks.append(("canary", md.canary.version, md.canary.replicas))
    data = dict(mounted or {})
    objs: list[Manifest] = []
    for track, version, replicas in tracks:
        data.update({f.key: f.text for f in configfiles.track_files(md, version)})
        objs.append(
            pods.deployment(
                md, owner.name, track, version=version, replicas=replicas, images=images
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
    if md.autoscaling is not None:
        objs.append(_hpa(owner.name, md.autoscaling))
    objs.append(_pdb(owner.name))
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


def _hpa(owner: str, autoscaling: spec.Autoscaling) -> Manifest:
    return {
        **kinds.HORIZONTAL_POD_AUTOSCALER.type_meta(),
        "metadata": {"name": owner},
        "spec": {
            "scaleTargetRef": {
                **kinds.DEPLOYMENT.type_meta(),
                "name": naming.track_name(owner, "stable"),
            },
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": autoscaling.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }


def _pdb(owner: str) -> Manifest:
    """At most one server of the whole ModelDeployment down at a time during node drains."""
    return {
        **kinds.POD_DISRUPTION_BUDGET.type_meta(),
        "metadata": {"name": owner},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {naming.LABEL_OWNER: owner}}},
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
