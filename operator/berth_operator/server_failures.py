"""Why a track's servers keep failing to start, read from their pods, for the Ready condition.

A server that cannot load its model exits with TF Serving's `Failed to start server. Error: ...`,
which the pod keeps as its termination message (`FallbackToLogsOnError`); a store that refuses
names its URI there. The reconciler indexes each failing server pod as one small `PodFailure`
(not the whole pod) and reports one of them (the first by name, so the message holds still) as
the reason the stable track is not ready.
"""

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from berth_operator import naming, spec

MAX_MESSAGE_CHARS = 1024
_STUCK_WAITING = frozenset(("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff",
                            "CreateContainerConfigError", "CreateContainerError"))


class PodFailure(TypedDict):
    pod: str
    track: str
    message: str


def of_pod(pod: Mapping[str, Any]) -> PodFailure | None:
    """The failure of a pod's server container, or None while it runs or starts normally."""
    for container in pod.get("status", {}).get("containerStatuses", []):
        if container.get("name") != "server":
            continue
        state, last = container.get("state", {}), container.get("lastState", {})
        terminated = state.get("terminated") or last.get("terminated")
        waiting = state.get("waiting") or {}
        if terminated and terminated.get("exitCode", 0) != 0:
            message = _last_words(terminated.get("message", "")) or terminated.get("reason", "")
        elif waiting.get("reason") in _STUCK_WAITING:
            message = f"{waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
        else:
            return None
        labels = pod.get("metadata", {}).get("labels", {})
        return {"pod": pod["metadata"]["name"], "track": labels.get(naming.LABEL_TRACK, ""),
                "message": message[:MAX_MESSAGE_CHARS]}
    return None


def reason(failures: Iterable[PodFailure], md: spec.ModelDeploymentSpec,
           track: naming.Track = "stable") -> tuple[str, str] | None:
    """(reason, message) for a track whose servers fail: ModelStorageFailed when the server
    names the model's store, else ServerFailing; None when none of them fails."""
    mine = [failure for failure in failures if failure["track"] == track]
    if not mine:
        return None
    failure = min(mine, key=lambda f: f["pod"])
    uri = md.storage.uri if isinstance(md.storage, spec.UriSource) else None
    kind = "ModelStorageFailed" if uri and uri in failure["message"] else "ServerFailing"
    return kind, f"{failure['pod']}: {failure['message']}"


def _last_words(log_tail: str) -> str:
    """The line that says why: `Failed to start server...` if there is one, else the last."""
    lines = [line.strip() for line in log_tail.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Failed to start server" in line:
            return line
    return lines[-1] if lines else ""
