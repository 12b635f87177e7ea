"""A real Kubernetes node: containerd, kubelet and kube-proxy, registered with the control plane.

The tier runs inside a network namespace of its own (`tools/in-netns.sh` starts pytest in one), so
everything here binds, routes and writes iptables rules only in there: the node's address sits on
one end of a veth pair (this kernel has no `dummy` links), pods get addresses on a CNI bridge, and
Service IPs exist only as kube-proxy's rules. Nothing can reach the world outside the namespace.

What this machine needs, each found as a failure first:
* containerd's `restrict_oom_score_adj`: the capability bounding set lacks CAP_SYS_RESOURCE, so runc
  cannot lower a sandbox's oom_score_adj ("can't get final child's PID from pipe: EOF").
* kubelet on cgroup v1 (`failCgroupV1: false`) with the cgroupfs driver; no systemd is running.
* No cluster DNS: pods get a resolver that answers nothing, and tests address pods by IP.
* Images cannot be pulled: `tools/build-images.sh` and `tools/build-real-node.sh` write archives
  that are imported into containerd here, and pods use them with `imagePullPolicy: IfNotPresent`.

Contract: `start()` returns a Ready node or raises with the components' log tails; `stop()` kills
what it started and removes the traces those components leave outside their work directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator

import processes
from kube_control_plane import CACHE_DIR, ControlPlane

NAME = "real-node-0"
NODE_IP = "10.254.0.1"
POD_CIDR = "10.88.0.0/24"
IMAGE_DIR = CACHE_DIR / "images"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
IMAGE_ARCHIVES = ("pause-3.10.tar", "berth-server.tar", "berth-operator.tar")
CNI_BIN_DIR = pathlib.Path("/usr/lib/cni")
# Paths containerd 1.6, libcni and the kubelet write whatever their flags say; none exists on this
# machine before a node runs, so `stop()` removes them.
HARD_CODED_PATHS = ("/run/containerd", "/var/lib/cni", "/var/lib/kubelet")
STOP_GRACE_SECONDS = 10.0


class NodeError(RuntimeError):
    """The node did not come up; the message carries the components' log tails."""


