"""What the Gateway reports on the routes reaches the ModelDeployment's Ready condition."""

from __future__ import annotations

from kube_control_plane import ControlPlane
from operator_harness import (
    Operator,
    apply,
    condition,
    merge_patch,
    model_deployment,
    wait_ready,
    wait_status,
)


def report(plane: ControlPlane, namespace: str, accepted: str, reason: str) -> None:
    """Write the route's status as a Gateway controller would."""
    status = {
        "parents": [
            {
                "parentRef": {"name": "ml", "namespace": "gateways", "sectionName": "http"},
                "controllerName": "example.com/gateway-controller",
                "conditions": [
                    {
                        "type": "Accepted",
                        "status": accepted,
                        "reason": reason,
                        "message": "listener http allows routes from its own namespace only",
                        "observedGeneration": 1,
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
            }
        ]
    }
    merge_patch(
        plane, namespace, "httproute", "fraud-http", {"status": status}, subresource="status"
    )


def test_a_route_the_gateway_refuses_turns_ready_false_until_it_is_accepted(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    traffic = {
        "parentRef": {"name": "ml", "namespace": "gateways", "sectionName": "http"},
        "hostnames": ["fraud.example.com"],
    }
    apply(control_plane, namespace, model_deployment("fraud", traffic=traffic))
    wait_ready(control_plane, namespace, "fraud")

    report(control_plane, namespace, "False", "NotAllowedByListeners")
    md = wait_status(
        control_plane,
        namespace,
        "fraud",
        lambda s: (condition({"status": s}, "Ready") or {}).get("reason") == "RouteNotAccepted",
        what="Ready=False from the route's status",
    )
    ready = condition(md, "Ready") or {}
    assert ready["status"] == "False"
    assert "HTTPRoute fraud-http on gateways/ml/http" in ready["message"]
    assert "NotAllowedByListeners" in ready["message"]

    report(control_plane, namespace, "True", "Accepted")
    wait_ready(control_plane, namespace, "fraud")
