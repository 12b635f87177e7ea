"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, controller manager, scheduler
and kwok's fake nodes, as local processes built by `tools/build-k8s-bins.sh`.

Why not envtest's etcd + apiserver alone: the operator's behaviour depends on Deployments becoming
ReplicaSets and Ready Pods, on ownerReference garbage collection and on namespaces that finish
deleting, and those need the controller manager, the scheduler and something playing kubelet (kwok).

Contract: `start()` returns a running `ControlPlane` or raises `ControlPlaneError` carrying the
components' log tails; `ControlPlane.stop()` kills every process it started and is idempotent.
Nothing here is shared between two `ControlPlane`s: ports are free ports of 127.0.0.1, files live
in their own work directory. Run it by hand (and from `make cluster`) with
`python -m tests.kube_control_plane` from the repository root.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

try:
    import kube_pki
    import processes
    import waiting
except ModuleNotFoundError:  # `python -m tests.kube_control_plane` from the repository root
    from tests import kube_pki, processes, waiting  # type: ignore[no-redef]

CACHE_DIR = pathlib.Path(os.environ.get("BERTH_CACHE", pathlib.Path.home() / ".cache" / "berth"))
CRD_DIR = CACHE_DIR / "crds"
KWOK_STAGES = CACHE_DIR / "config" / "kwok-stages.yaml"
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
)
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"
START_TIMEOUT_SECONDS = 90.0
STOP_GRACE_SECONDS = 10.0
GPU_RESOURCE = "nvidia.com/gpu"
# Fake nodes: two schedulable GPU nodes and one whose GPUs are reserved by a taint, as GPU
# node pools usually are (the NVIDIA GPU operator's `nvidia.com/gpu:NoSchedule`).
FAKE_NODES: tuple[tuple[str, bool], ...] = (
    ("kwok-node-0", False),
    ("kwok-node-1", False),
    ("kwok-gpu-tainted-0", True),
)


class ControlPlaneError(RuntimeError):
    """The control plane did not come up, or a kubectl call failed; the message says why."""


@dataclasses.dataclass
class ControlPlane:
    """A running control plane and what tests need to talk to it."""

    work_dir: pathlib.Path
    bin_dir: pathlib.Path
    kubeconfig: pathlib.Path
    server: str
    env: dict[str, str]
    service_cidr: str = SERVICE_CIDR
    processes: dict[str, subprocess.Popen[bytes]] = dataclasses.field(default_factory=dict)

    @property
    def log_dir(self) -> pathlib.Path:
        return self.work_dir / "logs"

    def kubectl(
        self,
        *args: str,
        input: str | None = None,  # noqa: A002 - the name subprocess.run uses
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this plane; with `check`, a failure raises with kubectl's stderr."""
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
            )
        return result

    def kubectl_json(self, *args: str) -> dict[str, object]:
        """`kubectl ... -o json`, parsed."""
        parsed: dict[str, object] = json.loads(self.kubectl(*args, "-o", "json").stdout)
        return parsed

    def create_namespace(self, prefix: str = "test") -> str:
        """Create a uniquely named namespace and wait for its `default` ServiceAccount.

        Waiting matters: until the controller manager creates that account, the ServiceAccount
        admission plugin rejects every Pod in the namespace and ReplicaSets back off.
        """
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "namespace", name)
        _wait_until(
            lambda: (
                self.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
                == 0
            ),
            timeout=30.0,
            what=f"ServiceAccount default in namespace {name}",
        )
        return name

    def delete_namespace(self, name: str, *, wait: bool = False) -> None:
        """Delete a namespace; the namespace controller finishes it in the background."""
        self.kubectl(
            "delete", "namespace", name, f"--wait={str(wait).lower()}", "--ignore-not-found"
        )

    def log_tails(self, lines: int = 30) -> str:
        """The last lines of every component's log, for failure reports."""
        parts = []
        for log in sorted(self.log_dir.glob("*.log")):
            tail = processes.tail(log, lines)
            count = len(tail.splitlines())
            parts.append(f"----- {log.name} (last {count} lines) -----\n{tail}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Terminate the components newest first, then kill what is left after a grace period."""
        processes.stop_all(
            list(reversed(self.processes.values())), grace_seconds=STOP_GRACE_SECONDS
        )
        self.processes.clear()


def default_bin_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("BERTH_K8S_BIN_DIR", CACHE_DIR / "bin"))


