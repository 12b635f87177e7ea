"""One track's Deployment: the server container, its flags, probes, volumes and placement.

Contract with the server: flags and file paths below are tensorflow_model_server's; the pods run
non-root with a read-only root filesystem, so the only writable path is an emptyDir on /tmp.
"""

from typing import Any

from berth_operator import kinds, naming, spec

Manifest = dict[str, Any]

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
    ]
    if md.batching is not None:
        args += ["--enable_batching", f"--batching_parameters_file={naming.BATCHING_CONFIG_FILE}"]
    return args + list(md.server.args)


def container(md: spec.ModelDeploymentSpec, version: int) -> Manifest:
    env: list[Manifest] = []
    if md.resources.gpu:
        env.append({"name": "TF_FORCE_GPU_ALLOW_GROWTH", "value": "true"})
    env += [dict(e) for e in md.server.env]
    mounts: list[Manifest] = [
        {"name": "model", "mountPath": naming.model_base_path(md.model_name), "readOnly": True},
        {"name": "config", "mountPath": naming.CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if isinstance(md.storage, spec.PvcSource) and md.storage.sub_path:
        mounts[0]["subPath"] = md.storage.sub_path
    body: Manifest = {
        "name": "server",
        "image": md.server.image,
        "command": [naming.SERVER_COMMAND],
        "args": server_args(md),
        "ports": [
            {"name": "grpc", "containerPort": naming.GRPC_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": naming.REST_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": naming.READINESS_PATH, "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "tcpSocket": {"port": "grpc"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": naming.SERVER_USER_ID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    # The API server drops empty lists and maps; rendering one would look like drift forever.
    if env:
        body["env"] = env
    if resources := _resources(md.resources):
        body["resources"] = resources
    return body


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


def _volumes(md: spec.ModelDeploymentSpec, owner: str, track: naming.Track) -> list[Manifest]:
    if isinstance(md.storage, spec.PvcSource):
        model: Manifest = {
            "name": "model",
            "persistentVolumeClaim": {"claimName": md.storage.claim_name, "readOnly": True},
        }
    else:
        model = {"name": "model", "hostPath": {"path": md.storage.path, "type": "Directory"}}
    items = [{"key": f"{track}.models.config", "path": "models.config"}]
    if md.batching is not None:
        items.append({"key": "batching.config", "path": "batching.config"})
    config = {
        "name": "config",
        "configMap": {"name": naming.config_map_name(owner), "items": items},
    }
    return [model, config, {"name": "tmp", "emptyDir": {}}]


def pod_spec(
    md: spec.ModelDeploymentSpec, owner: str, track: naming.Track, version: int
) -> Manifest:
    tolerations = [dict(t) for t in md.scheduling.tolerations]
    if md.resources.gpu and GPU_TOLERATION not in tolerations:
        tolerations.append(dict(GPU_TOLERATION))
    pod: Manifest = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": naming.SERVER_USER_ID,
            "runAsGroup": naming.SERVER_USER_ID,
            "fsGroup": naming.SERVER_USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container(md, version)],
        "volumes": _volumes(md, owner, track),
    }
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
    config_hash: str,
) -> Manifest:
    """replicas None leaves the count to the HorizontalPodAutoscaler."""
    selector = naming.track_selector(owner, track)
    labels = {**naming.owner_labels(owner), **selector, naming.LABEL_VERSION: str(version)}
    body: Manifest = {
        **kinds.DEPLOYMENT.type_meta(),
        "metadata": {"name": naming.track_name(owner, track), "labels": labels},
        "spec": {
            "selector": {"matchLabels": selector},
            "progressDeadlineSeconds": md.progress_deadline_seconds,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {naming.ANNOTATION_CONFIG_HASH: config_hash},
                },
                "spec": pod_spec(md, owner, track, version),
            },
        },
    }
    if replicas is not None:
        body["spec"]["replicas"] = replicas
    return body
