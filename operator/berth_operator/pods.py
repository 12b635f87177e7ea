"""One track's Deployment: the server container, its flags, probes, volumes and placement.

Contract with the server: flags and file paths below are tensorflow_model_server's; the pods run
non-root with a read-only root filesystem, so the only writable path is an emptyDir on /tmp.

Probes and shutdown follow the server's lifecycle: it loads every model before it opens its
ports, so the startupProbe on /healthz carries the load time (spec.server.startupTimeoutSeconds)
and liveness starts after it; /readyz gates traffic. At termination the preStop sleep lets
endpoints and routers stop sending before SIGTERM, then the server drains in-flight requests.
"""

import math
from typing import Any

from berth_operator import configfiles, kinds, naming, settings, spec

Manifest = dict[str, Any]

PROBE_PERIOD_SECONDS = 5
ENDPOINT_DRAIN_SECONDS = 10
"""preStop sleep: kube-proxy, gateways and meshes learn of a terminating endpoint within seconds;
requests sent in that window still reach a server that accepts them."""
SHUTDOWN_GRACE_SECONDS = 10
"""--shutdown_grace_period_seconds: in-flight requests get this long after SIGTERM."""
EXIT_MARGIN_SECONDS = 5
"""Time after the grace period for unloading models and exiting before SIGKILL."""

GPU_TOLERATION: Manifest = {
    "key": naming.GPU_RESOURCE,
    "operator": "Exists",
    "effect": "NoSchedule",
}


def server_args(md: spec.ModelDeploymentSpec) -> list[str]:
    """The server's command line after the command itself."""
    args = [
        f"--port={naming.GRPC_PORT}",
        f"--rest_api_port={naming.REST_PORT}",
        f"--model_config_file={naming.MODELS_CONFIG_FILE}",
        f"--model_config_file_poll_wait_seconds={md.server.config_poll_seconds}",
        # The ConfigMap is the pod's model list; nobody who reaches the gRPC port may swap it.
        "--enable_reload_config_rpc=false",
        f"--shutdown_grace_period_seconds={SHUTDOWN_GRACE_SECONDS}",
    ]
    if md.batching is not None:
        args += ["--enable_batching", f"--batching_parameters_file={naming.BATCHING_CONFIG_FILE}"]
    if isinstance(md.storage, spec.UriSource):
        args.append(f"--model_cache_dir={naming.MODEL_CACHE_DIR}")
    return args + list(md.server.args)


