"""A track as its Deployment reports it, and the track's progress clock in the status.

A track is complete when every server runs its version and is ready. While it is not, its
progress deadline counts from `progressTime`: the moment it stopped being complete, started a
new version, or one more of its servers turned ready. So a track that served for hours and loses
one pod (an OOM, a node drain) gets the whole deadline to recover, and an autoscaler's scale-up
is progress, not a late rollout.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict

from berth_operator import naming


class TrackStatus(TypedDict, total=False):
    version: int
    replicas: int
    readyReplicas: int
    since: str
    progressTime: str
    drainingSince: str


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


def track_status(
    version: int, observed: Track | None, previous: TrackStatus | None, now: datetime
) -> TrackStatus:
    """The track as observed, with its progress clock: `progressTime` is absent while the track
    is complete, and set to now when it stops being complete, starts a new version or one more
    of its servers turns ready."""
    same = previous is not None and previous.get("version") == version and "since" in previous
    before: TrackStatus = previous if same and previous is not None else {}
    since = before.get("since", timestamp(now))
    replicas, ready = observed.on_version(version) if observed is not None else (0, 0)
    status: TrackStatus = {
        "version": version,
        "replicas": replicas,
        "readyReplicas": ready,
        "since": since,
    }
    if observed is not None and observed.complete(version):
        return status
    progressed = not before or "progressTime" not in before or ready > before["readyReplicas"]
    status["progressTime"] = timestamp(now) if progressed else before["progressTime"]
    return status


def past(since: str, deadline_seconds: float, now: datetime, *, inclusive: bool = False) -> bool:
    elapsed = (now - datetime.fromisoformat(since)).total_seconds()
    return elapsed >= deadline_seconds if inclusive else elapsed > deadline_seconds
