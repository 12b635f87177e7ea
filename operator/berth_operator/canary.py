"""Where the canary track is in its life: coming up or serving, rolled back, covering a
promotion, draining, gone.

- Coming up or serving: the spec's canary; its share is weight × ready ÷ replicas, counted on
  servers of its version, so one unready pod costs its part of the share, not all of it.
- Rolled back: it made no progress within progressDeadlineSeconds (`tracks`); the record in
  `status.rolledBackCanary` keeps that version off until the spec drops it or names another.
- Covering a promotion: stable now names the canary's version; the canary keeps its share until
  the stable track runs that version on every server, so the stable pods are never asked to
  carry the canary's share while some still run the old version or are missing.
- Draining: any canary that leaves stays up at weight 0 until the routes carry the 0 (their
  controllers have taken it) and the drain time passed; then its track is no longer rendered.
"""

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypedDict

from berth_operator import spec, tracks

DRAIN_SECONDS = 10.0
"""Default time a leaving canary stays up at weight 0, for routers to stop sending to it."""


class RolledBackCanary(TypedDict):
    version: int
    reason: str
    message: str
    time: str


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Step:
    """The canary's part of a decision."""

    track: tracks.TrackStatus | None = None
    """`status.canary`; None once no canary track is left."""
    render: spec.Canary | None = None
    """The canary track to render (its weight field unused: `weight` is the share)."""
    weight: int = 0
    done: bool = True
    """False while the canary is still rolling out (the Progressing condition)."""
    leaving: bool = False
    rolled_back: RolledBackCanary | None = None
    events: list[Event] = field(default_factory=list)


def step(
    md: spec.ModelDeploymentSpec,
    observed: tracks.Track | None,
    now: datetime,
    *,
    before: tracks.TrackStatus | None,
    failed: RolledBackCanary | None,
    weight_before: int,
    stable_done: bool,
) -> Step:
    """The spec's canary while it progresses or serves; else the previous one (`before`, with
    the share it had, `weight_before`), leaving."""
    wanted = md.canary
    if wanted is not None and failed is not None and failed["version"] == wanted.version:
        return _leaving(before, observed, now, failed=failed)
    if wanted is not None and not (
        before and before.get("version") == wanted.version and "drainingSince" in before
    ):
        same = before if before and before.get("version") == wanted.version else None
        track = tracks.track_status(wanted.version, observed, same, now)
        if "progressTime" not in track or not tracks.past(
            track["progressTime"], md.progress_deadline_seconds, now
        ):
            ready = track["readyReplicas"]
            weight = wanted.weight * min(ready, wanted.replicas) // wanted.replicas
            done = observed is not None and observed.complete(wanted.version)
            return Step(track=track, render=wanted, weight=weight, done=done)
        return _rolled_back(md, wanted, track, observed, now)
    if before is not None and before.get("version") == md.stable_version and not stable_done:
        if "drainingSince" not in before and observed is not None:
            # Promoted: the canary keeps its share until stable serves its version everywhere.
            track = tracks.track_status(md.stable_version, observed, before, now)
            render = spec.Canary(md.stable_version, weight_before, observed.desired)
            return Step(track=track, render=render, weight=weight_before, done=False)
    return _leaving(before, observed, now, failed=None)


def _rolled_back(
    md: spec.ModelDeploymentSpec,
    wanted: spec.Canary,
    track: tracks.TrackStatus,
    observed: tracks.Track | None,
    now: datetime,
) -> Step:
    message = (
        f"canary version {wanted.version} made no progress for "
        f"{md.progress_deadline_seconds}s; rolled back, traffic stays on stable "
        f"version {md.stable_version}"
    )
    failed: RolledBackCanary = {
        "version": wanted.version,
        "reason": "ProgressDeadlineExceeded",
        "message": message,
        "time": tracks.timestamp(now),
    }
    leaving = _leaving(track, observed, now, failed=failed)
    return dataclasses.replace(leaving, events=[Event("Warning", "CanaryRolledBack", message)])


def _leaving(
    before: tracks.TrackStatus | None,
    observed: tracks.Track | None,
    now: datetime,
    *,
    failed: RolledBackCanary | None,
) -> Step:
    """A canary track that is no longer wanted: it drains while its Deployment exists."""
    if before is None or observed is None or "version" not in before:
        return Step(rolled_back=failed)
    track: tracks.TrackStatus = {
        **before,
        "drainingSince": before.get("drainingSince", tracks.timestamp(now)),
    }
    render = spec.Canary(before["version"], 0, observed.desired)
    return Step(track=track, render=render, leaving=True, rolled_back=failed)


def drain(leaving: Step, now: datetime, *, drain_seconds: float, drained: bool) -> Step:
    """Weight 0 first; the track goes once the routes carry it (`drained`) and drain_seconds
    passed since it started draining."""
    since = (leaving.track or {}).get("drainingSince", tracks.timestamp(now))
    if drained and tracks.past(since, drain_seconds, now, inclusive=True):
        return Step(rolled_back=leaving.rolled_back, events=leaving.events)
    return leaving
