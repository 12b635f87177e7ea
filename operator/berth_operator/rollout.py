"""The rollout state machine: (spec, observed tracks, status, now) → next status + decisions.

Pure and level-based: it never remembers anything outside the status it returns, so a restarted
operator picks up a rollout where the stored status left it. Rules:
- each track's progress is measured from its last progress (`tracks`): a stable track that
  misses its deadline marks the resource Degraded;
- the canary's share, rollback, promotion cover and drain follow `canary`;
- each new stable version appends a revision to `status.history` (promotion and rollback alike);
- a route its Gateway refuses (`route_status`) makes the resource not Ready.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypedDict

from berth_operator import canary as canary_track
from berth_operator import spec, tracks


class Condition(TypedDict, total=False):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


class Revision(TypedDict):
    revision: int
    version: int
    time: str


class Status(TypedDict, total=False):
    observedGeneration: int
    conditions: list[Condition]
    stable: tracks.TrackStatus
    canary: tracks.TrackStatus
    rolledBackCanary: canary_track.RolledBackCanary
    weight: int
    url: str
    history: list[Revision]


@dataclass(frozen=True)
class Decision:
    status: Status
    canary: spec.Canary | None
    """The canary track to render: the spec's, or one still draining or covering a promotion."""
    weight: int
    events: list[canary_track.Event] = field(default_factory=list)

    @property
    def canary_on(self) -> bool:
        return self.canary is not None


def decide(
    md: spec.ModelDeploymentSpec,
    *,
    generation: int,
    stable: tracks.Track | None,
    canary: tracks.Track | None,
    previous: Status,
    now: datetime,
    url: str,
    route_problems: Sequence[str] = (),
    routes_drained: bool = True,
    drain_seconds: float = canary_track.DRAIN_SECONDS,
    stable_failure: tuple[str, str] | None = None,
) -> Decision:
    """The next status and what to render; see the module docstring for the rules.
    `route_problems`: what the traffic provider's controllers refuse (`route_status.problems`);
    `routes_drained`: no live route sends to the canary any more (`route_status.drained`);
    `stable_failure`: (reason, message) of stable servers that fail to start
    (`server_failures.reason`)."""
    status: Status = {"observedGeneration": generation, "url": url}
    status["history"] = _history(previous.get("history", []), md, now)
    status["stable"] = tracks.track_status(md.stable_version, stable, previous.get("stable"), now)
    stable_done = stable is not None and stable.complete(md.stable_version)
    stable_late = not stable_done and tracks.past(
        status["stable"].get("progressTime", tracks.timestamp(now)),
        md.progress_deadline_seconds,
        now,
    )
    step = canary_track.step(
        md,
        canary,
        now,
        before=previous.get("canary"),
        failed=previous.get("rolledBackCanary"),
        weight_before=previous.get("weight", 0),
        stable_done=stable_done,
    )
    if step.track is not None and step.leaving:
        step = canary_track.drain(step, now, drain_seconds=drain_seconds, drained=routes_drained)
    if step.track is not None:
        status["canary"] = step.track
    if step.rolled_back is not None:
        status["rolledBackCanary"] = step.rolled_back
    status["weight"] = step.weight
    status["conditions"] = _conditions(
        md,
        previous.get("conditions", []),
        generation,
        now,
        stable=stable,
        stable_done=stable_done,
        stable_late=stable_late,
        canary_done=step.done,
        rolled_back=status.get("rolledBackCanary"),
        route_problems=route_problems,
        stable_failure=stable_failure,
    )
    return Decision(status=status, canary=step.render, weight=step.weight, events=step.events)


def invalid(previous: Status, *, generation: int, error: spec.SpecError, now: datetime) -> Status:
    """Status for a spec the operator cannot serve; existing children are left alone."""
    status: Status = {**previous, "observedGeneration": generation}
    old = previous.get("conditions", [])
    status["conditions"] = [
        _condition(old, "Ready", "False", "InvalidSpec", str(error), generation, now),
        _condition(old, "Progressing", "False", "InvalidSpec", str(error), generation, now),
        _condition(old, "Degraded", "True", "InvalidSpec", str(error), generation, now),
    ]
    return status


