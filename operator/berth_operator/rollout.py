"""The rollout state machine: (spec, observed tracks, status, now) → next status + decisions.

Pure and level-based: it never remembers anything outside the status it returns, so a restarted
operator picks up a rollout where the stored status left it. Rules:
- the canary gets its weight only while all its servers are ready, otherwise 0;
- a canary not ready within progressDeadlineSeconds of `status.canary.since` is rolled back by
  the operator: its track is removed and `status.rolledBackCanary` keeps it off until the user
  removes `spec.canary` or names another version (the spec is never edited by the operator);
- each new stable version appends a revision to `status.history` (promotion and rollback alike).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from berth_operator import naming, spec


class Condition(TypedDict, total=False):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


class TrackStatus(TypedDict, total=False):
    version: int
    replicas: int
    readyReplicas: int
    since: str


class Revision(TypedDict):
    revision: int
    version: int
    time: str


class RolledBackCanary(TypedDict):
    version: int
    reason: str
    message: str
    time: str


class Status(TypedDict, total=False):
    observedGeneration: int
    conditions: list[Condition]
    stable: TrackStatus
    canary: TrackStatus
    rolledBackCanary: RolledBackCanary
    weight: int
    url: str
    history: list[Revision]


@dataclass(frozen=True)
class Track:
    """What a track's Deployment reports; built from the live object by `observe`."""

    version: int | None
    desired: int
    replicas: int = 0
    updated: int = 0
    ready: int = 0
    current: bool = True

    def complete(self, version: int) -> bool:
        """All servers run `version` and are ready; nothing of an older version is left."""
        return (
            self.current
            and self.version == version
            and self.updated >= self.desired
            and self.ready >= self.desired
            and self.replicas == self.desired
        )

    def on_version(self, version: int) -> tuple[int, int]:
        """(servers, ready servers) running `version`. A Deployment reports readiness for all its
        pods, old template included, so ready pods of the new template are counted as the ready
        ones minus every old pod: a lower bound, exact once the old pods are gone."""
        if self.version != version or not self.current:
            return 0, 0
        old_pods = max(0, self.replicas - self.updated)
        return self.updated, max(0, self.ready - old_pods)


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: Status
    canary_on: bool
    weight: int
    events: list[Event] = field(default_factory=list)


def observe(deployment: Mapping[str, Any] | None) -> Track | None:
    """Live Deployment → Track (None when it does not exist)."""
    if deployment is None:
        return None
    meta, dspec, dstatus = (deployment.get(k) or {} for k in ("metadata", "spec", "status"))
    version = (meta.get("labels") or {}).get(naming.LABEL_VERSION)
    return Track(
        version=int(version) if version and str(version).isdigit() else None,
        desired=int(dspec.get("replicas", 1)),
        replicas=int(dstatus.get("replicas", 0)),
        updated=int(dstatus.get("updatedReplicas", 0)),
        ready=int(dstatus.get("readyReplicas", 0)),
        current=int(dstatus.get("observedGeneration", 0)) >= int(meta.get("generation", 0)),
    )


def timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decide(
    md: spec.ModelDeploymentSpec,
    *,
    generation: int,
    stable: Track | None,
    canary: Track | None,
    previous: Status,
    now: datetime,
    url: str,
) -> Decision:
    """The next status and what to render; see the module docstring for the rules."""
    events: list[Event] = []
    status: Status = {"observedGeneration": generation, "url": url}
    status["history"] = _history(previous.get("history", []), md, now)
    status["stable"] = _track_status(md.stable_version, stable, previous.get("stable"), now)
    stable_done = stable is not None and stable.complete(md.stable_version)
    stable_late = not stable_done and _past(
        status["stable"]["since"], md.progress_deadline_seconds, now
    )

    canary_on, weight, canary_done = False, 0, True
    failed = previous.get("rolledBackCanary")
    if md.canary is not None and failed is not None and failed["version"] == md.canary.version:
        status["rolledBackCanary"] = failed
    elif md.canary is not None:
        track = _track_status(md.canary.version, canary, previous.get("canary"), now)
        canary_done = canary is not None and canary.complete(md.canary.version)
        if canary_done:
            canary_on, weight = True, md.canary.weight
            status["canary"] = track
        elif _past(track["since"], md.progress_deadline_seconds, now):
            canary_done = True  # given up on: nothing is progressing any more
            message = (
                f"canary version {md.canary.version} was not ready within "
                f"{md.progress_deadline_seconds}s; rolled back, traffic stays on stable "
                f"version {md.stable_version}"
            )
            status["rolledBackCanary"] = {
                "version": md.canary.version,
                "reason": "ProgressDeadlineExceeded",
                "message": message,
                "time": timestamp(now),
            }
            events.append(Event("Warning", "CanaryRolledBack", message))
        else:
            canary_on = True
            status["canary"] = track
    status["weight"] = weight
    status["conditions"] = _conditions(
        md,
        previous.get("conditions", []),
        generation,
        now,
        stable=stable,
        stable_done=stable_done,
        stable_late=stable_late,
        canary_done=canary_done,
        rolled_back=status.get("rolledBackCanary"),
    )
    return Decision(status=status, canary_on=canary_on, weight=weight, events=events)


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
        out.append({"revision": number, "version": md.stable_version, "time": timestamp(now)})
    return out[-md.revision_history_limit :]


def _track_status(
    version: int, observed: Track | None, previous: TrackStatus | None, now: datetime
) -> TrackStatus:
    same = previous is not None and previous.get("version") == version and "since" in previous
    since = previous["since"] if same and previous is not None else timestamp(now)
    replicas, ready = observed.on_version(version) if observed is not None else (0, 0)
    return {"version": version, "replicas": replicas, "readyReplicas": ready, "since": since}


def _past(since: str, deadline_seconds: int, now: datetime) -> bool:
    return (now - datetime.fromisoformat(since)).total_seconds() > deadline_seconds


def _conditions(
    md: spec.ModelDeploymentSpec,
    old: Sequence[Condition],
    generation: int,
    now: datetime,
    *,
    stable: Track | None,
    stable_done: bool,
    stable_late: bool,
    canary_done: bool,
    rolled_back: RolledBackCanary | None,
) -> list[Condition]:
    serving = stable is not None and stable.ready > 0
    if serving:
        ready = _condition(
            old,
            "Ready",
            "True",
            "StableAvailable",
            f"{stable.ready if stable else 0} stable server(s) ready",
            generation,
            now,
        )
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
            f"stable version {md.stable_version} not ready within {md.progress_deadline_seconds}s",
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
    since = timestamp(now) if moved or before is None else before["lastTransitionTime"]
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }
