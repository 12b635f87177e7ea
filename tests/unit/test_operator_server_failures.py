"""server_failures: why a track's servers keep failing, from their pods, into Ready."""

from datetime import UTC, datetime
from typing import Any

from berth_operator import rollout, server_failures, spec, tracks

URI = "s3://models/churn"
REFUSED = (
    "2026-12-01 12:00:00.000 I berth_server] Fetching s3://models/churn\n"
    "Failed to start server. Error: UNKNOWN: 1 model(s) did not become available: "
    f"{{churn: Could not list {URI}: SignatureDoesNotMatch: the signature does not match}}\n"
)


def pod(name: str, track: str, container: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"serving.berth.dev/track": track}},
        "status": {"containerStatuses": [{"name": "server", **container}]},
    }


def crashing(name: str = "churn-stable-1", track: str = "stable") -> dict[str, Any]:
    return pod(name, track, {
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": REFUSED}},
    })


def md(storage: dict[str, Any]) -> spec.ModelDeploymentSpec:
    return spec.parse({"model": {"name": "churn", "storage": storage}, "stable": {"version": 3}})


def test_a_crashing_server_is_reported_with_its_last_words() -> None:
    failure = server_failures.of_pod(crashing())
    assert failure is not None
    assert failure["track"] == "stable"
    assert failure["message"].startswith("Failed to start server. Error: UNKNOWN")


def test_running_and_starting_servers_are_not_failures() -> None:
    assert server_failures.of_pod(pod("a", "stable", {"state": {"running": {}}})) is None
    starting = {"state": {"waiting": {"reason": "ContainerCreating"}}}
    assert server_failures.of_pod(pod("b", "stable", starting)) is None
    restarted_fine = {"state": {"running": {}},
                      "lastState": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
    assert server_failures.of_pod(pod("c", "stable", restarted_fine)) is None


def test_an_image_that_cannot_be_pulled_is_a_failure() -> None:
    pulling = {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}
    failure = server_failures.of_pod(pod("d", "stable", pulling))
    assert failure is not None and failure["message"] == "ImagePullBackOff: not found"


def test_a_refusal_naming_the_models_store_is_a_storage_failure() -> None:
    failure = server_failures.of_pod(crashing())
    assert failure is not None
    reason, message = server_failures.reason([failure], md({"uri": URI})) or ("", "")
    assert reason == "ModelStorageFailed"
    assert message.startswith("churn-stable-1: Failed to start server") and URI in message
    other = server_failures.reason([failure], md({"hostPath": {"path": "/m"}}))
    assert other is not None and other[0] == "ServerFailing"


def test_only_the_tracks_own_pods_count() -> None:
    failure = server_failures.of_pod(crashing("churn-canary-1", "canary"))
    assert failure is not None
    assert server_failures.reason([failure], md({"uri": URI})) is None


def test_ready_says_why_the_stable_servers_fail() -> None:
    decision = rollout.decide(
        md({"uri": URI}), generation=1, now=datetime(2026, 1, 1, tzinfo=UTC), previous={},
        url="http://x", stable=tracks.Track(version=3, desired=1, replicas=1, updated=1, ready=0),
        canary=None, stable_failure=("ModelStorageFailed", f"churn-stable-1: ... {URI} ..."))
    ready = next(c for c in decision.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ModelStorageFailed")
    assert URI in ready["message"]
