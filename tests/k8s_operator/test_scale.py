"""Fifty ModelDeployments at once all become Ready, and then the operator stops writing."""

from __future__ import annotations

import json
import time

from kube_control_plane import ControlPlane
from operator_harness import (
    PROBE_CACHE_SECONDS,
    Operator,
    condition,
    kubectl,
    model_deployment,
    wait_for,
)

COUNT = 50


def _all(plane: ControlPlane, namespace: str) -> list[dict[str, object]]:
    out = kubectl(plane, "get", "md", "-n", namespace, "-o", "json").stdout
    items: list[dict[str, object]] = json.loads(out)["items"]
    return items


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
            (condition(md, "Ready") or {}).get("status") == "True"
            for md in mds  # type: ignore[arg-type]
        )

    wait_for(all_ready, timeout=240, every=2, what=f"{COUNT} ModelDeployments Ready")
    ready_seconds = time.monotonic() - began

    def steady() -> tuple[int, dict[str, object]] | None:
        """Writes and resourceVersions unchanged across one probe-cache period."""
        writes = berth_operator.writes()
        versions = {
            md["metadata"]["name"]: md["metadata"]["resourceVersion"]  # type: ignore[index]
            for md in _all(control_plane, namespace)
        }
        time.sleep(PROBE_CACHE_SECONDS + 1)
        again = {
            md["metadata"]["name"]: md["metadata"]["resourceVersion"]  # type: ignore[index]
            for md in _all(control_plane, namespace)
        }
        return (
            (writes, versions) if berth_operator.writes() == writes and again == versions else None
        )

    writes, _ = wait_for(steady, timeout=120, every=0, what="no writes for a probe period")
    time.sleep(PROBE_CACHE_SECONDS + 1)
    assert berth_operator.writes() == writes
    print(f"{COUNT} ModelDeployments Ready in {ready_seconds:.1f}s; {writes} writes in total")
