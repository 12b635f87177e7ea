"""A version change reaches servers only by a rolling update: no pod's mounted config changes."""

from __future__ import annotations

import json
from typing import Any

import waiting
from kube_control_plane import ControlPlane
from operator_harness import (
    Operator,
    apply,
    condition,
    fill_pod_quota,
    get,
    kubectl,
    merge_patch,
    model_deployment,
    wait_ready,
    wait_status,
)


def stable_pods(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    listed = kubectl(
        plane,
        "get",
        "pods",
        "-n",
        namespace,
        "-l",
        "serving.berth.dev/track=stable",
        "-o",
        "json",
    )
    pods: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
    return pods


def served_versions(plane: ControlPlane, namespace: str) -> dict[str, tuple[str, str]]:
    """Pod name → (its version label, the models.config text its config volume holds)."""
    data = (get(plane, namespace, "configmap", "fraud-config") or {}).get("data", {})
    found = {}
    for pod in stable_pods(plane, namespace):
        (config,) = [v for v in pod["spec"]["volumes"] if v["name"] == "config"]
        (key,) = [i["key"] for i in config["configMap"]["items"] if i["path"] == "models.config"]
        label = pod["metadata"]["labels"]["serving.berth.dev/version"]
        found[pod["metadata"]["name"]] = (label, data.get(key, "<missing>"))
    return found


def test_old_pods_keep_their_version_while_a_new_stable_version_rolls_out(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(control_plane, namespace, model_deployment("fraud"))
    wait_ready(control_plane, namespace, "fraud")
    # No room for a surge pod: the old pod keeps running next to the updated Deployment.
    fill_pod_quota(control_plane, namespace, 1)

    merge_patch(control_plane, namespace, "md", "fraud", {"spec": {"stable": {"version": 2}}})
    waiting.wait_for(
        lambda: condition(
            get(control_plane, namespace, "deployment", "fraud-stable"), "ReplicaFailure"
        ),
        timeout_seconds=30,
        message="the version 2 pod refused by the quota",
        interval_seconds=0.5,
    )
    wait_status(
        control_plane,
        namespace,
        "fraud",
        lambda s: s.get("observedGeneration") == 2,
        what="the operator has handled version 2",
    )
    ((label, text),) = served_versions(control_plane, namespace).values()
    assert label == "1" and "versions: 1" in text, text

    kubectl(control_plane, "delete", "resourcequota", "full", "-n", namespace)
    waiting.wait_for(
        lambda: [v for v in served_versions(control_plane, namespace).values() if v[0] == "2"],
        timeout_seconds=60,
        message="a version 2 pod",
        interval_seconds=0.5,
    )
    for label, text in served_versions(control_plane, namespace).values():
        assert f"versions: {label}" in text
    waiting.wait_for(
        lambda: (
            len((get(control_plane, namespace, "configmap", "fraud-config") or {})["data"]) == 1
        ),
        timeout_seconds=60,
        message="version 1's config dropped once no pod mounts it",
        interval_seconds=0.5,
    )