@dataclasses.dataclass
class RealNode:
    """A running node and the handles tests use: `ctr` for containerd, `name` for nodeSelectors."""

    work_dir: pathlib.Path
    plane: ControlPlane
    name: str = NAME
    ip: str = NODE_IP
    processes: dict[str, processes.LoggedProcess] = dataclasses.field(default_factory=dict)

    @property
    def containerd_socket(self) -> pathlib.Path:
        return self.work_dir / "containerd" / "containerd.sock"

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`ctr` in the Kubernetes namespace of this node's containerd."""
        return subprocess.run(
            ["ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=600,
        )

    def log_tails(self, lines: int = 30) -> str:
        return "\n".join(
            f"----- {name} -----\n{process.log_tail(lines)}"
            for name, process in self.processes.items()
        )

    def stop(self) -> None:
        """Stop kube-proxy and the kubelet, kill every container, stop containerd, clean up."""
        for name in ("kube-proxy", "kubelet"):
            if process := self.processes.pop(name, None):
                process.stop(grace_seconds=STOP_GRACE_SECONDS)
        if "containerd" in self.processes:
            self._kill_containers()
            self.processes.pop("containerd").stop(grace_seconds=STOP_GRACE_SECONDS)
        _kill_shims(self.work_dir)
        _unmount_below(self.work_dir)
        _remove_pod_network_namespaces()
        _remove_kubelet_cgroups()
        for path in HARD_CODED_PATHS:
            shutil.rmtree(path, ignore_errors=True)

    def _kill_containers(self) -> None:
        tasks = self.ctr("tasks", "ls", "--quiet", check=False).stdout.split()
        for task in tasks:
            self.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        for task in tasks:
            self.ctr("tasks", "delete", "--force", task, check=False)
        for container in self.ctr("containers", "ls", "--quiet", check=False).stdout.split():
            self.ctr("containers", "delete", container, check=False)


def missing_artifacts() -> list[str]:
    """What `make real-node` has not built yet."""
    missing = [str(IMAGE_DIR / a) for a in IMAGE_ARCHIVES if not (IMAGE_DIR / a).is_file()]
    missing += [
        str(CACHE_DIR / "bin" / b)
        for b in ("kubelet", "kube-proxy")
        if not (CACHE_DIR / "bin" / b).exists()
    ]
    missing += [c for c in ("containerd", "runc", "ctr", "iptables") if not shutil.which(c)]
    return missing


def start(plane: ControlPlane, work_dir: pathlib.Path) -> RealNode:
    """Give the namespace the node's address, then start containerd, the kubelet and kube-proxy."""
    node = RealNode(work_dir=work_dir, plane=plane)
    try:
        _configure_network()
        _start_containerd(node)
        _import_images(node)
        _start_kubelet(node)
        _start_kube_proxy(node)
    except BaseException as error:
        tails = node.log_tails()
        node.stop()
        if isinstance(error, Exception):
            raise NodeError(f"the real node failed to start: {error}\n{tails}") from error
        raise
    return node


@contextlib.contextmanager
def running(plane: ControlPlane, work_dir: pathlib.Path) -> Iterator[RealNode]:
    node = start(plane, work_dir)
    try:
        yield node
    finally:
        node.stop()


def _configure_network() -> None:
    """The node's address on a veth end, and a default route into it: Service IPs must be
    routable before kube-proxy's DNAT rewrites them, and anything else simply dies there."""
    if NODE_IP in _run("ip", "-4", "-o", "addr", "show").stdout:
        return
    _run("ip", "link", "set", "lo", "up")
    _run("ip", "link", "add", "node0", "type", "veth", "peer", "name", "node0-peer")
    _run("ip", "addr", "add", f"{NODE_IP}/32", "dev", "node0")
    _run("ip", "link", "set", "node0", "up")
    _run("ip", "link", "set", "node0-peer", "up")
    _run("ip", "route", "add", "default", "dev", "node0")
    _run("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1")


def _start_containerd(node: RealNode) -> None:
    directory = node.work_dir / "containerd"
    cni_config_dir = node.work_dir / "cni" / "net.d"
    cni_config_dir.mkdir(parents=True, exist_ok=True)
    (cni_config_dir / "10-berth-pods.conflist").write_text(json.dumps(_cni_config(node)))
    config = node.work_dir / "containerd.toml"
    config.write_text(_containerd_config(node, directory, cni_config_dir))
    node.processes["containerd"] = process = processes.start(
        ["containerd", "--config", str(config)],
        name="containerd",
        log_path=node.work_dir / "logs" / "containerd.log",
        die_with_parent=True,
    )
    process.wait_until(
        lambda: node.ctr("version", check=False).returncode == 0,
        timeout_seconds=30,
        message="containerd to answer on its socket",
    )


def _cni_config(node: RealNode) -> dict[str, object]:
    """One bridge for every pod, host-local addresses, and the port map and loopback plugins."""
    return {
        "cniVersion": "0.4.0",
        "name": "berth-pods",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(node.work_dir / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ],
    }


def _containerd_config(
    node: RealNode, directory: pathlib.Path, cni_config_dir: pathlib.Path
) -> str:
    """containerd's defaults with its own root, state and socket, our CNI and sandbox image, and
    oom_score_adj left alone (see the module docstring)."""
    default = _run("containerd", "config", "default").stdout
    replacements = {
        'root = "/var/lib/containerd"': f'root = "{directory / "root"}"',
        'state = "/run/containerd"': f'state = "{directory / "state"}"',
        'address = "/run/containerd/containerd.sock"': f'address = "{node.containerd_socket}"',
        'bin_dir = "/opt/cni/bin"': f'bin_dir = "{CNI_BIN_DIR}"',
        'conf_dir = "/etc/cni/net.d"': f'conf_dir = "{cni_config_dir}"',
        "restrict_oom_score_adj = false": "restrict_oom_score_adj = true",
    }
    lines = []
    for line in default.splitlines():
        stripped = line.strip()
        if stripped.startswith("sandbox_image ="):
            line = line.split("=")[0] + f'= "{PAUSE_IMAGE}"'
        for old, new in replacements.items():
            if stripped == old:
                line = line.replace(old, new)
        lines.append(line)
    config = "\n".join(lines) + "\n"
    for new in (*replacements.values(), PAUSE_IMAGE):
        if new not in config:
            raise NodeError(f"containerd's default config changed: no place for {new!r}")
    return config


def _import_images(node: RealNode) -> None:
    for archive in IMAGE_ARCHIVES:
        node.ctr("images", "import", "--no-unpack", str(IMAGE_DIR / archive))


def _start_kubelet(node: RealNode) -> None:
    directory = node.work_dir / "kubelet"
    directory.mkdir(parents=True, exist_ok=True)
    resolv_conf = node.work_dir / "resolv.conf"
    resolv_conf.write_text("nameserver 127.0.0.1\n")  # no cluster DNS: nothing to resolve against
    config = node.work_dir / "kubelet-config.json"
    config.write_text(json.dumps(_kubelet_config(node, resolv_conf)))
    node.processes["kubelet"] = process = processes.start(
        [
            str(CACHE_DIR / "bin" / "kubelet"),
            f"--config={config}",
            f"--kubeconfig={node.plane.kubeconfig}",
            f"--root-dir={directory}",
            f"--cert-dir={directory / 'pki'}",
            f"--node-ip={node.ip}",
            f"--hostname-override={node.name}",
            "--node-labels=berth.dev/real-node=true",
            "--v=1",
        ],
        name="kubelet",
        log_path=node.work_dir / "logs" / "kubelet.log",
        die_with_parent=True,
    )
    process.wait_until(
        lambda: _node_ready(node),
        timeout_seconds=90,
        message=f"node {node.name} to be Ready",
    )


def _kubelet_config(node: RealNode, resolv_conf: pathlib.Path) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "address": node.ip,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        # The apiserver has no kubelet client certificate; exec and logs still work.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "podLogsDir": str(node.work_dir / "pod-logs"),
        "resolvConf": str(resolv_conf),
        "maxPods": 60,
        "imageGCHighThresholdPercent": 100,  # the imported images can never be pulled again
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "nodeStatusReportFrequency": "10s",
    }


