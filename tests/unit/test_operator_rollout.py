"""rollout.decide: the canary state machine, table-tested over observed tracks and time."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from berth_operator import canary, rollout, spec, tracks

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BASE: dict[str, Any] = {
    "model": {"name": "m", "storage": {"hostPath": {"path": "/m"}}},
    "stable": {"version": 1},
    "progressDeadlineSeconds": 60,
}


def md(**changes: Any) -> spec.ModelDeploymentSpec:
    return spec.parse({**BASE, **changes})


def ready(version: int, replicas: int = 1) -> tracks.Track:
    return tracks.Track(
        version=version, desired=replicas, replicas=replicas, updated=replicas, ready=replicas
    )


def pending(version: int) -> tracks.Track:
    return tracks.Track(version=version, desired=1, replicas=1, updated=1, ready=0)


def decide(
    mds: spec.ModelDeploymentSpec,
    *,
    stable: tracks.Track | None = None,
    canary: tracks.Track | None = None,
    previous: rollout.Status | None = None,
    now: datetime = T0,
    routes_drained: bool = True,
) -> rollout.Decision:
    return rollout.decide(
        mds,
        generation=1,
        stable=stable,
        canary=canary,
        previous=previous or {},
        now=now,
        url="http://x",
        routes_drained=routes_drained,
    )


def condition(decision: rollout.Decision, kind: str) -> tuple[str, str]:
    found = next(c for c in decision.status["conditions"] if c["type"] == kind)
    return found["status"], found["reason"]


@pytest.mark.parametrize(
    ("canary_track", "weight", "expected_weight"),
    [
        (None, 10, 0),
        (pending(2), 10, 0),
        (ready(2), 10, 10),
        (ready(2), 100, 100),
        (ready(3), 10, 0),  # an old canary version still running is not the canary asked for
    ],
)
def test_canary_weight_is_applied_once_its_servers_of_that_version_are_ready(
    canary_track: tracks.Track | None, weight: int, expected_weight: int
) -> None:
    decision = decide(
        md(canary={"version": 2, "weight": weight}), stable=ready(1), canary=canary_track
    )
    assert decision.weight == expected_weight
    assert decision.canary_on is True
    assert decision.status["weight"] == expected_weight


def test_a_ready_stable_without_canary_is_ready_and_not_progressing() -> None:
    decision = decide(md(), stable=ready(1))
    assert condition(decision, "Ready") == ("True", "StableAvailable")
    assert condition(decision, "Progressing") == ("False", "RolloutComplete")
    assert condition(decision, "Degraded") == ("False", "AsExpected")
    assert decision.status["stable"]["readyReplicas"] == 1


def test_a_missing_stable_track_is_not_ready_and_progressing() -> None:
    decision = decide(md(), stable=None)
    assert condition(decision, "Ready") == ("False", "StableUnavailable")
    assert condition(decision, "Progressing") == ("True", "StableRollingOut")


def test_a_pending_canary_is_reported_as_progressing() -> None:
    decision = decide(md(canary={"version": 2}), stable=ready(1), canary=pending(2))
    assert condition(decision, "Progressing") == ("True", "CanaryRollingOut")
    assert decision.status["canary"]["version"] == 2


def test_a_canary_not_ready_by_the_deadline_is_rolled_back_with_a_warning_event() -> None:
    mds = md(canary={"version": 2, "weight": 50})
    first = decide(mds, stable=ready(1), canary=pending(2))
    later = decide(
        mds,
        stable=ready(1),
        canary=pending(2),
        previous=first.status,
        now=T0 + timedelta(seconds=61),
    )
    assert later.weight == 0 and later.status["canary"]["drainingSince"]
    assert later.status["rolledBackCanary"]["version"] == 2
    assert condition(later, "Degraded") == ("True", "CanaryRolledBack")
    assert [e.reason for e in later.events] == ["CanaryRolledBack"]
    gone = decide(
        mds,
        stable=ready(1),
        canary=pending(2),
        previous=later.status,
        now=T0 + timedelta(seconds=61 + canary.DRAIN_SECONDS),
    )
    assert gone.canary_on is False and "canary" not in gone.status and not gone.events
    assert gone.status["rolledBackCanary"] == later.status["rolledBackCanary"]


def test_the_canary_share_follows_its_ready_servers() -> None:
    mds = md(canary={"version": 2, "weight": 40, "replicas": 4})
    three_of_four = tracks.Track(version=2, desired=4, replicas=4, updated=4, ready=3)
    assert decide(mds, stable=ready(1), canary=three_of_four).weight == 30
    assert decide(mds, stable=ready(1), canary=ready(2, replicas=4)).weight == 40


def test_a_canary_that_served_for_long_is_not_rolled_back_the_moment_a_pod_fails() -> None:
    mds = md(canary={"version": 2, "weight": 40, "replicas": 2})
    one_down = tracks.Track(version=2, desired=2, replicas=2, updated=2, ready=1)
    serving = decide(mds, stable=ready(1), canary=ready(2, replicas=2))
    hour = T0 + timedelta(hours=1)
    failing = decide(mds, stable=ready(1), canary=one_down, previous=serving.status, now=hour)
    assert failing.canary_on and failing.weight == 20 and "rolledBackCanary" not in failing.status
    still = decide(
        mds,
        stable=ready(1),
        canary=one_down,
        previous=failing.status,
        now=hour + timedelta(seconds=59),
    )
    assert "rolledBackCanary" not in still.status
    stuck = decide(
        mds,
        stable=ready(1),
        canary=one_down,
        previous=still.status,
        now=hour + timedelta(seconds=61),
    )
    assert stuck.status["rolledBackCanary"]["version"] == 2


def test_each_server_that_turns_ready_restarts_the_progress_deadline() -> None:
    mds = md(canary={"version": 2, "replicas": 3})
    none_ready = tracks.Track(version=2, desired=3, replicas=3, updated=3, ready=0)
    one_ready = tracks.Track(version=2, desired=3, replicas=3, updated=3, ready=1)
    first = decide(mds, stable=ready(1), canary=none_ready)
    second = decide(
        mds,
        stable=ready(1),
        canary=one_ready,
        previous=first.status,
        now=T0 + timedelta(seconds=50),
    )
    third = decide(
        mds,
        stable=ready(1),
        canary=one_ready,
        previous=second.status,
        now=T0 + timedelta(seconds=100),
    )
    assert "rolledBackCanary" not in third.status


def test_a_stable_track_scaled_up_long_after_its_rollout_is_not_degraded() -> None:
    done = decide(md(), stable=ready(1))
    scaling = tracks.Track(version=1, desired=3, replicas=3, updated=3, ready=1)
    day = T0 + timedelta(days=1)
    up = decide(md(), stable=scaling, previous=done.status, now=day)
    assert condition(up, "Degraded") == ("False", "AsExpected")
    stuck = decide(md(), stable=scaling, previous=up.status, now=day + timedelta(seconds=61))
    assert condition(stuck, "Degraded") == ("True", "ProgressDeadlineExceeded")


def test_a_removed_canary_drains_at_weight_zero_before_its_track_goes() -> None:
    serving = decide(md(canary={"version": 2, "weight": 30}), stable=ready(1), canary=ready(2))
    removed = decide(md(), stable=ready(1), canary=ready(2), previous=serving.status)
    assert removed.canary == spec.Canary(version=2, weight=0, replicas=1)
    assert removed.weight == 0 and removed.status["canary"]["drainingSince"]
    later = T0 + timedelta(seconds=canary.DRAIN_SECONDS)
    waiting = decide(
        md(),
        stable=ready(1),
        canary=ready(2),
        previous=removed.status,
        routes_drained=False,
        now=later,
    )
    assert waiting.canary_on, "the routes still send to the canary"
    gone = decide(md(), stable=ready(1), canary=ready(2), previous=waiting.status, now=later)
    assert not gone.canary_on and "canary" not in gone.status


def test_a_promoted_canary_keeps_its_share_until_stable_runs_its_version_everywhere() -> None:
    serving = decide(md(canary={"version": 2, "weight": 30}), stable=ready(1), canary=ready(2))
    promoted = md(stable={"version": 2})
    rolling = tracks.Track(version=2, desired=1, replicas=2, updated=1, ready=1)
    holding = decide(promoted, stable=rolling, canary=ready(2), previous=serving.status)
    assert holding.canary == spec.Canary(version=2, weight=30, replicas=1)
    assert holding.weight == 30
    rolled = decide(promoted, stable=ready(2), canary=ready(2), previous=holding.status)
    assert rolled.weight == 0 and rolled.status["canary"]["drainingSince"]


def test_a_canary_within_its_deadline_is_kept() -> None:
    mds = md(canary={"version": 2})
    first = decide(mds, stable=ready(1), canary=pending(2))
    later = decide(
        mds,
        stable=ready(1),
        canary=pending(2),
        previous=first.status,
        now=T0 + timedelta(seconds=59),
    )
    assert later.canary_on is True and not later.events


def test_a_rolled_back_canary_stays_off_without_new_events() -> None:
    mds = md(canary={"version": 2})
    first = decide(mds, stable=ready(1), canary=pending(2))
    rolled = decide(mds, stable=ready(1), previous=first.status, now=T0 + timedelta(seconds=61))
    again = decide(mds, stable=ready(1), previous=rolled.status, now=T0 + timedelta(seconds=300))
    assert again.canary_on is False and not again.events
    assert again.status == rolled.status


def test_a_new_canary_version_gets_a_fresh_try_after_a_rollback() -> None:
    first = decide(md(canary={"version": 2}), stable=ready(1), canary=pending(2))
    rolled = decide(
        md(canary={"version": 2}),
        stable=ready(1),
        previous=first.status,
        now=T0 + timedelta(seconds=61),
    )
    retry = decide(
        md(canary={"version": 3}),
        stable=ready(1),
        previous=rolled.status,
        now=T0 + timedelta(seconds=62),
    )
    assert retry.canary_on is True and "rolledBackCanary" not in retry.status
    assert retry.status["canary"]["since"] == tracks.timestamp(T0 + timedelta(seconds=62))


def test_removing_the_canary_clears_the_rollback_record() -> None:
    first = decide(md(canary={"version": 2}), stable=ready(1), canary=pending(2))
    rolled = decide(
        md(canary={"version": 2}),
        stable=ready(1),
        previous=first.status,
        now=T0 + timedelta(seconds=61),
    )
    cleared = decide(md(), stable=ready(1), previous=rolled.status)
    assert "rolledBackCanary" not in cleared.status
    assert condition(cleared, "Degraded") == ("False", "AsExpected")


def test_a_stable_version_late_past_its_deadline_is_degraded() -> None:
    first = decide(md(), stable=pending(1))
    late = decide(md(), stable=pending(1), previous=first.status, now=T0 + timedelta(seconds=61))
    assert condition(late, "Degraded") == ("True", "ProgressDeadlineExceeded")


def test_each_new_stable_version_appends_a_revision() -> None:
    one = decide(md(), stable=ready(1))
    two = decide(md(stable={"version": 2}), stable=ready(1), previous=one.status)
    back = decide(md(), stable=ready(1), previous=two.status)
    assert [(h["revision"], h["version"]) for h in back.status["history"]] == [
        (1, 1),
        (2, 2),
        (3, 1),
    ]


def test_history_is_trimmed_to_the_revision_limit() -> None:
    status: rollout.Status = {}
    for version in range(1, 6):
        status = decide(
            md(stable={"version": version}, revisionHistoryLimit=3), previous=status
        ).status
    assert [h["revision"] for h in status["history"]] == [3, 4, 5]


def test_a_steady_state_decides_the_same_status_again() -> None:
    mds = md(canary={"version": 2, "weight": 5})
    first = decide(mds, stable=ready(1), canary=ready(2))
    again = decide(
        mds, stable=ready(1), canary=ready(2), previous=first.status, now=T0 + timedelta(hours=1)
    )
    assert again.status == first.status


def test_condition_transition_time_moves_only_with_its_status() -> None:
    first = decide(md(), stable=pending(1))
    second = decide(md(), stable=ready(1), previous=first.status, now=T0 + timedelta(seconds=5))
    times = {c["type"]: c["lastTransitionTime"] for c in second.status["conditions"]}
    assert times["Ready"] == tracks.timestamp(T0 + timedelta(seconds=5))
    assert times["Degraded"] == tracks.timestamp(T0)


def test_an_observed_deployment_reports_its_version_and_readiness() -> None:
    track = tracks.observe(
        {
            "metadata": {"generation": 2, "labels": {"serving.berth.dev/version": "7"}},
            "spec": {"replicas": 2},
            "status": {
                "observedGeneration": 2,
                "replicas": 2,
                "updatedReplicas": 2,
                "readyReplicas": 2,
            },
        }
    )
    assert track == tracks.Track(version=7, desired=2, replicas=2, updated=2, ready=2, current=True)
    assert track.complete(7) and not track.complete(8)


def test_a_deployment_whose_controller_has_not_caught_up_is_not_complete() -> None:
    track = tracks.observe(
        {
            "metadata": {"generation": 3, "labels": {"serving.berth.dev/version": "7"}},
            "spec": {"replicas": 1},
            "status": {
                "observedGeneration": 2,
                "replicas": 1,
                "updatedReplicas": 1,
                "readyReplicas": 1,
            },
        }
    )
    assert track is not None and not track.complete(7)


def test_an_invalid_spec_is_reported_as_degraded_with_its_field() -> None:
    status = rollout.invalid({}, generation=4, error=spec.SpecError("spec.x", "bad"), now=T0)
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "InvalidSpec" and degraded["message"] == "spec.x: bad"
    assert status["observedGeneration"] == 4


def test_a_refused_child_marks_the_status_degraded_and_keeps_the_rest() -> None:
    decision = decide(md(), stable=ready(1))
    failed = rollout.apply_failed(decision.status, {}, message="HTTPRoute m-http: 404", now=T0)
    assert condition(rollout.Decision(failed, None, 0), "Degraded") == ("True", "ApplyFailed")
    assert condition(rollout.Decision(failed, None, 0), "Ready") == ("True", "StableAvailable")
    assert failed["stable"] == decision.status["stable"]


@pytest.mark.parametrize(
    ("track", "expected"),
    [
        (tracks.Track(version=2, desired=2, replicas=2, updated=2, ready=2), (2, 2)),
        # mid-rollout: one new pod (not ready yet) next to two ready old ones
        (tracks.Track(version=2, desired=2, replicas=3, updated=1, ready=2), (1, 0)),
        (tracks.Track(version=2, desired=2, replicas=3, updated=1, ready=3), (1, 1)),
        # the Deployment controller has not seen the new template yet
        (
            tracks.Track(version=2, desired=1, replicas=1, updated=1, ready=1, current=False),
            (0, 0),
        ),
        (tracks.Track(version=1, desired=1, replicas=1, updated=1, ready=1), (0, 0)),
    ],
)
def test_ready_servers_of_an_older_version_are_not_counted_for_the_new_one(
    track: tracks.Track, expected: tuple[int, int]
) -> None:
    assert track.on_version(2) == expected


def test_a_route_its_gateway_refuses_makes_the_model_deployment_not_ready() -> None:
    problem = "HTTPRoute m-http on gw/ml: Accepted=False NotAllowedByListeners"
    decision = rollout.decide(
        md(),
        generation=1,
        stable=ready(1),
        canary=None,
        previous={},
        now=T0,
        url="http://x",
        route_problems=[problem],
    )
    assert condition(decision, "Ready") == ("False", "RouteNotAccepted")
    found = next(c for c in decision.status["conditions"] if c["type"] == "Ready")
    assert found["message"] == problem
