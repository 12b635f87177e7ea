"""kubectl berth: the spec patches behind promote and rollback, and the printed views."""

from typing import Any

import pytest

from berth_operator import plugin

MD: dict[str, Any] = {
    "metadata": {"name": "fraud", "namespace": "ml"},
    "spec": {"stable": {"version": 2}, "canary": {"version": 3, "weight": 10}},
    "status": {
        "history": [
            {"revision": 1, "version": 1, "time": "t1"},
            {"revision": 2, "version": 2, "time": "t2"},
        ],
        "stable": {"version": 2, "replicas": 1, "readyReplicas": 1},
        "canary": {"version": 3, "replicas": 1, "readyReplicas": 1},
        "weight": 10,
        "conditions": [{"type": "Ready", "status": "True", "reason": "StableAvailable"}],
    },
}
NO_CANARY: dict[str, Any] = {**MD, "spec": {"stable": {"version": 2}}}


def test_promote_makes_the_canary_stable_and_removes_it() -> None:
    assert plugin.promote_patch(MD) == {"spec": {"stable": {"version": 3}, "canary": None}}


def test_promote_of_a_canary_the_operator_rolled_back_is_refused() -> None:
    failed = {"version": 3, "reason": "ProgressDeadlineExceeded", "message": "m", "time": "t"}
    rolled_back = {**MD, "status": {**MD["status"], "rolledBackCanary": failed}}
    del rolled_back["status"]["canary"]
    with pytest.raises(plugin.PluginError, match="rolled back by the operator"):
        plugin.promote_patch(rolled_back)


@pytest.mark.parametrize(
    "observed",
    [
        None,
        {"version": 3, "replicas": 2, "readyReplicas": 1},
        {"version": 4, "replicas": 2, "readyReplicas": 2},
        {"version": 3, "replicas": 2, "readyReplicas": 2, "drainingSince": "t"},
    ],
)
def test_promote_of_a_canary_whose_servers_are_not_all_ready_is_refused(
    observed: dict[str, Any] | None,
) -> None:
    spec = {**MD["spec"], "canary": {"version": 3, "weight": 10, "replicas": 2}}
    status = {k: v for k, v in MD["status"].items() if k != "canary"}
    if observed is not None:
        status["canary"] = observed
    with pytest.raises(plugin.PluginError, match="not ready"):
        plugin.promote_patch({**MD, "spec": spec, "status": status})


def test_promote_without_a_canary_is_refused() -> None:
    with pytest.raises(plugin.PluginError, match="no canary"):
        plugin.promote_patch(NO_CANARY)


def test_rollback_removes_the_canary_when_there_is_one() -> None:
    assert plugin.rollback_patch(MD, None) == {"spec": {"canary": None}}


def test_rollback_without_a_canary_returns_to_the_previous_revision() -> None:
    assert plugin.rollback_patch(NO_CANARY, None) == {"spec": {"stable": {"version": 1}}}


def test_rollback_to_a_revision_sets_its_version_and_drops_the_canary() -> None:
    assert plugin.rollback_patch(MD, 1) == {"spec": {"stable": {"version": 1}, "canary": None}}


def test_rollback_to_an_unknown_revision_lists_the_known_ones() -> None:
    with pytest.raises(plugin.PluginError, match=r"known: 1, 2"):
        plugin.rollback_patch(MD, 9)


def test_history_lists_revisions_oldest_first() -> None:
    lines = plugin.format_history(MD).splitlines()
    assert lines[0].split() == ["REVISION", "VERSION", "TIME"]
    assert [line.split()[:2] for line in lines[1:]] == [["1", "1"], ["2", "2"]]


def test_status_shows_tracks_weight_and_conditions() -> None:
    text = plugin.format_status(MD)
    assert "stable: version 2, 1/1 ready" in text
    assert "weight: 10% to canary" in text
    assert "Ready=True StableAvailable" in text
