"""The loopback control plane behaves like a cluster where the operator's behaviour depends on it:
Deployments reach Ready on fake nodes, GPUs are scheduled, ownerReferences are garbage-collected,
namespaces finish deleting, and the traffic CRDs are served."""

from __future__ import annotations

import json

from kube_control_plane import ControlPlane

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"


def _pod_manifest(name: str, namespace: str, *, gpus: int, **spec: object) -> str:
    container = {
        "name": "main",
        "image": PAUSE_IMAGE,
        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [container], **spec},
    }
    return json.dumps(pod)


def _get(plane: ControlPlane, *args: str) -> dict[str, object]:
    return plane.kubectl_json("get", *args)


def test_deployment_gets_ready_pods_on_fake_nodes(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl(
        "create", "deployment", "web", f"--image={PAUSE_IMAGE}", "--replicas=2", "-n", namespace
    )
    control_plane.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=60s")

    status = _get(control_plane, "deployment", "web", "-n", namespace)["status"]
    assert isinstance(status, dict)
    assert status["readyReplicas"] == 2
    pods = _get(control_plane, "pods", "-n", namespace, "-l", "app=web")["items"]
    assert isinstance(pods, list)
    assert {pod["status"]["phase"] for pod in pods} == {"Running"}
    assert all(pod["spec"]["nodeName"].startswith("kwok-node-") for pod in pods)


def test_pod_requesting_gpus_is_scheduled_on_an_untainted_gpu_node(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl("apply", "-f", "-", input=_pod_manifest("gpu", namespace, gpus=2))
    control_plane.kubectl(
        "wait", "--for=condition=Ready", "pod/gpu", "-n", namespace, "--timeout=60s"
    )

    spec = _get(control_plane, "pod", "gpu", "-n", namespace)["spec"]
    assert isinstance(spec, dict)
    assert spec["nodeName"] in {"kwok-node-0", "kwok-node-1"}


def test_pod_tolerating_the_gpu_taint_runs_on_the_tainted_node(
    control_plane: ControlPlane, namespace: str
) -> None:
    manifest = _pod_manifest(
        "tolerant",
        namespace,
        gpus=1,
        nodeSelector={"kubernetes.io/hostname": "kwok-gpu-tainted-0"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    control_plane.kubectl("apply", "-f", "-", input=manifest)
    control_plane.kubectl(
        "wait", "--for=condition=Ready", "pod/tolerant", "-n", namespace, "--timeout=60s"
    )


def test_pod_asking_for_more_gpus_than_any_node_has_stays_unschedulable(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl("apply", "-f", "-", input=_pod_manifest("greedy", namespace, gpus=5))
    control_plane.kubectl(
        "wait",
        "--for=jsonpath={.status.conditions[?(@.type=='PodScheduled')].reason}=Unschedulable",
        "pod/greedy",
        "-n",
        namespace,
        "--timeout=60s",
    )


def test_deleting_an_owner_garbage_collects_its_dependent(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = _get(control_plane, "configmap", "owner", "-n", namespace)["metadata"]
    assert isinstance(owner_uid, dict)
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "namespace": namespace,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid["uid"]}
            ],
        },
    }
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(child))

    control_plane.kubectl("delete", "configmap", "owner", "-n", namespace, "--wait=true")
    control_plane.kubectl(
        "wait", "--for=delete", "configmap/child", "-n", namespace, "--timeout=60s"
    )


def test_namespace_with_running_pods_finishes_deleting(control_plane: ControlPlane) -> None:
    name = control_plane.create_namespace("doomed")
    control_plane.kubectl("create", "deployment", "web", f"--image={PAUSE_IMAGE}", "-n", name)
    control_plane.kubectl("rollout", "status", "deployment/web", "-n", name, "--timeout=60s")

    control_plane.kubectl("delete", "namespace", name, "--wait=true", "--timeout=90s")

    gone = control_plane.kubectl("get", "namespace", name, check=False)
    assert "NotFound" in gone.stderr


def test_traffic_kinds_are_served(control_plane: ControlPlane) -> None:
    listed = control_plane.kubectl("api-resources", "-o", "name").stdout.split()
    for resource in (
        "httproutes.gateway.networking.k8s.io",
        "grpcroutes.gateway.networking.k8s.io",
        "gateways.gateway.networking.k8s.io",
        "virtualservices.networking.istio.io",
    ):
        assert resource in listed


def test_traffic_objects_pass_server_side_validation(
    control_plane: ControlPlane, namespace: str
) -> None:
    backend = {"name": "fraud-stable", "port": 8501, "weight": 90}
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "fraud", "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": "ml"}],
            "rules": [
                {"backendRefs": [backend, {**backend, "name": "fraud-canary", "weight": 10}]}
            ],
        },
    }
    virtual_service = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "fraud", "namespace": namespace},
        "spec": {
            "hosts": ["fraud"],
            "http": [{"route": [{"destination": {"host": "fraud-stable"}, "weight": 100}]}],
        },
    }
    for manifest in (route, virtual_service):
        control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(manifest))
