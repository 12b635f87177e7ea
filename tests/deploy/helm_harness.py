"""The real `helm` binary on the chart, ServiceAccount identities, the operator as a process.

Everything runs as a user would run it: `helm` and `kubectl` subprocesses with the control plane's
KUBECONFIG, the operator as `python -m berth_operator` with a kubeconfig that holds a ServiceAccount
token (from the TokenRequest API, as the kubelet would mount it), so the API server authorizes the
operator exactly as it would authorize the chart's pod.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import kube_control_plane
import processes
import waiting
import yaml
from kube_control_plane import ControlPlane

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "berth"
CRD_SOURCE = REPO / "deploy" / "crds" / "modeldeployments.serving.berth.dev.yaml"
CRD_NAME = "modeldeployments.serving.berth.dev"
STOP_GRACE_SECONDS = 20.0


def helm_binary() -> pathlib.Path:
    return kube_control_plane.default_bin_dir() / "helm"


def kube_version() -> str:
    """The Kubernetes version the test binaries were built at; `helm template` and `helm lint`
    render for it (the helm build carries no default of its own, so it would say v1.20)."""
    kubectl = kube_control_plane.default_bin_dir() / "kubectl"
    out = subprocess.run(
        [str(kubectl), "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    version: str = json.loads(out)["clientVersion"]["gitVersion"]
    return version


def helm(
    *args: str, env: dict[str, str], check: bool = True, timeout: float = 180.0
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(helm_binary()), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def set_args(values: dict[str, Any]) -> list[str]:
    """`--set-json key=<json>` per top-level key: exact types, no --set string parsing."""
    return [
        arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")
    ]


def render(
    env: dict[str, str], values: dict[str, Any] | None = None, *, namespace: str = "berth-system"
) -> list[dict[str, Any]]:
    """`helm template` of the chart: the objects it would install, parsed."""
    out = helm(
        "template",
        "berth",
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        kube_version(),
        *set_args(values or {}),
        env=env,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objs: Sequence[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def adopt_crd(plane: ControlPlane, release: str, namespace: str) -> None:
    """Hand an existing ModelDeployment CRD to `release` (Helm's adoption annotations), as the
    README tells users whose CRD was applied with kubectl or by another release."""
    found = plane.kubectl("get", "crd", CRD_NAME, "--ignore-not-found", "-o", "name").stdout
    if not found.strip():
        return
    plane.kubectl("label", "crd", CRD_NAME, "--overwrite", "app.kubernetes.io/managed-by=Helm")
    plane.kubectl(
        "annotate",
        "crd",
        CRD_NAME,
        "--overwrite",
        f"meta.helm.sh/release-name={release}",
        f"meta.helm.sh/release-namespace={namespace}",
    )


def service_account_kubeconfig(
    plane: ControlPlane, namespace: str, account: str, path: pathlib.Path
) -> pathlib.Path:
    """A kubeconfig whose only credential is a token of `namespace/account`."""
    token = plane.kubectl(
        "create", "token", account, "-n", namespace, "--duration=2h"
    ).stdout.strip()
    admin = json.loads(plane.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {
                "name": account,
                "context": {"cluster": admin["clusters"][0]["name"], "user": account},
            }
        ],
        "current-context": account,
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def can_i(plane: ControlPlane, user: str, verb: str, resource: str, *where: str) -> bool:
    """`kubectl auth can-i VERB RESOURCE --as=USER`: the API server's own answer."""
    result = plane.kubectl("auth", "can-i", verb, resource, f"--as={user}", *where, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"


class OperatorProcess:
    """`python -m berth_operator ARGS` with a given kubeconfig; its log is kept for failures."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        kubeconfig: pathlib.Path,
        log_path: pathlib.Path,
        command: Sequence[str] = (sys.executable, "-m", "berth_operator"),
        env: dict[str, str] | None = None,
        cwd: pathlib.Path | None = None,
    ) -> None:
        self.port = processes.free_port()
        self.command = [*command, *args, f"--liveness=http://127.0.0.1:{self.port}/healthz"]
        self.log_path = log_path
        self.env = {**(env or os.environ), "KUBECONFIG": str(kubeconfig)}
        self.cwd = cwd or REPO
        self._process: processes.LoggedProcess | None = None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._process.popen if self._process is not None else None

    def __enter__(self) -> OperatorProcess:
        self._process = processes.start(
            self.command, name="operator", log_path=self.log_path, env=self.env, cwd=self.cwd
        )
        self._process.wait_until(
            self._answers,
            timeout_seconds=90,
            interval_seconds=0.5,
            message=f"operator liveness on port {self.port}",
        )
        return self

    def __exit__(self, *_: object) -> None:
        if self._process is not None:
            self._process.stop(grace_seconds=STOP_GRACE_SECONDS)

    def _answers(self) -> bool:
        try:
            self.health()
        except OSError:
            return False
        return True

    def health(self) -> dict[str, Any]:
        return processes.get_json(f"http://127.0.0.1:{self.port}/healthz")

    def log(self, lines: int = 120) -> str:
        return processes.tail(self.log_path, lines, width=100_000)

    def refusals(self) -> list[str]:
        """Log lines where the API server refused the operator something."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return [line for line in text.splitlines() if "Forbidden" in line or " 403" in line]


def ready_condition(md: dict[str, Any]) -> bool:
    status = md.get("status", {})
    ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
    return bool(
        ready
        and ready[0]["status"] == "True"
        and status.get("observedGeneration") == md["metadata"]["generation"]
    )


def wait_ready(
    plane: ControlPlane, namespace: str, name: str, timeout: float = 90
) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        md = plane.kubectl_json("get", "md", name, "-n", namespace)
        return md if ready_condition(md) else None

    return waiting.wait_for(
        ready,
        timeout_seconds=timeout,
        interval_seconds=0.5,
        message=f"ModelDeployment {namespace}/{name} Ready",
    )


def load_yaml_docs(path: pathlib.Path) -> Iterator[dict[str, Any]]:
    yield from (doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def delete_model_deployments(plane: ControlPlane, namespace: str) -> None:
    """Delete every ModelDeployment of `namespace` and wait: call it while an operator runs, since
    each carries the operator's finalizer (a namespace holding one would never finish deleting)."""
    plane.kubectl("delete", "md", "--all", "-n", namespace, "--wait", "--timeout=90s")
