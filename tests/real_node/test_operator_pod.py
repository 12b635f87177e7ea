"""The operator as the chart installs it: a pod of the image built from Dockerfile.operator,
running under the chart's ServiceAccount with in-cluster credentials, reconciling from inside."""

from __future__ import annotations

import pathlib

import node as real_node
import workloads
from kube_control_plane import ControlPlane


def test_the_chart_operator_pod_reconciles_with_its_service_account(
    control_plane: ControlPlane,
    node: real_node.RealNode,
    berth_operator: workloads.Release,
    namespace: str,
    models: pathlib.Path,
) -> None:
    (pod,) = workloads.pods(
        control_plane, berth_operator.namespace, "app.kubernetes.io/name=berth-operator"
    )
    assert pod["spec"]["nodeName"] == node.name
    assert pod["spec"]["serviceAccountName"] == berth_operator.name
    (container,) = pod["spec"]["containers"]
    assert container["image"].startswith(workloads.OPERATOR_IMAGE)
    assert "KUBECONFIG" not in {e["name"] for e in container.get("env", [])}
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"] and status["restartCount"] == 0, status

    account = f"system:serviceaccount:{berth_operator.namespace}:{berth_operator.name}"
    for verb, resource, allowed in (
        ("patch", "deployments.apps", "yes"),
        ("patch", "modeldeployments.serving.berth.dev/status", "yes"),
        ("get", "secrets", "no"),
    ):
        answer = control_plane.kubectl(
            "auth", "can-i", verb, resource, "-n", namespace, f"--as={account}", check=False
        ).stdout.strip()
        assert answer == allowed, (verb, resource, answer)

    workloads.apply(
        control_plane,
        namespace,
        workloads.model_deployment(
            "half-plus-two", "half_plus_two", models, stable={"version": 123}, replicas=1
        ),
    )
    ready = workloads.wait_condition(control_plane, namespace, "half-plus-two")
    assert ready["reason"] == "StableAvailable", ready
    stable = control_plane.kubectl_json(
        "get", "deployment", "half-plus-two-stable", "-n", namespace, "--show-managed-fields"
    )
    managers = {entry["manager"] for entry in stable["metadata"]["managedFields"]}
    assert "berth-operator" in managers, managers  # the operator's server-side apply
    address = workloads.cluster_ip(control_plane, namespace, "half-plus-two")
    assert workloads.first_rest_predict(address, "half_plus_two", [1.0]) == [2.5]
