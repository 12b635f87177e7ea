"""KEDA on the control plane: ScaledObjects that KEDA's own CRD schema accepts, the hand-over from
an HPA, and a cluster without KEDA (then with it, installed later).

The CRD is KEDA's release file (`make k8s-bins` caches it under crds/optional/, which control
planes do not install at start); the API server validates every ScaledObject against it. No KEDA
controller runs: nothing scales, so the Deployments' replicas show what the operator leaves them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import waiting
from kube_control_plane import CRD_DIR, ControlPlane
from operator_harness import (
    Operator,
    apply,
    autoscaled,
    condition,
    get,
    kubectl,
    model_deployment,
    replica_counts,
    wait_ready,
    wait_status,
)

KEDA_CRD = CRD_DIR / "optional" / "keda-scaledobjects.yaml"
KEDA_CRD_NAME = "scaledobjects.keda.sh"
PROMETHEUS = "http://prometheus-operated.monitoring:9090"
QUEUE_DEPTH = {"serverAddress": PROMETHEUS, "metric": "queueDepth", "threshold": 8}


def install_keda(plane: ControlPlane) -> None:
    if not KEDA_CRD.is_file():
        pytest.fail(f"missing {KEDA_CRD}: run `make k8s-bins`")
    plane.kubectl("apply", "--server-side", "-f", str(KEDA_CRD))
    plane.kubectl("wait", "--for=condition=Established", f"crd/{KEDA_CRD_NAME}", "--timeout=60s")


def remove_keda(plane: ControlPlane) -> None:
    plane.kubectl("delete", "crd", KEDA_CRD_NAME, "--ignore-not-found", "--timeout=120s")


@pytest.fixture
def keda_crd(modeldeployment_crd: ControlPlane) -> Iterator[ControlPlane]:
    """KEDA's ScaledObject CRD installed for one test (before its operator starts)."""
    install_keda(modeldeployment_crd)
    yield modeldeployment_crd
    remove_keda(modeldeployment_crd)


@pytest.fixture
def no_keda(modeldeployment_crd: ControlPlane) -> Iterator[ControlPlane]:
    """A cluster without KEDA when the test starts; whatever the test installs goes afterwards."""
    remove_keda(modeldeployment_crd)
    yield modeldeployment_crd
    remove_keda(modeldeployment_crd)


