"""Fixtures of the real-pod tier: one control plane and one real node per session, the operator
installed by its chart as a pod, and the example models on the node's disk.

Runs only inside the network namespace `make test-real-node` makes (tools/in-netns.sh); elsewhere
tests/conftest.py leaves this directory out of collection.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Generator, Iterator

import kube_control_plane
import model_exports
import node as real_node
import pytest
import traefik
import traffic
import workloads
from kube_control_plane import ControlPlane

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The test control plane, also listening on the node's address so pods reach it."""
    if not os.environ.get("BERTH_REAL_NODE_NETNS"):
        pytest.fail("the real-node tier runs inside its own network namespace: make test-real-node")
    missing = kube_control_plane.missing_artifacts(kube_control_plane.default_bin_dir())
    missing += real_node.missing_artifacts()
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `make real-node`")
    plane = kube_control_plane.start(
        work_dir=tmp_path_factory.mktemp("control-plane"), node_ip=real_node.NODE_IP
    )
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def node(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[real_node.RealNode]:
    """The real node; kwok's fake nodes are cordoned, so every pod of the tier runs for real."""
    with real_node.running(control_plane, tmp_path_factory.mktemp("node")) as started:
        for fake, _ in kube_control_plane.FAKE_NODES:
            control_plane.kubectl("cordon", fake)
        yield started


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The example SavedModels (examples/export_models.py), readable by the server's user."""
    directory = tmp_path_factory.mktemp("models")
    subprocess.run(
        [sys.executable, str(REPO / "examples" / "export_models.py"), str(directory)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    directory.chmod(0o755)  # the pods mount it; the server runs as the image's user
    return directory


@pytest.fixture(scope="session")
def affine_models(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Versions 1, 2 and 3 of `affine`, each answering with its own number at x = 0."""
    directory = tmp_path_factory.mktemp("affine-models")
    directory.chmod(0o755)
    model_exports.export_versions(directory / traffic.MODEL, [1, 2, 3])
    return directory


@pytest.fixture(scope="session")
def gateway_controller(
    control_plane: ControlPlane, node: real_node.RealNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[traefik.Traefik]:
    """Traefik with its GatewayClass, listening on the Gateway port in the tier's namespace."""
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(traefik.gateway_class()))
    started = traefik.start(
        kubeconfig=control_plane.kubeconfig,
        listeners={"http": traffic.GATEWAY_PORT},
        log_dir=tmp_path_factory.mktemp("traefik"),
        status_ip="127.0.0.1",
    )
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def gateway(
    control_plane: ControlPlane, gateway_controller: traefik.Traefik, namespace: str
) -> dict[str, str]:
    """A Gateway `ml` in the test's namespace; returns the parentRef routes attach with."""
    manifest = traefik.gateway("ml", namespace, listeners={"http": traffic.GATEWAY_PORT})
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    return {"name": "ml", "namespace": namespace, "sectionName": "http"}


@pytest.fixture(scope="session")
def berth_operator(node: real_node.RealNode, control_plane: ControlPlane) -> workloads.Release:
    """The chart installed as a platform team installs it, with the images built from this tree."""
    return workloads.install_chart(control_plane)


@pytest.fixture
def namespace(control_plane: ControlPlane, berth_operator: workloads.Release) -> Iterator[str]:
    """A fresh namespace per test; deleting it stops its pods before the next test starts."""
    name = control_plane.create_namespace("real")
    yield name
    control_plane.delete_namespace(name, wait=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the node's logs, the operator's and the pods' states to a failed test's report."""
    report = yield
    funcargs = getattr(item, "funcargs", {})
    started = funcargs.get("node")
    if report.failed and isinstance(started, real_node.RealNode):
        report.sections.append(("node logs", started.log_tails()))
        pods = started.plane.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout
        report.sections.append(("pods", pods))
        release = funcargs.get("berth_operator")
        if isinstance(release, workloads.Release):
            report.sections.append(("operator log", release.log(started.plane)))
    return report