def apply_failed(status: Status, previous: Status, *, message: str, now: datetime) -> Status:
    """`status` with Degraded=True/ApplyFailed: some children could not be written (for example
    the traffic provider's CRDs are not installed). The rest of the status still holds."""
    generation = status.get("observedGeneration", 0)
    degraded = _condition(
        previous.get("conditions", []), "Degraded", "True", "ApplyFailed", message, generation, now
    )
    conditions = [c for c in status.get("conditions", []) if c.get("type") != "Degraded"]
    return {**status, "conditions": [*conditions, degraded]}


def _history(
    history: Sequence[Revision], md: spec.ModelDeploymentSpec, now: datetime
) -> list[Revision]:
    out = list(history)
    if not out or out[-1]["version"] != md.stable_version:
        number = out[-1]["revision"] + 1 if out else 1
        out.append(
            {"revision": number, "version": md.stable_version, "time": tracks.timestamp(now)}
        )
    return out[-md.revision_history_limit :]


def _conditions(
    md: spec.ModelDeploymentSpec,
    old: Sequence[Condition],
    generation: int,
    now: datetime,
    *,
    stable: tracks.Track | None,
    stable_done: bool,
    stable_late: bool,
    canary_done: bool,
    rolled_back: canary_track.RolledBackCanary | None,
    route_problems: Sequence[str],
    stable_failure: tuple[str, str] | None,
) -> list[Condition]:
    serving = stable is not None and stable.ready > 0
    if serving and route_problems:
        ready = _condition(
            old, "Ready", "False", "RouteNotAccepted", "; ".join(route_problems), generation, now
        )
    elif serving:
        ready = _condition(
            old,
            "Ready",
            "True",
            "StableAvailable",
            f"{stable.ready if stable else 0} stable server(s) ready",
            generation,
            now,
        )
    elif stable_failure is not None:  # the servers' own words: a store's refusal, a bad model
        ready = _condition(old, "Ready", "False", *stable_failure, generation, now)
    else:
        ready = _condition(
            old, "Ready", "False", "StableUnavailable", "no stable server is ready", generation, now
        )
    if not stable_done:
        progressing = _condition(
            old,
            "Progressing",
            "True",
            "StableRollingOut",
            f"stable version {md.stable_version} rolling out",
            generation,
            now,
        )
    elif not canary_done and md.canary is not None:
        progressing = _condition(
            old,
            "Progressing",
            "True",
            "CanaryRollingOut",
            f"canary version {md.canary.version} rolling out",
            generation,
            now,
        )
    else:
        progressing = _condition(
            old,
            "Progressing",
            "False",
            "RolloutComplete",
            "all tracks are up to date",
            generation,
            now,
        )
    if rolled_back is not None:
        degraded = _condition(
            old, "Degraded", "True", "CanaryRolledBack", rolled_back["message"], generation, now
        )
    elif stable_late:
        degraded = _condition(
            old,
            "Degraded",
            "True",
            "ProgressDeadlineExceeded",
            f"stable version {md.stable_version} made no progress for "
            f"{md.progress_deadline_seconds}s",
            generation,
            now,
        )
    else:
        degraded = _condition(old, "Degraded", "False", "AsExpected", "", generation, now)
    return [ready, progressing, degraded]


def _condition(
    old: Sequence[Condition],
    kind: str,
    status: Literal["True", "False", "Unknown"],
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> Condition:
    """A condition whose lastTransitionTime moves only when its status does."""
    before = next((c for c in old if c.get("type") == kind), None)
    moved = before is None or before.get("status") != status or "lastTransitionTime" not in before
    since = tracks.timestamp(now) if moved or before is None else before["lastTransitionTime"]
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }
