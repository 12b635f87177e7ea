"""Creating a ModelDeployment: children with the right fields, Ready status, kubectl views."""

from __future__ import annotations

from typing import Any

from kube_control_plane import ControlPlane
from operator_harness import (
    Operator,
    apply,
    backend_weights,
    get,
    kubectl,
    model_deployment,
    wait_ready,
)


def test_a_new_model_deployment_gets_its_children_and_becomes_ready(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(
        control_plane,
        namespace,
        model_deployment(
            "fraud",
            replicas=2,
            resources={"gpu": 1, "requests": {"cpu": "500m"}},
            batching={"maxBatchSize": 32, "batchTimeoutMicros": 500},
            traffic={"hostnames": ["fraud.example.com"]},
        ),
    )
    md = wait_ready(control_plane, namespace, "fraud")

    assert md["status"]["stable"] == {**md["status"]["stable"], "version": 1, "readyReplicas": 2}
    assert md["status"]["weight"] == 0
    assert md["status"]["url"] == "http://fraud.example.com/v1/models/half_plus_two"
    assert [h["version"] for h in md["status"]["history"]] == [1]

    deployment = get(control_plane, namespace, "deployment", "fraud-stable")
    assert deployment is not None
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == md["metadata"]["uid"]
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert server["command"] == ["berth-server"]
    assert "--enable_batching" in server["args"]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert server["image"] == "ghcr.io/berth-dev/berth-server:0.1.0-gpu"  # the CUDA variant
    assert server["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]

    config = get(control_plane, namespace, "configmap", "fraud-config")
    assert config is not None
    items = {item["path"]: item["key"] for item in pod["volumes"][1]["configMap"]["items"]}
    assert "max_batch_size { value: 32 }" in config["data"][items["batching.config"]]
    assert "versions: 1" in config["data"][items["models.config"]]
    for kind, name in (
        ("service", "fraud"),
        ("service", "fraud-stable"),
        ("grpcroute", "fraud-grpc"),
        ("poddisruptionbudget", "fraud"),
    ):
        assert get(control_plane, namespace, kind, name) is not None, f"{kind}/{name}"
    assert backend_weights(control_plane, namespace, "fraud-http") == {"fraud-stable": 100}


def test_kubectl_get_shows_ready_versions_and_weight(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(control_plane, namespace, model_deployment("shown"))
    wait_ready(control_plane, namespace, "shown")
    header, row = kubectl(control_plane, "get", "md", "-n", namespace).stdout.splitlines()
    assert header.split() == ["NAME", "READY", "STABLE", "CANARY", "WEIGHT", "AGE"]
    assert row.split()[:3] == ["shown", "True", "1"]


def test_kubectl_explain_teaches_the_spec(modeldeployment_crd: ControlPlane) -> None:
    text = kubectl(modeldeployment_crd, "explain", "modeldeployment.spec").stdout
    for field in (
        "model",
        "stable",
        "canary",
        "autoscaling",
        "batching",
        "traffic",
        "progressDeadlineSeconds",
    ):
        assert field in text
    canary = kubectl(modeldeployment_crd, "explain", "md.spec.canary.weight").stdout
    assert "Percent of requests" in canary


def test_an_istio_model_deployment_gets_a_virtual_service(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(control_plane, namespace, model_deployment("meshy", traffic={"provider": "istio"}))
    wait_ready(control_plane, namespace, "meshy")
    service = get(control_plane, namespace, "virtualservice", "meshy")
    assert service is not None
    assert service["spec"]["http"][0]["route"][0]["weight"] == 100
    assert get(control_plane, namespace, "httproute", "meshy-http") is None


def test_an_object_store_model_deployment_gets_servers_that_read_the_bucket(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    storage = {"uri": "s3://models/churn", "credentials": {"secretName": "keys"},
               "endpoint": "http://minio:9000"}
    apply(control_plane, namespace,
          model_deployment("churn", model={"name": "churn", "storage": storage}))
    wait_ready(control_plane, namespace, "churn")

    pod = get(control_plane, namespace, "deployment", "churn-stable")["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert "--model_cache_dir=/var/cache/berth" in server["args"]
    assert server["envFrom"] == [{"secretRef": {"name": "keys"}}]
    assert {"name": "AWS_ENDPOINT_URL", "value": "http://minio:9000"} in server["env"]
    assert {"name": "model-cache", "emptyDir": {"sizeLimit": "10Gi"}} in pod["volumes"]
    config = get(control_plane, namespace, "configmap", "churn-config")
    assert any('base_path: "s3://models/churn"' in text for text in config["data"].values())