def scaled_object(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return waiting.wait_for(
        lambda: get(plane, namespace, "scaledobject", name),
        timeout_seconds=120,
        interval_seconds=0.5,
        message=f"ScaledObject {name}",
    )


def test_each_autoscaled_track_gets_a_scaled_object_that_keda_s_schema_accepts(
    keda_crd: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    scaling = {
        "minReplicas": 2,
        "maxReplicas": 6,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}},
        "keda": {**QUEUE_DEPTH, "activationThreshold": "0.5", "pollingIntervalSeconds": 15},
        "canary": {"maxReplicas": 2},
    }
    apply(
        keda_crd,
        namespace,
        autoscaled("queued", autoscaling=scaling, canary={"version": 2, "weight": 20}),
    )
    for name, target, bounds in (("queued", "queued-stable", (2, 6)),
                                 ("queued-canary", "queued-canary", (1, 2))):
        live = scaled_object(keda_crd, namespace, name)["spec"]
        assert live["scaleTargetRef"]["name"] == target
        assert (live["minReplicaCount"], live["maxReplicaCount"]) == bounds
        (trigger,) = live["triggers"]
        assert trigger["type"] == "prometheus"
        assert trigger["metadata"]["threshold"] == "8"
        assert f'pod=~"{target}-' in trigger["metadata"]["query"]
        assert live["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == scaling["behavior"]
    md = wait_ready(keda_crd, namespace, "queued", timeout=180)
    assert (condition(md, "Degraded") or {}).get("status") == "False"
    assert get(keda_crd, namespace, "hpa", "queued") is None
    assert get(keda_crd, namespace, "hpa", "queued-canary") is None


def test_moving_from_an_hpa_to_keda_keeps_the_replicas_and_drops_the_hpa(
    keda_crd: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    scaling: dict[str, Any] = {"minReplicas": 1, "maxReplicas": 5}
    apply(keda_crd, namespace, model_deployment("handed", replicas=3))
    wait_ready(keda_crd, namespace, "handed", timeout=180)
    with replica_counts(keda_crd, namespace, "handed-stable") as seen:
        apply(keda_crd, namespace, autoscaled("handed", autoscaling=scaling))
        waiting.wait_for(
            lambda: get(keda_crd, namespace, "hpa", "handed"),
            timeout_seconds=120,
            interval_seconds=0.5,
            message="the HPA",
        )
        keda = {**scaling, "keda": QUEUE_DEPTH}
        apply(keda_crd, namespace, autoscaled("handed", autoscaling=keda))
        scaled_object(keda_crd, namespace, "handed")
        waiting.wait_for(
            lambda: get(keda_crd, namespace, "hpa", "handed") is None,
            timeout_seconds=120,
            interval_seconds=0.5,
            message="the HPA gone",
        )
        wait_ready(keda_crd, namespace, "handed", timeout=180)
    assert min(seen) == 3, seen


def test_without_keda_the_model_deployment_says_so_and_recovers_once_it_is_installed(
    no_keda: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(no_keda, namespace, autoscaled("nokeda", autoscaling={"maxReplicas": 3,
                                                                  "keda": QUEUE_DEPTH}))
    md = wait_status(
        no_keda,
        namespace,
        "nokeda",
        lambda s: (
            (condition({"status": s}, "Degraded") or {}).get("reason") == "ApplyFailed"
            and (condition({"status": s}, "Ready") or {}).get("status") == "True"
        ),
        timeout=180,
        what="Degraded ApplyFailed while the stable track serves",
    )
    message = (condition(md, "Degraded") or {})["message"]
    assert "ScaledObject nokeda" in message and "install KEDA" in message, message
    assert KEDA_CRD_NAME in message, message
    assert get(no_keda, namespace, "hpa", "nokeda") is None  # no HPA stands in for it
    events = kubectl(
        no_keda, "get", "events", "-n", namespace, "--field-selector",
        "involvedObject.name=nokeda,reason=ApplyFailed", "-o", "json",
    ).stdout
    assert any("install KEDA" in e["message"] for e in json.loads(events)["items"])

    install_keda(no_keda)
    scaled_object(no_keda, namespace, "nokeda")
    wait_status(
        no_keda,
        namespace,
        "nokeda",
        lambda s: (condition({"status": s}, "Degraded") or {}).get("status") == "False",
        timeout=180,
        what="Degraded cleared once KEDA serves ScaledObjects",
    )


def refusal(plane: ControlPlane, namespace: str, scaling: dict[str, Any]) -> str:
    manifest = autoscaled("bad", autoscaling=scaling, resources={})
    result = kubectl(
        plane, "apply", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False
    )
    assert result.returncode != 0, "accepted"
    return result.stderr


@pytest.mark.parametrize(
    ("keda", "extra", "message"),
    [
        ({**QUEUE_DEPTH, "query": "up"}, {}, "exactly one of metric or query"),
        ({"serverAddress": PROMETHEUS, "threshold": 8}, {}, "exactly one of metric or query"),
        ({"serverAddress": PROMETHEUS, "metric": "queueDepth"}, {}, "threshold"),
        ({**QUEUE_DEPTH, "threshold": "-1"}, {}, "spec.autoscaling.keda.threshold"),
        ({**QUEUE_DEPTH, "serverAddress": "prometheus:9090"}, {}, "serverAddress"),
        ({**QUEUE_DEPTH, "metric": "latency"}, {}, "spec.autoscaling.keda.metric"),
        (QUEUE_DEPTH, {"targetCPUUtilizationPercentage": 70}, "replaces metrics"),
    ],
)
def test_the_api_server_refuses_a_keda_spec_it_could_not_run(
    modeldeployment_crd: ControlPlane,
    namespace: str,
    keda: dict[str, Any],
    extra: dict[str, Any],
    message: str,
) -> None:
    scaling = {"maxReplicas": 3, "keda": keda, **extra}
    stderr = refusal(modeldeployment_crd, namespace, scaling)
    assert message in stderr, stderr


def test_kubectl_explain_teaches_keda(modeldeployment_crd: ControlPlane) -> None:
    text = kubectl(modeldeployment_crd, "explain", "md.spec.autoscaling.keda").stdout
    for field in ("serverAddress", "metric", "query", "threshold", "authenticationRef"):
        assert field in text
    assert "queue_depth" in kubectl(
        modeldeployment_crd, "explain", "md.spec.autoscaling.keda.metric"
    ).stdout
