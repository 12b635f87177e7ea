"""Run the operator as a real process against the loopback control plane, and wait on what it does.

The operator is started exactly as a user would start it (`python -m berth_operator --namespace
…`), with the control plane's KUBECONFIG; tests drive it with kubectl only.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from kube_control_plane import ControlPlane

REPO = pathlib.Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "deploy" / "crds" / "modeldeployments.serving.berth.dev.yaml"
RESYNC_SECONDS = 1.0
PROBE_CACHE_SECONDS = 10.0  # kopf caches probe results this long
T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | None], *, timeout: float, what: str, every: float = 0.5
) -> T:
    """Poll until `condition()` returns something truthy and return it."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


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

    return wait_for(ready, timeout=timeout, what=f"ModelDeployment {name} Ready")


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

    return wait_for(matches, timeout=timeout, what=what)


def backend_weights(plane: ControlPlane, namespace: str, route: str) -> dict[str, int]:
    obj = get(plane, namespace, "httproute", route)
    assert obj is not None, f"HTTPRoute {route} missing"
    return {ref["name"]: ref["weight"] for ref in obj["spec"]["rules"][0]["backendRefs"]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Operator:
    """The operator process for one namespace; restartable."""

    def __init__(self, plane: ControlPlane, namespace: str, log_path: pathlib.Path) -> None:
        self.plane, self.namespace, self.log_path = plane, namespace, log_path
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "berth_operator",
            "--namespace",
            self.namespace,
            f"--liveness=http://127.0.0.1:{self.port}/healthz",
            f"--resync-seconds={RESYNC_SECONDS}",
            "--verbose",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=client_env(self.plane),
                cwd=REPO,
            )
        wait_for(self._alive, timeout=60, what="operator liveness endpoint")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _alive(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"operator exited {self.process.returncode}:\n{self.log()}")
        try:
            self.health()
        except OSError:
            return False
        return True

    def health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as reply:
            data: dict[str, Any] = json.loads(reply.read())
            return data

    def writes(self) -> int:
        """API writes the operator made, as its liveness endpoint reports them (10 s cache)."""
        return int(self.health()["writes"])

    def logged_writes(self) -> int:
        """API writes so far, from the operator's `write N: METHOD PATH` log lines (no cache)."""
        numbers = [int(m) for m in re.findall(r"\bwrite (\d+): ", self.log_path.read_text())]
        return max(numbers, default=0)

    def log(self, lines: int = 80) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
