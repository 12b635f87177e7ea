"""A child the API server refuses is reported in status; the other children still converge."""

from __future__ import annotations

from kube_control_plane import ControlPlane
from operator_harness import Operator, apply, condition, get, model_deployment, wait_status


def test_a_route_the_api_server_refuses_marks_the_model_deployment_degraded(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    bad_parent = {"name": "ml", "sectionName": "Not A Listener Name"}  # Gateway API rejects it
    traffic = {"parentRef": bad_parent, "grpcParentRef": bad_parent}
    apply(control_plane, namespace, model_deployment("fraud", traffic=traffic))

    md = wait_status(
        control_plane,
        namespace,
        "fraud",
        lambda s: (
            (condition({"status": s}, "Degraded") or {}).get("reason") == "ApplyFailed"
            and (condition({"status": s}, "Ready") or {}).get("status") == "True"
        ),
        what="Degraded ApplyFailed while the stable track serves",
    )
    message = (condition(md, "Degraded") or {})["message"]
    assert "HTTPRoute fraud-http: 422" in message and "GRPCRoute fraud-grpc: 422" in message
    assert get(control_plane, namespace, "deployment", "fraud-stable") is not None
    assert get(control_plane, namespace, "httproute", "fraud-http") is None
