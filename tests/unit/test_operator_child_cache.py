"""What the operator keeps of a live child: everything it reads, not the managedFields."""

from typing import Any

from berth_operator import autoscaling, child_cache, naming, render, spec

OWNER = render.Owner(name="fraud", namespace="ml", uid="uid-1")
BASE: dict[str, Any] = {
    "model": {"name": "fraud", "storage": {"pvc": {"claimName": "models"}}},
    "stable": {"version": 3},
    "resources": {"requests": {"cpu": "1"}},
}


def live(*entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "fraud-stable",
            "namespace": "ml",
            "labels": {naming.LABEL_OWNER: "fraud"},
            "managedFields": list(entries),
        },
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "server"}]}}},
        "status": {"readyReplicas": 3},
    }


def entry(manager: str, operation: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": "apps/v1",
        "fieldsType": "FieldsV1",
        "time": "2026-01-01T00:00:00Z",
        "fieldsV1": {"f:spec": fields},
    }


OPERATOR = entry(naming.FIELD_MANAGER, "Apply", {"f:replicas": {}, "f:template": {"f:spec": {}}})
CONTROLLER = entry("kube-controller-manager", "Update", {"f:replicas": {}})


def test_managed_fields_go_and_the_rest_stays() -> None:
    body = live(CONTROLLER)
    kept = child_cache.slim(body)
    assert "managedFields" not in kept["metadata"]
    assert {**kept, "metadata": {}} == {**body, "metadata": {}}
    assert kept["metadata"] == {k: v for k, v in body["metadata"].items() if k != "managedFields"}


def test_the_operators_replicas_claim_is_kept_reduced_to_that_field() -> None:
    kept = child_cache.slim(live(CONTROLLER, OPERATOR))
    replicas = {"f:spec": {"f:replicas": {}}}
    assert kept["metadata"]["managedFields"] == [
        {"manager": naming.FIELD_MANAGER, "operation": "Apply", "fieldsV1": replicas}
    ]


def test_a_slim_deployment_still_hands_its_replicas_to_an_autoscaler() -> None:
    md = spec.parse({**BASE, "autoscaling": {"maxReplicas": 5}})
    objs = render.children(md, OWNER, canary_on=False, weight=0)
    (desired,) = [o for o in objs if o["kind"] == "Deployment"]
    handover = autoscaling.handover(child_cache.slim(live(CONTROLLER, OPERATOR)), desired)
    assert handover is not None and handover["spec"] == {"replicas": 3}
    assert autoscaling.handover(child_cache.slim(live(CONTROLLER)), desired) is None


def test_the_copy_is_the_callers_own() -> None:
    body = live(OPERATOR)
    kept = child_cache.slim(body)
    kept["spec"]["template"]["spec"]["containers"].append({"name": "other"})
    assert len(body["spec"]["template"]["spec"]["containers"]) == 1
