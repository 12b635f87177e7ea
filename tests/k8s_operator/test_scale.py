"""Fifty ModelDeployments at once all become Ready, and then the operator stops writing."""

from __future__ import annotations

import json
import time

import waiting
from kube_control_plane import ControlPlane
from operator_harness import Operator, condition, kubectl, model_deployment

COUNT = 50
QUIET_SECONDS = 15.0


def _all(plane: ControlPlane, namespace: str) -> list[dict[str, object]]:
    out = kubectl(plane, "get", "md", "-n", namespace, "-o", "json").stdout
    items: list[dict[str, object]] = json.loads(out)["items"]
    return items


def _world(plane: ControlPlane, namespace: str) -> str:
    """resourceVersions of the Deployments: they change when pods change readiness."""
    jsonpath = "jsonpath={range .items[*]}{.metadata.resourceVersion} {end}"
    return kubectl(plane, "get", "deployments", "-n", namespace, "-o", jsonpath).stdout


def test_fifty_model_deployments_become_ready_and_the_operator_then_stops_writing(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    items = [model_deployment(f"model-{i:02d}") for i in range(COUNT)]
    began = time.monotonic()
    kubectl(
        control_plane,
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
    )

    def all_ready() -> bool:
        mds = _all(control_plane, namespace)
        return len(mds) == COUNT and all(
            (condition(md, "Ready") or {}).get("status") == "True" for md in mds
        )

    waiting.wait_for(
        all_ready,
        timeout_seconds=240,
        interval_seconds=2,
        message=f"{COUNT} ModelDeployments Ready",
    )
    ready_seconds = time.monotonic() - began

    def quiet_window() -> int | None:
        """The write count, if it stayed put for QUIET_SECONDS while the cluster stood still.

        A window in which pods changed readiness (the fake nodes can miss heartbeats on a busy
        machine) does not count: the operator is right to report that in status.
        """
        writes, world = berth_operator.logged_writes(), _world(control_plane, namespace)
        time.sleep(QUIET_SECONDS)
        if _world(control_plane, namespace) != world:
            return None
        after = berth_operator.logged_writes()
        assert after == writes, f"{after - writes} writes while nothing changed"
        return writes

    writes = waiting.wait_for(
        quiet_window, timeout_seconds=180, interval_seconds=0, message="a quiet window"
    )
    # About seven applies per resource, plus status patches as its pods turn ready: a busy
    # machine makes pods turn ready in more steps, each one a status write.
    assert writes <= COUNT * 15, f"{writes} writes for {COUNT} ModelDeployments"
    assert berth_operator.writes() >= writes  # the liveness endpoint reports the same counter
    print(f"{COUNT} ModelDeployments Ready in {ready_seconds:.1f}s; {writes} writes in total")
