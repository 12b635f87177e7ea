"""deploy/examples/cpu.yaml on a real node, with its model present at the version it names: the
pods pass their real probes, and REST and gRPC through the Service answer from version 123."""

from __future__ import annotations

import json
import pathlib

import node as real_node
import workloads
import yaml
from kube_control_plane import ControlPlane

EXAMPLES = workloads.REPO / "deploy" / "examples"


def models_volume(namespace: str, models: pathlib.Path) -> dict[str, object]:
    """A PersistentVolume of the node's model directory, bound to the examples' `models` claim
    (the part of the README's set-up a cluster's storage would do)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"models-{namespace}"},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": str(models), "type": "Directory"},
            "claimRef": {"namespace": namespace, "name": "models"},
        },
    }


def fitted_to_node(example: dict[str, object]) -> dict[str, object]:
    """cpu.yaml asks 1 CPU per replica; the node has 2 for everything, so ask less."""
    spec = example["spec"]
    assert isinstance(spec, dict)
    spec["resources"] = {**spec["resources"], "requests": {"cpu": "100m", "memory": "256Mi"}}
    return example


def test_cpu_example_serves_its_version_through_the_service(
    control_plane: ControlPlane, node: real_node.RealNode, namespace: str, models: pathlib.Path
) -> None:
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(models_volume(namespace, models)))
    control_plane.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "models-pvc.yaml"))
    example = fitted_to_node(yaml.safe_load((EXAMPLES / "cpu.yaml").read_text()))
    workloads.apply(control_plane, namespace, example)

    workloads.wait_condition(control_plane, namespace, "half-plus-two")
    workloads.rollout(control_plane, namespace, "half-plus-two-stable")
    pods = workloads.pods(control_plane, namespace, "app.kubernetes.io/instance=half-plus-two")
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == node.name
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"] and status["restartCount"] == 0, status

    address = workloads.cluster_ip(control_plane, namespace, "half-plus-two")
    answer = workloads.first_rest_predict(address, "half_plus_two", [1.0, 2.0, 5.0])
    assert answer == [2.5, 3.0, 4.5]
    client = workloads.GrpcClient(address)
    try:
        assert client.predict("half_plus_two", [1.0, 2.0, 5.0]) == (123, [2.5, 3.0, 4.5])
    finally:
        client.close()
    control_plane.kubectl("delete", "pv", f"models-{namespace}", "--wait=false")