def container(
    md: spec.ModelDeploymentSpec, images: settings.ServerImages, run_as_user: int | None
) -> Manifest:
    env: list[Manifest] = []
    if md.resources.gpu:
        env.append({"name": "TF_FORCE_GPU_ALLOW_GROWTH", "value": "true"})
    if isinstance(md.storage, spec.UriSource) and md.storage.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": md.storage.endpoint})
    env += [dict(e) for e in md.server.env]
    mounts: list[Manifest] = [
        {"name": "config", "mountPath": naming.CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if isinstance(md.storage, spec.UriSource):
        mounts.append({"name": "model-cache", "mountPath": naming.MODEL_CACHE_DIR})
    else:
        model = {"name": "model", "mountPath": naming.model_base_path(md.model_name),
                 "readOnly": True}
        if isinstance(md.storage, spec.PvcSource) and md.storage.sub_path:
            model["subPath"] = md.storage.sub_path
        mounts.insert(0, model)
    mounts += [dict(m) for m in md.server.volume_mounts]
    body: Manifest = {
        "name": "server",
        "image": images.choose(image=md.server.image, gpus=md.resources.gpu),
        "command": [naming.SERVER_COMMAND],
        "args": server_args(md),
        "ports": [
            {"name": "grpc", "containerPort": naming.GRPC_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": naming.REST_PORT, "protocol": "TCP"},
        ],
        "startupProbe": {
            "httpGet": {"path": naming.LIVENESS_PATH, "port": "http"},
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "failureThreshold": math.ceil(md.server.startup_timeout_seconds / PROBE_PERIOD_SECONDS),
        },
        "readinessProbe": {
            "httpGet": {"path": naming.READINESS_PATH, "port": "http"},
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": naming.LIVENESS_PATH, "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": ENDPOINT_DRAIN_SECONDS}}},
        # A server that fails to start says why in its last log lines ("Failed to start server.
        # Error: ..."): they become the termination message kubectl describe and the status show.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsNonRoot": True,
            **_ids(run_as_user, "runAsUser"),
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    # The API server drops empty lists and maps; rendering one would look like drift forever.
    if env:
        body["env"] = env
    if isinstance(md.storage, spec.UriSource) and md.storage.credentials_secret:
        body["envFrom"] = [{"secretRef": {"name": md.storage.credentials_secret}}]
    if resources := _resources(md.resources):
        body["resources"] = resources
    return body


def _ids(run_as_user: int | None, *fields: str) -> dict[str, int]:
    """The fixed UID fields, or none: the cluster then assigns them (and runAsNonRoot holds)."""
    return {} if run_as_user is None else dict.fromkeys(fields, run_as_user)


def _resources(resources: spec.Resources) -> Manifest:
    """Quantities as strings: the API server returns them so, and drift checks compare them."""
    out: Manifest = {}
    limits = dict(resources.limits)
    if resources.gpu:
        limits[naming.GPU_RESOURCE] = str(resources.gpu)
    if resources.requests:
        out["requests"] = dict(resources.requests)
    if limits:
        out["limits"] = limits
    return out


def _volumes(md: spec.ModelDeploymentSpec, owner: str, version: int) -> list[Manifest]:
    if isinstance(md.storage, spec.PvcSource):
        model: Manifest = {
            "name": "model",
            "persistentVolumeClaim": {"claimName": md.storage.claim_name, "readOnly": True},
        }
    elif isinstance(md.storage, spec.HostPathSource):
        model = {"name": "model", "hostPath": {"path": md.storage.path, "type": "Directory"}}
    else:  # the server downloads each version it loads into this, and removes it after
        model = {"name": "model-cache", "emptyDir": {"sizeLimit": md.storage.cache_size}}
    items = [{"key": f.key, "path": f.path} for f in configfiles.track_files(md, version)]
    config = {
        "name": "config",
        "configMap": {"name": naming.config_map_name(owner), "items": items},
    }
    extra = [dict(v) for v in md.server.volumes]
    return [model, config, {"name": "tmp", "emptyDir": {}}, *extra]


def pod_spec(
    md: spec.ModelDeploymentSpec,
    owner: str,
    version: int,
    images: settings.ServerImages,
    security: settings.ServerSecurity,
) -> Manifest:
    tolerations = [dict(t) for t in md.scheduling.tolerations]
    if md.resources.gpu and GPU_TOLERATION not in tolerations:
        tolerations.append(dict(GPU_TOLERATION))
    pod: Manifest = {
        "securityContext": {
            "runAsNonRoot": True,
            **_ids(security.run_as_user, "runAsUser", "runAsGroup", "fsGroup"),
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": md.server.automount_service_account_token,
        "containers": [container(md, images, security.run_as_user)],
        "volumes": _volumes(md, owner, version),
        "terminationGracePeriodSeconds": (
            ENDPOINT_DRAIN_SECONDS + SHUTDOWN_GRACE_SECONDS + EXIT_MARGIN_SECONDS
        ),
    }
    if md.server.service_account_name:
        pod["serviceAccountName"] = md.server.service_account_name
    if md.server.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": name} for name in md.server.image_pull_secrets]
    if md.scheduling.priority_class_name:
        pod["priorityClassName"] = md.scheduling.priority_class_name
    if md.scheduling.topology_spread_constraints:
        pod["topologySpreadConstraints"] = [
            dict(c) for c in md.scheduling.topology_spread_constraints
        ]
    if md.scheduling.node_selector:
        pod["nodeSelector"] = dict(md.scheduling.node_selector)
    if tolerations:
        pod["tolerations"] = tolerations
    if md.scheduling.affinity:
        pod["affinity"] = dict(md.scheduling.affinity)
    return pod


def deployment(
    md: spec.ModelDeploymentSpec,
    owner: str,
    track: naming.Track,
    *,
    version: int,
    replicas: int | None,
    images: settings.ServerImages,
    security: settings.ServerSecurity,
) -> Manifest:
    """replicas None leaves the count to the HorizontalPodAutoscaler."""
    selector = naming.track_selector(owner, track)
    labels = {**naming.owner_labels(owner), **selector, naming.LABEL_VERSION: str(version)}
    template_meta: Manifest = {"labels": {**md.server.pod_labels, **labels}}
    if md.server.pod_annotations:
        template_meta["annotations"] = dict(md.server.pod_annotations)
    body: Manifest = {
        **kinds.DEPLOYMENT.type_meta(),
        "metadata": {"name": naming.track_name(owner, track), "labels": labels},
        "spec": {
            "selector": {"matchLabels": selector},
            "progressDeadlineSeconds": md.progress_deadline_seconds,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxUnavailable": md.strategy.max_unavailable,
                    "maxSurge": md.strategy.max_surge,
                },
            },
            "template": {
                "metadata": template_meta,
                "spec": pod_spec(md, owner, version, images, security),
            },
        },
    }
    if replicas is not None:
        body["spec"]["replicas"] = replicas
    return body
