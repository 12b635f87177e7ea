"""Promote, roll back, change the stable version and scale down while clients send a steady stream
of REST and gRPC predictions through the Gateway: not one request fails, and each step serves the
versions kubectl says it serves."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import node as real_node
import traefik
import traffic
import waiting
import workloads
from kube_control_plane import ControlPlane


def kubectl_berth(plane: ControlPlane, *args: str) -> str:
    """The `kubectl berth` plugin, found on PATH as kubectl finds it."""
    env = dict(plane.env)
    env["PATH"] = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        [str(plane.bin_dir / "kubectl"), "berth", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


def patch(plane: ControlPlane, namespace: str, body: object, kind: str = "merge") -> None:
    plane.kubectl(
        "patch", "md", "affine", "-n", namespace, f"--type={kind}", "-p", json.dumps(body)
    )


def settled(plane: ControlPlane, namespace: str, *, stable: int, replicas: int) -> None:
    """Ready, the rollout complete, only the stable track's pods left, and all of them ready."""
    workloads.wait_condition(plane, namespace, "affine")
    workloads.wait_condition(plane, namespace, "affine", "Progressing", status="False")

    def pods() -> list[tuple[str, bool]]:
        return [
            (
                p["metadata"]["labels"].get("serving.berth.dev/version", ""),
                all(c["ready"] for c in p["status"].get("containerStatuses", [{"ready": False}])),
            )
            for p in workloads.pods(plane, namespace, "app.kubernetes.io/instance=affine")
        ]

    waiting.wait_for(
        pods,
        timeout_seconds=workloads.ROLLOUT_SECONDS,
        interval_seconds=1.0,
        message=f"{replicas} ready pods of version {stable} and no others",
        until=lambda seen: seen == [(str(stable), True)] * replicas,
    )


def roll_back(plane: ControlPlane, namespace: str, gateway: traefik.Traefik) -> None:
    """A canary of version 3 taking 20 % of the traffic, then removed (the README's rollback)."""
    patch(plane, namespace, {"spec": {"canary": {"version": 3, "weight": 20}}})
    traffic.wait_canary_weight(gateway, namespace, 20)
    patch(plane, namespace, [{"op": "remove", "path": "/spec/canary"}], "json")


def test_rollout_steps_lose_no_request(
    control_plane: ControlPlane,
    node: real_node.RealNode,
    namespace: str,
    affine_models: pathlib.Path,
    gateway_controller: traefik.Traefik,
    gateway: dict[str, str],
) -> None:
    routing = {"provider": "gateway-api", "parentRef": gateway, "grpcParentRef": gateway}
    workloads.apply(
        control_plane,
        namespace,
        workloads.model_deployment(
            "affine",
            traffic.MODEL,
            affine_models,
            stable={"version": 1},
            canary={"version": 2, "weight": 50},
            replicas=2,
            traffic=routing,
        ),
    )
    workloads.wait_condition(control_plane, namespace, "affine")
    traffic.wait_canary_weight(gateway_controller, namespace, 50)
    grpc_versions = traffic.GrpcVersions()
    streams = [traffic.Stream("rest", traffic.rest_version), traffic.Stream("grpc", grpc_versions)]
    for stream in streams:
        stream.start()
    try:
        steps = {
            "promote": lambda: kubectl_berth(control_plane, "promote", "affine", "-n", namespace),
            "rollback": lambda: roll_back(control_plane, namespace, gateway_controller),
            "new stable version": lambda: patch(
                control_plane, namespace, {"spec": {"stable": {"version": 3}}}
            ),
            "scale down": lambda: patch(control_plane, namespace, {"spec": {"replicas": 1}}),
        }
        expected = {
            "promote": (2, 2),
            "rollback": (2, 2),
            "new stable version": (3, 2),
            "scale down": (3, 1),
        }
        for step, act in steps.items():
            for stream in streams:
                stream.mark(step)
            act()
            stable, replicas = expected[step]
            settled(control_plane, namespace, stable=stable, replicas=replicas)
            for stream in streams:
                stream.mark(f"after {step}")
            for stream in streams:
                waiting.wait_for(
                    lambda s=stream, step=step: s.count(f"after {step}"),
                    timeout_seconds=60,
                    message=f"{stream.name} answers after {step}",
                    until=lambda n: n >= 20,
                )
                assert stream.versions(f"after {step}") == {stable}, (step, stream.answers)
    finally:
        for stream in streams:
            stream.stop()
        grpc_versions.close()
    for stream in streams:
        assert not stream.failures, (stream.name, stream.failures[:20], len(stream.failures))
        for step in steps:
            assert stream.count(step) > 0, (stream.name, step, stream.answers)
