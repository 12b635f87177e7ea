"""`make cluster`: a local Kubernetes to play with Berth's operator, without a real cluster.

Starts the loopback control plane the tests use (etcd, kube-apiserver, controller manager,
scheduler, kwok's fake nodes with GPUs), installs the Helm chart, runs the operator with the
chart's ServiceAccount identity, applies deploy/examples/cpu.yaml, prints commands to try and
stays in the foreground until Ctrl-C, which stops everything.

Run from the repository root with the test helpers importable:
    PYTHONPATH=tests:tests/deploy .venv/bin/python tools/dev_cluster.py
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import signal
import sys
import tempfile
import time

import helm_harness
import kube_control_plane
import local_install

NAMESPACE = "models"
EXAMPLES = helm_harness.REPO / "deploy" / "examples"


def bring_up(plane: kube_control_plane.ControlPlane, work_dir: pathlib.Path) -> None:
    print(">> helm install berth deploy/helm/berth -n berth-system", flush=True)
    # A local cluster: ModelDeployments may serve a directory of the machine (hostPath).
    local_install.install_chart(plane, "--set", "server.allowHostPath=true")
    plane.kubectl("create", "namespace", NAMESPACE)
    local_install.models_volume(plane, NAMESPACE)
    print(">> kubectl apply -n models -f deploy/examples/models-pvc.yaml -f .../cpu.yaml")
    plane.kubectl(
        "apply",
        "-n",
        NAMESPACE,
        "-f",
        str(EXAMPLES / "models-pvc.yaml"),
        "-f",
        str(EXAMPLES / "cpu.yaml"),
    )


def instructions(plane: kube_control_plane.ControlPlane, operator_log: pathlib.Path) -> str:
    venv_bin = pathlib.Path(sys.executable).parent
    return f"""
Berth is running on a local control plane (pods are simulated by kwok: nothing really serves).
In another shell:

  export KUBECONFIG={plane.kubeconfig} PATH={plane.bin_dir}:{venv_bin}:$PATH

  kubectl get md -n {NAMESPACE} -w                       # READY, STABLE, CANARY, WEIGHT
  kubectl explain modeldeployment.spec.canary
  kubectl patch md half-plus-two -n {NAMESPACE} --type=merge \\
      -p '{{"spec":{{"canary":{{"version":2,"weight":20}}}}}}'
  kubectl get deploy,svc,pdb -n {NAMESPACE} -l serving.berth.dev/modeldeployment=half-plus-two
  kubectl berth status half-plus-two -n {NAMESPACE}
  kubectl berth promote half-plus-two -n {NAMESPACE}
  kubectl berth rollback half-plus-two -n {NAMESPACE}
  kubectl berth history half-plus-two -n {NAMESPACE}
  kubectl apply -n {NAMESPACE} -f deploy/examples/gpu.yaml     # lands on the fake GPU nodes
  helm list -A

Operator log: {operator_log}
Ctrl-C stops the operator and the control plane.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=pathlib.Path, help="default: a new temporary directory")
    args = parser.parse_args(argv)
    work_dir = args.work_dir or pathlib.Path(tempfile.mkdtemp(prefix="berth-cluster-"))
    began = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f">> starting the control plane in {work_dir}", flush=True)
    with kube_control_plane.running(work_dir=work_dir / "plane") as plane:
        bring_up(plane, work_dir)
        with local_install.operator_as_chart(plane, work_dir, "--allow-host-path") as operator:
            helm_harness.wait_ready(plane, NAMESPACE, "half-plus-two", timeout=120)
            print(f">> ready in {time.monotonic() - began:.0f}s")
            print(instructions(plane, operator.log_path), flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    print(">> stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
