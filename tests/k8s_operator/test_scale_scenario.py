"""The scale scenario at a small count: ModelDeployments in several namespaces are all reconciled,
the operator writes what their children need and no more, and once settled (or restarted) it
writes nothing. `python -m bench.operator_scale` runs the same steps at 1,000 and reports them."""

from __future__ import annotations

import pathlib
from collections import Counter
from collections.abc import Iterator

import pytest
import scale_scenario
from kube_control_plane import ControlPlane
from operator_harness import Operator, model_deployment

from berth_operator import render, spec

COUNT = 20
NAMESPACES = 3
TIMEOUT_SECONDS = 300.0


def children_per_model_deployment() -> Counter[str]:
    """The children the operator renders for one of these ModelDeployments, by kind."""
    raw = model_deployment("model-0000")["spec"]
    owner = render.Owner(name="model-0000", namespace="ns", uid="uid")
    rendered = render.children(spec.parse(raw), owner, canary_on=False, weight=0)
    return Counter(obj["kind"] for obj in rendered)


STATUS_WRITES = 3
"""Status patches one single-replica ModelDeployment needs: its first status (Deployment not yet
seen), its Deployment's status seen, its one pod ready."""


@pytest.fixture
def namespaces(control_plane: ControlPlane) -> Iterator[list[str]]:
    made = [control_plane.create_namespace("scale") for _ in range(NAMESPACES)]
    yield made
    for name in made:
        control_plane.delete_namespace(name)


@pytest.fixture
def metered_operator(
    modeldeployment_crd: ControlPlane, namespaces: list[str], tmp_path: pathlib.Path
) -> Iterator[Operator]:
    """One operator for all of `namespaces`, with its metrics endpoint."""
    others = [arg for namespace in namespaces[1:] for arg in ("--namespace", namespace)]
    operator = Operator(
        modeldeployment_crd,
        namespaces[0],
        tmp_path / "operator.log",
        args=("--allow-host-path", *others),
        metrics=True,
    )
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


def settle(plane: ControlPlane, operator: Operator, namespaces: list[str]) -> dict[str, list[str]]:
    """Create COUNT ModelDeployments; return them once all are reconciled and a resync was quiet."""
    dealt = scale_scenario.names(COUNT, namespaces)
    scale_scenario.create(plane, dealt)
    scale_scenario.wait_reconciled(plane, operator, dealt, timeout=TIMEOUT_SECONDS)
    scale_scenario.wait_quiet(plane, operator, dealt, timeout=TIMEOUT_SECONDS)
    return dealt


def test_many_model_deployments_settle_with_the_writes_their_children_need(
    control_plane: ControlPlane, namespaces: list[str], metered_operator: Operator
) -> None:
    settle(control_plane, metered_operator, namespaces)

    written = scale_scenario.writes(metered_operator)
    children = children_per_model_deployment()
    for kind, count in children.items():  # every child applied, once unless a watch lagged
        assert written.get((kind, "apply"), 0) >= count * COUNT, (kind, written)
    assert not any(verb == "delete" for _, verb in written), written
    bound = (sum(children.values()) + STATUS_WRITES) * COUNT
    assert scale_scenario.total(written) <= bound, written


def test_a_restarted_operator_writes_nothing_for_settled_model_deployments(
    control_plane: ControlPlane, namespaces: list[str], metered_operator: Operator
) -> None:
    dealt = settle(control_plane, metered_operator, namespaces)
    before = scale_scenario.world(control_plane, dealt)
    metered_operator.stop()
    metered_operator.start()
    scale_scenario.resync_round(control_plane, metered_operator, dealt, timeout=TIMEOUT_SECONDS)

    written = scale_scenario.writes(metered_operator)
    to_children = {key: count for key, count in written.items() if key[1] != "patch_status"}
    assert not any(to_children.values()), written
    if scale_scenario.world(control_plane, dealt) == before:  # no pod changed readiness
        assert scale_scenario.total(written) == 0, written
