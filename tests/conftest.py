"""Fixtures shared by every test package: the loopback Kubernetes control plane."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import kube_control_plane
import pytest

# The real-pod tier runs on its own, inside the network namespace `make test-real-node` makes.
collect_ignore = [] if os.environ.get("BERTH_REAL_NODE_NETNS") else ["real_node"]


@pytest.fixture(scope="session")
def control_plane(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[kube_control_plane.ControlPlane]:
    """One control plane per test session: starting one costs seconds, a namespace costs nothing.

    Fails (with the fix in the message) when the binaries are not built; `make test` builds them.
    """
    if missing := kube_control_plane.missing_artifacts(kube_control_plane.default_bin_dir()):
        pytest.fail(f"missing {', '.join(missing)}: run `make k8s-bins`")
    plane = kube_control_plane.start(work_dir=tmp_path_factory.mktemp("control-plane"))
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def namespace(control_plane: kube_control_plane.ControlPlane) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards without waiting (the plane finishes it)."""
    name = control_plane.create_namespace()
    yield name
    control_plane.delete_namespace(name)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the components' log tails to the report of a failed test that used the plane."""
    report = yield
    plane = getattr(item, "funcargs", {}).get("control_plane")
    if report.failed and isinstance(plane, kube_control_plane.ControlPlane):
        report.sections.append(("control plane logs", plane.log_tails()))
    return report