def missing_artifacts(bin_dir: pathlib.Path, crd_dir: pathlib.Path | None = None) -> list[str]:
    """What `start` needs from `make k8s-bins` that is not there: binaries, kwok stages, CRDs."""
    missing = [str(bin_dir / b) for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if not KWOK_STAGES.is_file():
        missing.append(str(KWOK_STAGES))
    crd_dir = crd_dir or CRD_DIR
    if not any(crd_dir.glob("*.yaml")):
        missing.append(f"{crd_dir}/*.yaml")
    return missing


def start(
    *,
    work_dir: pathlib.Path | None = None,
    bin_dir: pathlib.Path | None = None,
    crd_dir: pathlib.Path | None = None,
    node_ip: str | None = None,
    service_cidr: str = SERVICE_CIDR,
) -> ControlPlane:
    """Start every component, wait until fake nodes are Ready and the CRDs are established.

    `service_cidr`: the Services' address range (a /24 holds 254 Services; a scale run needs more).

    With `node_ip` (a real node's address, inside the network namespace the caller runs in), the
    apiserver also listens there and is the `kubernetes` Service's endpoint, so pods reach it, and
    it reaches kubelets by their InternalIP (no DNS resolves node names here).
    """
    bin_dir, crd_dir = bin_dir or default_bin_dir(), crd_dir or CRD_DIR
    if missing := missing_artifacts(bin_dir, crd_dir):
        raise ControlPlaneError(f"missing {', '.join(missing)}: run `make k8s-bins`")
    work_dir = work_dir or pathlib.Path(tempfile.mkdtemp(prefix="berth-control-plane-"))
    (work_dir / "logs").mkdir(parents=True, exist_ok=True)
    pki = kube_pki.write_pki(
        work_dir / "pki", server_ips=[SERVICE_IP, *([node_ip] if node_ip else [])]
    )
    api_port = processes.free_port()
    kubeconfig = _write_kubeconfig(work_dir / "kubeconfig", pki, f"https://127.0.0.1:{api_port}")
    plane = ControlPlane(
        work_dir=work_dir,
        bin_dir=bin_dir,
        kubeconfig=kubeconfig,
        server=f"https://127.0.0.1:{api_port}",
        env=_client_env(bin_dir, kubeconfig, work_dir),
        service_cidr=service_cidr,
    )
    try:
        _boot(plane, pki, api_port, crd_dir, node_ip)
    except BaseException as error:
        tails = plane.log_tails()
        plane.stop()
        if isinstance(error, Exception):
            raise ControlPlaneError(f"control plane failed to start: {error}\n{tails}") from error
        raise
    return plane


def _boot(
    plane: ControlPlane,
    pki: kube_pki.Pki,
    api_port: int,
    crd_dir: pathlib.Path,
    node_ip: str | None,
) -> None:
    etcd_url = _start_etcd(plane)
    args = _apiserver_args(plane, pki, api_port, etcd_url)
    if node_ip:
        args = [*_real_node_apiserver_args(args, node_ip)]
    _start(plane, "kube-apiserver", args)
    _wait_until(lambda: _healthy(plane, pki), timeout=START_TIMEOUT_SECONDS, what="kube-apiserver")
    _start(plane, "kube-controller-manager", _controller_manager_args(plane, pki))
    _start(plane, "kube-scheduler", _scheduler_args(plane))
    _start(plane, "kwok", _kwok_args(plane))
    plane.kubectl("apply", "--server-side", "-f", "-", input=_fake_nodes_manifest())
    for crd_file in sorted(crd_dir.glob("*.yaml")):
        plane.kubectl("apply", "--server-side", "-f", str(crd_file))
    plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    plane.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")
    plane.create_namespace("warmup")  # proves the controller manager runs; also warms caches


def _start(plane: ControlPlane, name: str, args: Sequence[str]) -> None:
    """Start one component with its output in logs/<name>.log; it dies with this process."""
    plane.processes[name] = processes.start(
        [str(plane.bin_dir / name), *args],
        name=name,
        log_path=plane.log_dir / f"{name}.log",
        env=plane.env,
        die_with_parent=True,
    ).popen


def _start_etcd(plane: ControlPlane) -> str:
    client, peer = (
        f"http://127.0.0.1:{processes.free_port()}",
        f"http://127.0.0.1:{processes.free_port()}",
    )
    _start(
        plane,
        "etcd",
        [
            f"--data-dir={plane.work_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--unsafe-no-fsync=true",
            "--quota-backend-bytes=4294967296",
            "--log-level=warn",
        ],
    )
    return client


def _apiserver_args(plane: ControlPlane, pki: kube_pki.Pki, port: int, etcd_url: str) -> list[str]:
    return [
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={plane.work_dir / 'apiserver-certs'}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-cluster-ip-range={plane.service_cidr}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.sa_public_key}",
        f"--service-account-signing-key-file={pki.sa_private_key}",
        "--authorization-mode=Node,RBAC",
        # Without a request-header CA the controller manager and scheduler log an error every few
        # seconds; no client has a cert with the allowed name, so the headers stay unusable.
        f"--requestheader-client-ca-file={pki.ca_cert}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--allow-privileged=true",
        # Loopback is not a valid Endpoints address, so keep the `kubernetes` Service endpointless.
        "--endpoint-reconciler-type=none",
        "--enable-priority-and-fairness=false",
        "--profiling=false",
    ]


def _real_node_apiserver_args(args: Sequence[str], node_ip: str) -> Iterator[str]:
    """Listen on every address of the namespace, advertise the node's, keep the `kubernetes`
    Service's endpoint up to date, and reach kubelets by IP."""
    replaced = {
        "--bind-address": "--bind-address=0.0.0.0",
        "--advertise-address": f"--advertise-address={node_ip}",
        "--endpoint-reconciler-type": "--endpoint-reconciler-type=lease",
    }
    for arg in args:
        yield replaced.get(arg.split("=", 1)[0], arg)
    yield "--kubelet-preferred-address-types=InternalIP"


