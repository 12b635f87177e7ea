"""Fixtures for operator scenarios: the ModelDeployment CRD installed once, an operator per test."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import operator_harness
import pytest
from kube_control_plane import ControlPlane


@pytest.fixture(scope="session")
def modeldeployment_crd(control_plane: ControlPlane) -> ControlPlane:
    """The CRD from deploy/crds, applied as a user would, and Established."""
    control_plane.kubectl("apply", "--server-side", "-f", str(operator_harness.CRD_FILE))
    control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/modeldeployments.serving.berth.dev",
        "--timeout=60s",
    )
    return control_plane


@pytest.fixture
def berth_operator(
    modeldeployment_crd: ControlPlane, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[operator_harness.Operator]:
    """`python -m berth_operator --namespace <the test's namespace>`, stopped afterwards."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = operator_harness.Operator(modeldeployment_crd, namespace, log)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the operator's log tail to a failed scenario."""
    report = yield
    process = getattr(item, "funcargs", {}).get("berth_operator")
    if report.failed and isinstance(process, operator_harness.Operator):
        report.sections.append(("operator log", process.log(120)))
        snapshot = process.plane.kubectl(
            "get",
            "modeldeployments,deployments,replicasets,pods",
            "-n",
            process.namespace,
            "-o",
            "wide",
            check=False,
        )
        statuses = process.plane.kubectl(
            "get",
            "modeldeployments",
            "-n",
            process.namespace,
            "-o",
            'jsonpath={range .items[*]}{.metadata.name}: {.status}{"\\n"}{end}',
            check=False,
        )
        report.sections.append(("namespace", snapshot.stdout + snapshot.stderr + statuses.stdout))
    return report
