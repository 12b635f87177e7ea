"""The operator at scale: its memory and API writes with 1,000 ModelDeployments on a control plane.

    python -m bench.operator_scale [--count 1000] [--namespaces 4] [--json]

Needs `make k8s-bins`. Starts the loopback control plane (tests/kube_control_plane.py, with a
service range wide enough for two Services per ModelDeployment) and fake nodes enough for one
server pod each, installs the CRD, and runs the operator as a process the way the chart does (its
resync period, metrics on, not verbose) over `--namespaces` namespaces. Then the steps of
tests/k8s_operator/scale_scenario.py: create `--count` ModelDeployments, wait until each is Ready
at its generation, then run resync rounds until one makes no write. Reported: the operator's RSS
(VmRSS) at start and once quiet, its peak (VmHWM) against the chart's memory limit
(deploy/helm/berth/values.yaml), its writes by kind and per ModelDeployment (its own
`berth_operator_writes_total`), the seconds until all were Ready and until a round was quiet;
then the same for a restarted operator over the settled objects, whose writes should be none.
test_scale_scenario.py asserts the behaviour at a small count; the numbers here depend on the
machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "k8s_operator")]
import kube_control_plane  # noqa: E402
import operator_harness  # noqa: E402
import scale_scenario  # noqa: E402

VALUES = ROOT / "deploy" / "helm" / "berth" / "values.yaml"
SERVICE_CIDR = "10.0.0.0/16"
"""Two Services per ModelDeployment: the tests' /24 holds 254 cluster IPs."""
PODS_PER_NODE = 250
MIB = 2**20
_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def chart_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(VALUES.read_text())
    return values


def quantity_bytes(text: str) -> int:
    """A memory quantity as the chart writes it (384Mi, 1Gi, or plain bytes)."""
    for suffix, scale in _BINARY_SUFFIXES.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * scale)
    return int(text)


def add_nodes(plane: kube_control_plane.ControlPlane, pods: int) -> None:
    """Fake nodes (kwok's annotation) with room for `pods` more pods."""
    capacity = {"cpu": "1000", "memory": "4Ti", "pods": str(PODS_PER_NODE)}
    nodes = [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": f"kwok-scale-{index}",
                "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {"kubernetes.io/hostname": f"kwok-scale-{index}", "type": "kwok"},
            },
            "status": {"capacity": capacity, "allocatable": capacity},
        }
        for index in range(-(-pods // PODS_PER_NODE))
    ]
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes})
    plane.kubectl("apply", "--server-side", "-f", "-", input=manifest)
    plane.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=120s")


def settle(
    plane: kube_control_plane.ControlPlane,
    operator: operator_harness.Operator,
    dealt: dict[str, list[str]],
    *,
    create: bool,
    timeout: float,
) -> dict[str, Any]:
    """Create the ModelDeployments (or not: a restart), wait for them, read the operator."""
    pid = _pid(operator)
    started = scale_scenario.memory(pid)
    began = time.monotonic()
    if create:
        scale_scenario.create(plane, dealt)
    scale_scenario.wait_reconciled(plane, operator, dealt, timeout=timeout)
    ready = time.monotonic() - began
    rounds = scale_scenario.wait_quiet(plane, operator, dealt, timeout=timeout)
    quiet = time.monotonic() - began
    settled = scale_scenario.memory(pid)
    written = scale_scenario.writes(operator)
    count = sum(map(len, dealt.values()))
    return {
        "start_rss_bytes": started.rss_bytes,
        "settled_rss_bytes": settled.rss_bytes,
        "peak_rss_bytes": settled.peak_rss_bytes,
        "ready_seconds": ready,
        "quiet_seconds": quiet,
        "rounds": rounds,
        "writes": scale_scenario.total(written),
        "writes_per_model_deployment": scale_scenario.total(written) / count,
        "writes_by_kind": {f"{kind} {verb}": n for (kind, verb), n in sorted(written.items())},
    }


def _pid(operator: operator_harness.Operator) -> int:
    assert operator.process is not None, "the operator is not running"
    return operator.process.pid


def run(count: int, namespace_count: int, timeout: float, work_dir: Path) -> dict[str, Any]:
    values = chart_values()
    with kube_control_plane.running(work_dir=work_dir / "control-plane",
                                    service_cidr=SERVICE_CIDR) as plane:
        plane.kubectl("apply", "--server-side", "-f", str(operator_harness.CRD_FILE))
        plane.kubectl(
            "wait", "--for=condition=Established", "crd/modeldeployments.serving.berth.dev"
        )
        add_nodes(plane, count)
        namespaces = [plane.create_namespace("scale") for _ in range(namespace_count)]
        others = [arg for namespace in namespaces[1:] for arg in ("--namespace", namespace)]
        operator = operator_harness.Operator(
            plane,
            namespaces[0],
            work_dir / "operator.log",
            args=(
                "--allow-host-path",
                f"--resync-seconds={values['operator']['resyncSeconds']}",
                *others,
            ),
            metrics=True,
            verbose=False,
        )
        dealt = scale_scenario.names(count, namespaces)
        operator.start()
        try:
            first = settle(plane, operator, dealt, create=True, timeout=timeout)
            operator.stop()
            operator.start()
            restarted = settle(plane, operator, dealt, create=False, timeout=timeout)
        finally:
            operator.stop()
    limit = values["resources"]["limits"]["memory"]
    return {
        "count": count,
        "namespaces": namespace_count,
        "chart_memory_limit": limit,
        "chart_memory_limit_bytes": quantity_bytes(limit),
        "created": first,
        "restarted": restarted,
    }


def render(result: dict[str, Any]) -> str:
    """A markdown table: one column for the first settle, one after the restart."""
    limit = result["chart_memory_limit_bytes"]
    rows = [
        ("operator RSS at start (MiB)", lambda r: f"{r['start_rss_bytes'] / MIB:.0f}"),
        ("operator RSS settled (MiB)", lambda r: f"{r['settled_rss_bytes'] / MIB:.0f}"),
        ("operator peak RSS (MiB)", lambda r: f"{r['peak_rss_bytes'] / MIB:.0f}"),
        ("peak / chart limit", lambda r: f"{r['peak_rss_bytes'] / limit:.0%}"),
        ("all Ready after (s)", lambda r: f"{r['ready_seconds']:.0f}"),
        ("a quiet resync after (s)", lambda r: f"{r['quiet_seconds']:.0f} ({r['rounds']} rounds)"),
        ("API writes", lambda r: str(r["writes"])),
        ("writes per ModelDeployment", lambda r: f"{r['writes_per_model_deployment']:.2f}"),
    ]
    first, again = result["created"], result["restarted"]
    lines = [
        f"{result['count']} ModelDeployments in {result['namespaces']} namespaces; "
        f"chart memory limit {result['chart_memory_limit']}",
        "",
        "| | created | after a restart |",
        "|---|---|---|",
        *(f"| {name} | {cell(first)} | {cell(again)} |" for name, cell in rows),
        "",
        "writes by kind (created): "
        + ", ".join(f"{kind} {n}" for kind, n in first["writes_by_kind"].items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.operator_scale", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--count", type=int, default=1000, help="ModelDeployments to create")
    parser.add_argument("--namespaces", type=int, default=4, help="namespaces they are dealt to")
    parser.add_argument(
        "--timeout", type=float, default=3600, help="seconds each wait may take before failing"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON too")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="berth-operator-scale-") as work:
        result = run(args.count, args.namespaces, args.timeout, Path(work))
        print(render(result))
        if args.json:
            print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
