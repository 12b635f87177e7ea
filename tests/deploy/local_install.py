"""Berth on the loopback control plane as a platform team would set it up, for `make cluster` and
the README's doc-test: the chart installed, the operator running with the chart's identity, and a
volume for the examples' `models` claim.

The plane's pods are kwok's (nothing runs in them), so the operator the chart deploys never starts;
its place is taken by `python -m berth_operator` run here with a token of the chart's
ServiceAccount, so it can do exactly what the chart's RBAC lets the in-cluster operator do.
"""

from __future__ import annotations

import json
import pathlib
import subprocess

import helm_harness
from kube_control_plane import ControlPlane

RELEASE = "berth"
RELEASE_NAMESPACE = "berth-system"

# The Prometheus Operator's own CRDs, from its Go module (the module proxy is reachable wherever the
# control-plane binaries are built): the chart's PodMonitor is validated against the real schema.
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"


def prometheus_operator_crd(plural: str) -> pathlib.Path:
    """`example/prometheus-operator-crd/monitoring.coreos.com_<plural>.yaml` of the module."""
    module = f"{PROMETHEUS_OPERATOR}@{PROMETHEUS_OPERATOR_VERSION}"
    out = subprocess.run(
        ["go", "mod", "download", "-json", module],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    directory = pathlib.Path(json.loads(out)["Dir"])
    return (
        directory / "example" / "prometheus-operator-crd" / f"monitoring.coreos.com_{plural}.yaml"
    )


def install_chart(plane: ControlPlane, *extra: str) -> None:
    """`helm install berth deploy/helm/berth -n berth-system --create-namespace --wait`."""
    helm_harness.adopt_crd(plane, RELEASE, RELEASE_NAMESPACE)
    helm_harness.helm(
        "install",
        RELEASE,
        str(helm_harness.CHART),
        "--namespace",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "--wait",
        *extra,
        env=plane.env,
    )


def prepare_cluster_services(plane: ControlPlane) -> None:
    """What a real cluster already has: a PodMonitor kind and a `monitoring` namespace."""
    plane.kubectl("apply", "--server-side", "-f", str(prometheus_operator_crd("podmonitors")))
    plane.kubectl("wait", "--for=condition=Established", "crd/podmonitors.monitoring.coreos.com")
    if plane.kubectl("get", "namespace", "monitoring", check=False).returncode:
        plane.kubectl("create", "namespace", "monitoring")


def models_volume(plane: ControlPlane, namespace: str) -> None:
    """A volume reserved for the claim `models` in `namespace` (static provisioning)."""
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"models-{namespace}"},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "hostPath": {"path": "/srv/models", "type": "DirectoryOrCreate"},
            "claimRef": {"namespace": namespace, "name": "models"},
        },
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(pv))


def operator_as_chart(
    plane: ControlPlane, work_dir: pathlib.Path, *args: str
) -> helm_harness.OperatorProcess:
    """The operator with the chart's ServiceAccount token and the chart's default arguments."""
    kubeconfig = helm_harness.service_account_kubeconfig(
        plane, RELEASE_NAMESPACE, RELEASE, work_dir / "operator.kubeconfig"
    )
    return helm_harness.OperatorProcess(
        ["--all-namespaces", "--resync-seconds=2", *args],
        kubeconfig=kubeconfig,
        log_path=work_dir / "operator.log",
    )