def _controller_manager_args(plane: ControlPlane, pki: kube_pki.Pki) -> list[str]:
    return [
        *_component_client_args(plane),
        "--controllers=*",  # cloud controllers stay off without --cloud-provider
        f"--service-account-private-key-file={pki.sa_private_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--service-cluster-ip-range={plane.service_cidr}",
        f"--cert-dir={plane.work_dir / 'kcm-certs'}",
        "--use-service-account-credentials=false",
        "--concurrent-gc-syncs=10",
    ]


def _scheduler_args(plane: ControlPlane) -> list[str]:
    return [*_component_client_args(plane), f"--cert-dir={plane.work_dir / 'scheduler-certs'}"]


def _component_client_args(plane: ControlPlane) -> list[str]:
    kubeconfig = str(plane.kubeconfig)
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={processes.free_port()}",
    ]


def _kwok_args(plane: ControlPlane) -> list[str]:
    return [
        f"--kubeconfig={plane.kubeconfig}",
        f"--config={KWOK_STAGES}",
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--node-ip=10.0.1.1",
        "--cidr=10.0.2.0/24",
        f"--server-address=127.0.0.1:{processes.free_port()}",
        # Without node leases the node lifecycle controller marks the fake nodes NotReady every
        # ~55 s and their pods unready.
        "--node-lease-duration-seconds=40",
    ]


def _fake_nodes_manifest() -> str:
    """Nodes kwok manages (the `kwok.x-k8s.io/node: fake` annotation) with GPUs to schedule."""
    items = [_fake_node(name, tainted) for name, tainted in FAKE_NODES]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def _fake_node(name: str, gpu_tainted: bool) -> dict[str, object]:
    capacity = {"cpu": "32", "memory": "128Gi", "pods": "110", GPU_RESOURCE: "4"}
    taints = (
        [{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}] if gpu_tainted else []
    )
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                "nvidia.com/gpu.present": "true",
            },
        },
        "spec": {"taints": taints},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def _write_kubeconfig(path: pathlib.Path, pki: kube_pki.Pki, server: str) -> pathlib.Path:
    """A kubeconfig with the certs inlined, so it stays valid when copied elsewhere."""

    def inline(file: pathlib.Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "berth",
                "cluster": {"server": server, "certificate-authority-data": inline(pki.ca_cert)},
            }
        ],
        "users": [
            {
                "name": "berth-admin",
                "user": {
                    "client-certificate-data": inline(pki.admin_cert),
                    "client-key-data": inline(pki.admin_key),
                },
            }
        ],
        "contexts": [{"name": "berth", "context": {"cluster": "berth", "user": "berth-admin"}}],
        "current-context": "berth",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


def _client_env(
    bin_dir: pathlib.Path, kubeconfig: pathlib.Path, work_dir: pathlib.Path
) -> dict[str, str]:
    """os.environ + KUBECONFIG, our binaries first on PATH, kubectl and helm state in work_dir."""
    env = dict(os.environ)
    env["KUBECONFIG"] = str(kubeconfig)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["KUBECACHEDIR"] = str(work_dir / "kube-cache")  # discovery cached per plane, not per port
    for kind in ("CACHE", "CONFIG", "DATA"):
        env[f"HELM_{kind}_HOME"] = str(work_dir / "helm" / kind.lower())
    return env


def _healthy(plane: ControlPlane, pki: kube_pki.Pki) -> bool:
    """GET /readyz with the admin cert; also fail fast if a component has already exited."""
    for name, process in plane.processes.items():
        if process.poll() is not None:
            raise ControlPlaneError(f"{name} exited with {process.returncode}")
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    try:
        with urllib.request.urlopen(f"{plane.server}/readyz", context=context, timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def _wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll `condition()` every 0.2 s until true; raise ControlPlaneError after `timeout`."""
    try:
        waiting.wait_for(condition, timeout_seconds=timeout, interval_seconds=0.2, message=what)
    except waiting.TimedOut as error:
        raise ControlPlaneError(str(error)) from None


@contextlib.contextmanager
def running(**options: Any) -> Iterator[ControlPlane]:
    """`start()` as a context manager that always stops what it started."""
    plane = start(**options)
    try:
        yield plane
    finally:
        plane.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run a control plane in the foreground until Ctrl-C or SIGTERM (what `make cluster` uses)."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.kube_control_plane", description=main.__doc__
    )
    parser.add_argument("--work-dir", type=pathlib.Path, help="default: a new temporary directory")
    args = parser.parse_args(argv)
    began = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with running(work_dir=args.work_dir) as plane:
        print(f"control plane ready in {time.monotonic() - began:.1f}s; logs in {plane.log_dir}")
        print(f"export KUBECONFIG={plane.kubeconfig} PATH={plane.bin_dir}:$PATH", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
