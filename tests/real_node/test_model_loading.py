"""Loading on a real kubelet: a load longer than the liveness budget is not killed, a model that
can never load is reported with the server's own words, and a pod stopped mid-load exits within
its grace period instead of being killed."""

from __future__ import annotations

import json
import pathlib
import subprocess
import threading
from typing import Any

import model_exports
import node as real_node
import waiting
import workloads
from kube_control_plane import ControlPlane

WARMUP_SECONDS = 45.0


def server_container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = (c for c in pod["spec"]["containers"] if c["name"] == "server")
    return container


def liveness_budget_seconds(pod: dict[str, Any]) -> int:
    probe = server_container(pod)["livenessProbe"]
    return int(probe["periodSeconds"]) * int(probe["failureThreshold"])


def only_pod(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    found = waiting.wait_for(
        lambda: workloads.pods(plane, namespace, f"app.kubernetes.io/instance={name}"),
        timeout_seconds=60,
        message=f"a pod of {name}",
        until=lambda pods: len(pods) == 1,
    )
    return found[0]


def deploy_slow_start(
    plane: ControlPlane,
    namespace: str,
    models: pathlib.Path,
    name: str,
    *,
    warmup_seconds: float,
    startup_timeout_seconds: int,
) -> dict[str, Any]:
    """A one-server ModelDeployment of a model whose warmup sleeps; returns its pod."""
    models.chmod(0o755)
    model_exports.export_slow_start(models / "slow", version=1, warmup_seconds=warmup_seconds)
    workloads.apply(
        plane,
        namespace,
        workloads.model_deployment(
            name,
            "slow",
            models,
            stable={"version": 1},
            replicas=1,
            server={"startupTimeoutSeconds": startup_timeout_seconds},
        ),
    )
    return only_pod(plane, namespace, name)


def test_a_load_longer_than_the_liveness_budget_becomes_ready_without_a_restart(
    control_plane: ControlPlane,
    node: real_node.RealNode,
    namespace: str,
    tmp_path_factory: Any,
) -> None:
    pod = deploy_slow_start(
        control_plane,
        namespace,
        tmp_path_factory.mktemp("slow-models"),
        "slow",
        warmup_seconds=WARMUP_SECONDS,
        startup_timeout_seconds=300,
    )
    assert WARMUP_SECONDS > liveness_budget_seconds(pod), "the scenario must outlast liveness"

    workloads.wait_condition(control_plane, namespace, "slow")
    pod = workloads.get(control_plane, namespace, "pod", pod["metadata"]["name"])
    assert pod is not None
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"] and status["restartCount"] == 0, status
    address = pod["status"]["podIP"]
    assert workloads.reachable(f"http://{address}:8501/readyz") == 200


def test_a_model_that_cannot_load_is_reported_with_the_servers_words(
    control_plane: ControlPlane,
    node: real_node.RealNode,
    namespace: str,
    tmp_path_factory: Any,
) -> None:
    models = tmp_path_factory.mktemp("broken-models")
    models.chmod(0o755)
    model_exports.export_broken(models / "broken", version=1)
    workloads.apply(
        control_plane,
        namespace,
        workloads.model_deployment(
            "broken",
            "broken",
            models,
            stable={"version": 1},
            replicas=1,
            # TF Serving's default retries a failed load 5 times a minute apart before it exits.
            server={"args": ["--max_num_load_retries=0"]},
        ),
    )
    ready = waiting.wait_for(
        lambda: workloads.condition(
            workloads.get(control_plane, namespace, "modeldeployment", "broken"), "Ready"
        ),
        timeout_seconds=workloads.ROLLOUT_SECONDS,
        interval_seconds=1.0,
        message="Ready=False with the server's failure",
        until=lambda c: c is not None and c.get("reason") == "ServerFailing",
    )
    assert "Failed to start server" in ready["message"], ready
    assert "broken" in ready["message"], ready
    pod = only_pod(control_plane, namespace, "broken")
    (status,) = pod["status"]["containerStatuses"]
    terminated = status["state"].get("terminated") or status["lastState"].get("terminated")
    assert terminated and terminated["exitCode"] != 0, status


def test_a_pod_stopped_while_loading_exits_within_its_grace_period(
    control_plane: ControlPlane,
    node: real_node.RealNode,
    namespace: str,
    tmp_path_factory: Any,
) -> None:
    pod = deploy_slow_start(
        control_plane,
        namespace,
        tmp_path_factory.mktemp("stopped-models"),
        "stopped",
        warmup_seconds=300.0,
        startup_timeout_seconds=600,
    )
    name = pod["metadata"]["name"]
    waiting.wait_for(
        lambda: "Loading servable version" in server_log(control_plane, namespace, name),
        timeout_seconds=workloads.ROLLOUT_SECONDS,
        interval_seconds=1.0,
        message=f"{name} to start loading its model",
    )
    states = ContainerStates(control_plane, namespace, name)
    control_plane.kubectl("delete", "pod", name, "-n", namespace, "--wait=false")
    waiting.wait_for(
        lambda: workloads.get(control_plane, namespace, "pod", name) is None,
        timeout_seconds=120,
        message=f"{name} to be gone",
    )
    states.join(timeout=30)
    terminated = [s["terminated"] for s in states.seen if "terminated" in s]
    assert terminated, f"no terminated state seen for {name}: {states.seen}"
    # A clean exit: 137 would be the kubelet's SIGKILL at the end of the grace period.
    assert terminated[-1]["exitCode"] == 0, terminated[-1]


def server_log(plane: ControlPlane, namespace: str, pod: str) -> str:
    return plane.kubectl("logs", pod, "-n", namespace, "-c", "server", check=False).stdout


class ContainerStates(threading.Thread):
    """Every state the pod's server container reports until the pod is deleted, from a
    `kubectl get --watch` (the terminated state lasts milliseconds before the pod is gone)."""

    def __init__(self, plane: ControlPlane, namespace: str, pod: str) -> None:
        super().__init__(daemon=True)
        self.seen: list[dict[str, Any]] = []
        self.process = subprocess.Popen(
            [
                str(plane.bin_dir / "kubectl"),
                "get",
                "pod",
                pod,
                "-n",
                namespace,
                "--watch",
                "--output-watch-events",
                "-o",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=plane.env,
            text=True,
        )
        self.start()
        waiting.wait_for(lambda: self.seen, timeout_seconds=30, message=f"a watch event of {pod}")

    def run(self) -> None:
        assert self.process.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self.process.stdout:
            buffer += line
            try:
                event, _ = decoder.raw_decode(buffer.strip())
            except json.JSONDecodeError:
                continue
            buffer = ""
            for status in event["object"].get("status", {}).get("containerStatuses", []):
                if status["name"] == "server":
                    self.seen.append(status["state"])
            if event["type"] == "DELETED":
                break
        self.process.kill()
        self.process.wait()
        self.process.stdout.close()
