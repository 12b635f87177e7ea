"""rollout_events.between: Normal events for rollout steps, read off status pairs that
rollout.decide really produces."""

from datetime import UTC, datetime, timedelta
from typing import Any

from berth_operator import rollout, rollout_events, spec, tracks

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BASE: dict[str, Any] = {
    "model": {"name": "m", "storage": {"hostPath": {"path": "/m"}}},
    "stable": {"version": 1},
    "progressDeadlineSeconds": 60,
}


def md(**changes: Any) -> spec.ModelDeploymentSpec:
    return spec.parse({**BASE, **changes})


def ready(version: int) -> tracks.Track:
    return tracks.Track(version=version, desired=1, replicas=1, updated=1, ready=1)


def pending(version: int) -> tracks.Track:
    return tracks.Track(version=version, desired=1, replicas=1, updated=1, ready=0)


def step(
    previous: rollout.Status,
    mds: spec.ModelDeploymentSpec,
    *,
    stable: tracks.Track | None,
    canary: tracks.Track | None = None,
    now: datetime = T0,
    applied: bool = True,
) -> tuple[rollout.Status, list[tuple[str, str]]]:
    """One reconcile: the next status and its events as (type, reason)."""
    decision = rollout.decide(
        mds,
        generation=1,
        stable=stable,
        canary=canary,
        previous=previous,
        now=now,
        url="http://x",
        drain_seconds=0,
    )
    events = rollout_events.between(previous, decision.status, applied=applied)
    return decision.status, [(e.type, e.reason) for e in events]


def serving_canary() -> rollout.Status:
    status, _ = step({}, md(), stable=ready(1))
    with_canary = md(canary={"version": 2, "weight": 30})
    status, _ = step(status, with_canary, stable=ready(1), canary=pending(2))
    status, _ = step(status, with_canary, stable=ready(1), canary=ready(2))
    return status


def test_a_steady_resource_emits_nothing() -> None:
    status, events = step({}, md(), stable=ready(1))
    assert events == []
    assert step(status, md(), stable=ready(1))[1] == []


def test_a_new_canary_starts_then_gets_its_weight_once_ready() -> None:
    status, _ = step({}, md(), stable=ready(1))
    with_canary = md(canary={"version": 2, "weight": 30})
    status, events = step(status, with_canary, stable=ready(1), canary=pending(2))
    assert events == [("Normal", "CanaryStarted")]
    status, events = step(status, with_canary, stable=ready(1), canary=ready(2))
    assert events == [("Normal", "WeightApplied")]
    assert step(status, with_canary, stable=ready(1), canary=ready(2))[1] == []


def test_the_weight_message_names_both_shares() -> None:
    status, _ = step({}, md(), stable=ready(1))
    with_canary = md(canary={"version": 2, "weight": 30})
    before, _ = step(status, with_canary, stable=ready(1), canary=pending(2))
    after, _ = step(before, with_canary, stable=ready(1), canary=ready(2))
    [event] = rollout_events.between(before, after, applied=True)
    assert event.message == "canary version 2 takes 30% of traffic, stable version 1 70% (was 0%)"


def test_a_weight_whose_children_were_refused_is_not_reported_applied() -> None:
    status, _ = step({}, md(), stable=ready(1))
    with_canary = md(canary={"version": 2, "weight": 30})
    status, _ = step(status, with_canary, stable=ready(1), canary=pending(2))
    _, events = step(status, with_canary, stable=ready(1), canary=ready(2), applied=False)
    assert events == []


def test_promotion_is_reported_once_and_its_end_is_no_rollback() -> None:
    status = serving_canary()
    promoted = md(stable={"version": 2})
    status, events = step(status, promoted, stable=pending(2), canary=ready(2))
    assert events == [("Normal", "Promoted")]
    status, events = step(status, promoted, stable=ready(2), canary=ready(2))
    assert events == [("Normal", "WeightApplied")]
    assert "canary" not in status


def test_a_withdrawn_canary_is_a_rollback_with_its_weight_back_to_zero() -> None:
    status = serving_canary()
    _, events = step(status, md(), stable=ready(1), canary=ready(2))
    assert events == [("Normal", "RolledBack"), ("Normal", "WeightApplied")]


def test_the_operators_own_rollback_adds_no_normal_rollback() -> None:
    status, _ = step({}, md(), stable=ready(1))
    late = md(canary={"version": 2, "weight": 30})
    status, _ = step(status, late, stable=ready(1), canary=pending(2))
    _, events = step(
        status, late, stable=ready(1), canary=pending(2), now=T0 + timedelta(seconds=61)
    )
    assert ("Normal", "RolledBack") not in events


def test_returning_stable_to_an_earlier_revision_is_a_rollback() -> None:
    status, _ = step({}, md(), stable=ready(1))
    status, _ = step(status, md(stable={"version": 2}), stable=ready(2))
    status, events = step(status, md(stable={"version": 1}), stable=pending(1))
    assert events == [("Normal", "RolledBack")]
    assert status["history"][-1]["version"] == 1


def test_a_restart_from_the_stored_status_repeats_nothing() -> None:
    status = serving_canary()
    stored: rollout.Status = {**status}
    with_canary = md(canary={"version": 2, "weight": 30})
    assert step(stored, with_canary, stable=ready(1), canary=ready(2))[1] == []