def _node_ready(node: RealNode) -> bool:
    result = node.plane.kubectl("get", "node", node.name, "-o", "json", check=False)
    if result.returncode != 0:
        return False
    conditions = json.loads(result.stdout)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _start_kube_proxy(node: RealNode) -> None:
    config = node.work_dir / "kube-proxy-config.json"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                "kind": "KubeProxyConfiguration",
                "mode": "iptables",
                "clientConnection": {"kubeconfig": str(node.plane.kubeconfig)},
                "hostnameOverride": node.name,
                "clusterCIDR": POD_CIDR,
                "bindAddress": node.ip,
                "healthzBindAddress": "127.0.0.1:10256",
                "metricsBindAddress": "127.0.0.1:10249",
                # Zeros leave the machine's conntrack sysctls alone (they are not per namespace).
                "conntrack": {
                    "maxPerCore": 0,
                    "min": 0,
                    "tcpEstablishedTimeout": "0s",
                    "tcpCloseWaitTimeout": "0s",
                },
                "iptables": {"syncPeriod": "5s", "minSyncPeriod": "0s"},
            }
        )
    )
    node.processes["kube-proxy"] = process = processes.start(
        [str(CACHE_DIR / "bin" / "kube-proxy"), f"--config={config}", "--v=1"],
        name="kube-proxy",
        log_path=node.work_dir / "logs" / "kube-proxy.log",
        die_with_parent=True,
    )
    process.wait_until(
        lambda: processes.http_status("http://127.0.0.1:10256/healthz", timeout_seconds=2) == 200,
        timeout_seconds=60,
        message="kube-proxy's healthz",
    )


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)


def _kill_shims(work_dir: pathlib.Path) -> None:
    """containerd-shim processes outlive containerd by design; kill those of this node."""
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            command = (proc / "cmdline").read_bytes()
            if b"containerd-shim" in command and str(work_dir).encode() in command:
                os.kill(int(proc.name), 9)


def _unmount_below(directory: pathlib.Path) -> None:
    mounts = [line.split()[1] for line in pathlib.Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(str(directory))), reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False)


def _remove_pod_network_namespaces() -> None:
    for path in pathlib.Path("/run/netns").glob("cni-*"):
        subprocess.run(["umount", str(path)], capture_output=True, check=False)
        path.unlink(missing_ok=True)


def _remove_kubelet_cgroups() -> None:
    for tree in pathlib.Path("/sys/fs/cgroup").glob("*/kubepods"):
        for directory in sorted(tree.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if directory.is_dir():
                with contextlib.suppress(OSError):
                    directory.rmdir()
        with contextlib.suppress(OSError):
            tree.rmdir()
