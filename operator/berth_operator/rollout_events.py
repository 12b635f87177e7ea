"""Normal events for the rollout steps one status change records: a canary started, a traffic
weight applied, a canary promoted, a rollback.

Derived from the (previous, next) status pair alone, so a restarted operator, which starts from
the stored status, repeats none of them. The operator's automatic rollback of a late canary is
not repeated here: `canary` reports it as a Warning.
"""

from collections.abc import Sequence

from berth_operator import canary, rollout, tracks


def between(
    previous: rollout.Status, status: rollout.Status, *, applied: bool
) -> list[canary.Event]:
    """The steps from `previous` to `status`, in order. `applied`: every child was written, so a
    new weight is on the routes (a refused route carries the old one)."""
    before, after = previous.get("canary") or {}, status.get("canary") or {}
    old_stable = previous.get("stable", {}).get("version")
    stable = status.get("stable", {}).get("version")
    events = []
    if (
        "version" in after
        and "drainingSince" not in after
        and not _serving(before, after["version"])
    ):
        events.append(
            canary.Event(
                "Normal",
                "CanaryStarted",
                f"canary version {after['version']} started beside stable version {stable}",
            )
        )
    if old_stable is not None and stable != old_stable:
        if _serving(before, stable):
            message = f"canary version {stable} promoted to stable (was version {old_stable})"
            events.append(canary.Event("Normal", "Promoted", message))
        elif stable in _earlier_versions(previous.get("history", [])):
            message = f"stable rolled back from version {old_stable} to version {stable}"
            events.append(canary.Event("Normal", "RolledBack", message))
    if _withdrawn(previous, status, stable):
        message = (
            f"canary version {before['version']} withdrawn; traffic returns to stable "
            f"version {stable}"
        )
        events.append(canary.Event("Normal", "RolledBack", message))
    weight, old_weight = status.get("weight", 0), previous.get("weight", 0)
    if applied and weight != old_weight:
        version = after.get("version", before.get("version"))
        message = (
            f"canary version {version} takes {weight}% of traffic, stable version {stable} "
            f"{100 - weight}% (was {old_weight}%)"
        )
        events.append(canary.Event("Normal", "WeightApplied", message))
    return events


def _serving(before: tracks.TrackStatus, version: int | None) -> bool:
    """`before` was a canary of `version`, not draining."""
    return "drainingSince" not in before and before.get("version") == version


def _withdrawn(previous: rollout.Status, status: rollout.Status, stable: int | None) -> bool:
    """A serving canary started to leave without being promoted or rolled back by the operator
    (the spec dropped it: `kubectl berth rollback`, or an edit)."""
    before, after = previous.get("canary") or {}, status.get("canary") or {}
    if "version" not in before or "drainingSince" in before or before["version"] == stable:
        return False
    if "version" in after and "drainingSince" not in after:
        return False
    failed = status.get("rolledBackCanary")
    automatic = failed is not None and failed != previous.get("rolledBackCanary")
    return not automatic


def _earlier_versions(history: Sequence[rollout.Revision]) -> set[int]:
    return {entry["version"] for entry in history[:-1]}
