"""Run the operator as a real process against the loopback control plane, and wait on what it does.

The operator is started exactly as a user would start it (`python -m berth_operator --namespace
…`), with the control plane's KUBECONFIG; tests drive it with kubectl only.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import processes
import waiting
from kube_control_plane import ControlPlane
from prometheus_client.parser import text_string_to_metric_families

REPO = pathlib.Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "deploy" / "crds" / "modeldeployments.serving.berth.dev.yaml"
RESYNC_SECONDS = 1.0
DRAIN_SECONDS = 1.0
PROBE_CACHE_SECONDS = 10.0  # kopf caches probe results this long
STOP_GRACE_SECONDS = 15.0


def client_env(plane: ControlPlane) -> dict[str, str]:
    """The plane's env plus this interpreter's bin dir, so `kubectl berth` finds kubectl-berth."""
    env = dict(plane.env)
    env["PATH"] = f"{plane.env['PATH']}{os.pathsep}{pathlib.Path(sys.executable).parent}"
    return env


def kubectl(
    plane: ControlPlane,
    *args: str,
    input: str | None = None,  # noqa: A002
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """kubectl with `client_env` (so plugins resolve); raises with stderr when `check`."""
    result = subprocess.run(
        [str(plane.bin_dir / "kubectl"), *args],
        input=input,
        capture_output=True,
        text=True,
        env=client_env(plane),
        timeout=120,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result


def get(plane: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    """One object as JSON, or None when it does not exist."""
    result = kubectl(plane, "get", kind, name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise AssertionError(result.stderr)
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def gone(plane: ControlPlane, namespace: str, kind: str, name: str) -> bool:
    return get(plane, namespace, kind, name) is None


def apply(plane: ControlPlane, namespace: str, manifest: dict[str, Any]) -> None:
    kubectl(plane, "apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def merge_patch(
    plane: ControlPlane,
    namespace: str,
    kind: str,
    name: str,
    body: dict[str, Any],
    *,
    subresource: str | None = None,
) -> None:
    """`kubectl patch --type=merge`, as a user edits one field (on a subresource when given)."""
    where = [f"--subresource={subresource}"] if subresource else []
    kubectl(
        plane, "patch", kind, name, "-n", namespace, *where, "--type=merge", "-p", json.dumps(body)
    )


def fill_pod_quota(plane: ControlPlane, namespace: str, pods: int) -> None:
    """A quota of the `pods` the namespace holds: no further pod can be created, as with an
    exhausted quota. Returns once the apiserver counts them against it."""
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "full"},
        "spec": {"hard": {"pods": str(pods)}},
    }
    apply(plane, namespace, quota)
    waiting.wait_for(
        lambda: (
            (get(plane, namespace, "resourcequota", "full") or {})
            .get("status", {})
            .get("used", {})
            .get("pods")
            == str(pods)
        ),
        timeout_seconds=30,
        message="quota usage",
        interval_seconds=0.5,
    )


def model_deployment(name: str, **spec: Any) -> dict[str, Any]:
    """A ModelDeployment with a hostPath model, version 1, one replica; `spec` overrides."""
    base: dict[str, Any] = {
        "model": {"name": "half_plus_two", "storage": {"hostPath": {"path": "/srv/models/hpt"}}},
        "stable": {"version": 1},
        "replicas": 1,
    }
    return {
        "apiVersion": "serving.berth.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {**base, **spec},
    }


CPU = {"requests": {"cpu": "100m"}}
"""A cpu request: what an autoscaler on CPU utilisation needs."""


def autoscaled(name: str, **spec: Any) -> dict[str, Any]:
    """A ModelDeployment without `replicas`, which excludes `autoscaling`."""
    manifest = model_deployment(name, **{"resources": CPU, **spec})
    del manifest["spec"]["replicas"]
    return manifest


@contextmanager
def replica_counts(plane: ControlPlane, namespace: str, deployment: str) -> Iterator[list[int]]:
    """Every `spec.replicas` the Deployment takes while the block runs, from a watch."""
    seen: list[int] = []
    watch = subprocess.Popen(
        [
            str(plane.bin_dir / "kubectl"),
            "get",
            "deployment",
            deployment,
            "-n",
            namespace,
            "--watch",
            "-o",
            'jsonpath={.spec.replicas}{"\\n"}',
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=client_env(plane),
    )
    assert watch.stdout is not None
    reader = threading.Thread(
        target=lambda: seen.extend(int(line) for line in watch.stdout or () if line.strip())
    )
    reader.start()
    try:
        waiting.wait_for(
            lambda: seen,
            timeout_seconds=180,
            interval_seconds=0.1,
            message="the watch's first event",
        )
        yield seen
    finally:
        watch.terminate()
        watch.wait(timeout=10)
        reader.join(timeout=10)
        watch.stdout.close()


def condition(md: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for entry in (md or {}).get("status", {}).get("conditions", []):
        if entry["type"] == kind:
            found: dict[str, Any] = entry
            return found
    return None


def wait_ready(
    plane: ControlPlane, namespace: str, name: str, timeout: float = 60
) -> dict[str, Any]:
    """Wait until Ready=True and the status describes the current generation."""

    def ready() -> dict[str, Any] | None:
        md = get(plane, namespace, "modeldeployment", name)
        cond = condition(md, "Ready")
        if (
            md
            and cond
            and cond["status"] == "True"
            and md["status"].get("observedGeneration") == md["metadata"]["generation"]
        ):
            return md
        return None

    return waiting.wait_for(
        ready,
        timeout_seconds=timeout,
        interval_seconds=0.5,
        message=f"ModelDeployment {name} Ready",
    )


def wait_status(
    plane: ControlPlane,
    namespace: str,
    name: str,
    check: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 60,
    what: str,
) -> dict[str, Any]:
    def matches() -> dict[str, Any] | None:
        md = get(plane, namespace, "modeldeployment", name)
        return md if md and check(md.get("status", {})) else None

    return waiting.wait_for(matches, timeout_seconds=timeout, interval_seconds=0.5, message=what)


def backend_weights(plane: ControlPlane, namespace: str, route: str) -> dict[str, int]:
    obj = get(plane, namespace, "httproute", route)
    assert obj is not None, f"HTTPRoute {route} missing"
    return {ref["name"]: ref["weight"] for ref in obj["spec"]["rules"][0]["backendRefs"]}


Samples = dict[str, list[tuple[dict[str, str], float]]]
"""One scrape of the metrics endpoint: {family or sample name: [(labels, value)]}."""


class Operator:
    """The operator process for one namespace; restartable (each start appends to one log)."""

    def __init__(
        self,
        plane: ControlPlane,
        namespace: str,
        log_path: pathlib.Path,
        args: tuple[str, ...] = ("--allow-host-path",),
        *,
        metrics: bool = False,
        verbose: bool = True,
    ) -> None:
        """`args` are the extra flags; by default hostPath models (the tests' own) are served.
        `metrics` serves the Prometheus endpoint on a free port (`samples`); `verbose` logs
        every reconcile step."""
        self.plane, self.namespace, self.log_path = plane, namespace, log_path
        self.args = args
        self.verbose = verbose
        self.port = processes.free_port()
        self.metrics_port = processes.free_port() if metrics else None
        self._process: processes.LoggedProcess | None = None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._process.popen if self._process is not None else None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "berth_operator",
            "--namespace",
            self.namespace,
            f"--liveness=http://127.0.0.1:{self.port}/healthz",
            f"--resync-seconds={RESYNC_SECONDS}",
            f"--drain-seconds={DRAIN_SECONDS}",
            *(["--verbose"] if self.verbose else []),
            *([] if self.metrics_port is None else [f"--metrics-port={self.metrics_port}"]),
            *self.args,
        ]
        self._process = processes.start(
            command, name="operator", log_path=self.log_path, env=client_env(self.plane), cwd=REPO
        )
        self._process.wait_until(self._answers, timeout_seconds=90, message="operator liveness")

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop(grace_seconds=STOP_GRACE_SECONDS)
        self._process = None

    def _answers(self) -> bool:
        try:
            self.health()
        except OSError:
            return False
        return True

    def health(self) -> dict[str, Any]:
        return processes.get_json(f"http://127.0.0.1:{self.port}/healthz")

    def writes(self) -> int:
        """API writes the operator made, as its liveness endpoint reports them (10 s cache)."""
        return int(self.health()["writes"])

    def logged_writes(self) -> int:
        """API writes so far, from the operator's `write N: METHOD PATH` log lines (no cache)."""
        numbers = [int(m) for m in re.findall(r"\bwrite (\d+): ", self.log_path.read_text())]
        return max(numbers, default=0)

    def samples(self) -> Samples:
        """One scrape of the metrics endpoint (an operator started with `metrics`)."""
        assert self.metrics_port is not None, "started without metrics"
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read().decode()
        found: Samples = {}
        for family in text_string_to_metric_families(text):
            found.setdefault(family.name, [])
            for sample in family.samples:
                found.setdefault(sample.name, []).append((sample.labels, sample.value))
        return found

    def log(self, lines: int = 80) -> str:
        return processes.tail(self.log_path, lines, width=100_000)
