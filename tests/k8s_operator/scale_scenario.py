"""Many ModelDeployments at once: create them, wait until each is reconciled, then watch the
operator through rounds in which it re-checks every one of them, and read what it wrote.

Shared by test_scale_scenario.py (a few dozen ModelDeployments; it asserts behaviour) and
`python -m bench.operator_scale` (a thousand; it reports the numbers). Nothing here judges time
or memory: `memory` reads them for the bench, the waits only bound a hang.

A round is over when the operator counted three reconciles per ModelDeployment since it began
(`berth_operator_reconciles_total`). Each one's resync timer fires at most once per resync
period, so that many span at least two periods, in which every timer fired. A quiet round made
no write while the cluster stood still (the resourceVersions of the Deployments held): an
operator that settled makes none. Pods changing readiness on the fake nodes (kwok can miss a
heartbeat on a busy machine) are real changes the status must follow, so such a round does not
count, either way.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import waiting
from kube_control_plane import ControlPlane
from operator_harness import Operator, model_deployment

BATCH = 200
"""ModelDeployments per `kubectl create`: one request each, and a List kubectl parses quickly."""
RECONCILES_PER_ROUND = 3
_RECONCILED = (
    '{range .items[*]}{.metadata.name} {.metadata.generation} {.status.observedGeneration} '
    '{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}'
)

Writes = dict[tuple[str, str], int]
"""API writes the operator counted, by (kind, verb)."""


@dataclasses.dataclass(frozen=True)
class Memory:
    rss_bytes: int
    peak_rss_bytes: int
    """VmHWM: the most the process held resident since it started."""


def memory(pid: int) -> Memory:
    """VmRSS and VmHWM of a live process, from /proc/<pid>/status."""
    fields = dict(
        line.split(":", 1) for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines()
    )

    def kib(key: str) -> int:
        return int(fields[key].split()[0]) * 1024

    return Memory(rss_bytes=kib("VmRSS"), peak_rss_bytes=kib("VmHWM"))


def names(count: int, namespaces: Sequence[str]) -> dict[str, list[str]]:
    """`count` ModelDeployment names dealt round-robin over `namespaces`."""
    dealt: dict[str, list[str]] = {namespace: [] for namespace in namespaces}
    for index in range(count):
        dealt[namespaces[index % len(namespaces)]].append(f"model-{index:04d}")
    return dealt


def create(plane: ControlPlane, dealt: dict[str, list[str]], **spec: Any) -> None:
    """Create the ModelDeployments (`operator_harness.model_deployment`, `spec` overrides)."""
    for namespace, batch in _batches(dealt):
        items = [model_deployment(name, **spec) for name in batch]
        plane.kubectl(
            "create",
            "-n",
            namespace,
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
            timeout=600,
        )


def _batches(dealt: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    return [
        (namespace, batch[start : start + BATCH])
        for namespace, batch in dealt.items()
        for start in range(0, len(batch), BATCH)
    ]


def unreconciled(plane: ControlPlane, dealt: dict[str, list[str]]) -> list[str]:
    """`namespace/name` of each ModelDeployment whose status does not yet say Ready for its
    current generation (missing ones included)."""
    behind = []
    for namespace, wanted in dealt.items():
        listed = plane.kubectl("get", "md", "-n", namespace, "-o", f"jsonpath={_RECONCILED}")
        done = {
            fields[0]
            for fields in (line.split() for line in listed.stdout.splitlines())
            if len(fields) == 4 and fields[1] == fields[2] and fields[3] == "True"
        }
        behind += [f"{namespace}/{name}" for name in wanted if name not in done]
    return behind


def wait_reconciled(
    plane: ControlPlane, operator: Operator, dealt: dict[str, list[str]], *, timeout: float
) -> None:
    def behind() -> list[str]:
        _alive(operator)
        return unreconciled(plane, dealt)

    waiting.wait_for(
        behind,
        until=lambda left: not left,
        timeout_seconds=timeout,
        interval_seconds=2,
        message="every ModelDeployment Ready at its generation",
    )


def writes(operator: Operator) -> Writes:
    """The operator's `berth_operator_writes_total`, by (kind, verb)."""
    return {
        (labels["kind"], labels["verb"]): int(value)
        for labels, value in operator.samples().get("berth_operator_writes_total", [])
    }


def total(counted: Writes) -> int:
    return sum(counted.values())


@dataclasses.dataclass(frozen=True)
class Round:
    writes: int
    """Writes the operator made during the round."""
    still: bool
    """Whether the cluster stood still meanwhile (no Deployment changed)."""


def reconciles(operator: Operator) -> int:
    """Reconciles so far, whatever their result (`berth_operator_reconciles_total`)."""
    return int(sum(value for _, value in operator.samples()["berth_operator_reconciles_total"]))


def resync_round(
    plane: ControlPlane, operator: Operator, dealt: dict[str, list[str]], *, timeout: float
) -> Round:
    """Wait until the operator has re-checked every ModelDeployment from now on."""
    before, still_as = total(writes(operator)), world(plane, dealt)
    wanted = reconciles(operator) + RECONCILES_PER_ROUND * sum(map(len, dealt.values()))

    def done() -> int:
        _alive(operator)
        return reconciles(operator)

    waiting.wait_for(
        done,
        until=lambda count: count >= wanted,
        timeout_seconds=timeout,
        interval_seconds=1,
        message=f"{wanted} reconciles in all",
    )
    return Round(writes=total(writes(operator)) - before, still=world(plane, dealt) == still_as)


def wait_quiet(
    plane: ControlPlane, operator: Operator, dealt: dict[str, list[str]], *, timeout: float
) -> int:
    """Run rounds until one is quiet; returns how many rounds that took (the quiet one too)."""
    deadline = time.monotonic() + timeout
    rounds: list[Round] = []

    def quiet() -> bool:
        left = max(1.0, deadline - time.monotonic())
        rounds.append(resync_round(plane, operator, dealt, timeout=left))
        return rounds[-1].still and rounds[-1].writes == 0

    waiting.wait_for(
        quiet, timeout_seconds=timeout, interval_seconds=0, message="a resync without writes"
    )
    return len(rounds)


def world(plane: ControlPlane, dealt: dict[str, list[str]]) -> list[str]:
    """The Deployments' resourceVersions: they change when a pod changes readiness."""
    jsonpath = "jsonpath={range .items[*]}{.metadata.resourceVersion} {end}"
    return [plane.kubectl("get", "deployments", "-n", ns, "-o", jsonpath).stdout for ns in dealt]


def _alive(operator: Operator) -> None:
    process = operator.process
    if process is None or process.poll() is not None:
        raise AssertionError(f"the operator is not running; its log ends:\n{operator.log(40)}")
