"""route_status.problems: a Gateway's refusals of a route, as lines for the Ready condition."""

from typing import Any

from berth_operator import route_status


def route(*conditions: dict[str, Any], generation: int = 2) -> dict[str, Any]:
    return {
        "kind": "HTTPRoute",
        "metadata": {"name": "fraud-http", "generation": generation},
        "status": {
            "parents": [
                {
                    "parentRef": {"name": "ml", "namespace": "gw", "sectionName": "http"},
                    "controllerName": "example.com/gateway",
                    "conditions": list(conditions),
                }
            ]
        },
    }


def condition(kind: str, status: str, reason: str, generation: int = 2) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": "detail",
        "observedGeneration": generation,
    }


def test_an_accepted_route_with_resolved_refs_has_no_problem() -> None:
    ok = route(condition("Accepted", "True", "Accepted"), condition("ResolvedRefs", "True", "R"))
    assert route_status.problems([ok]) == []


def test_a_refused_parent_and_an_unresolved_backend_are_each_reported() -> None:
    refused = route(
        condition("Accepted", "False", "NotAllowedByListeners"),
        condition("ResolvedRefs", "False", "BackendNotFound"),
    )
    assert route_status.problems([refused]) == [
        "HTTPRoute fraud-http on gw/ml/http: Accepted=False NotAllowedByListeners: detail",
        "HTTPRoute fraud-http on gw/ml/http: ResolvedRefs=False BackendNotFound: detail",
    ]


def test_a_report_about_an_older_generation_of_the_route_is_ignored() -> None:
    stale = route(condition("Accepted", "False", "NoMatchingParent", generation=1))
    assert route_status.problems([stale]) == []


def test_a_route_no_controller_reports_on_has_no_problem() -> None:
    assert route_status.problems([{"kind": "GRPCRoute", "metadata": {"name": "x"}}]) == []


def weighted(canary_weight: int, *conditions: dict[str, Any]) -> dict[str, Any]:
    obj = route(*conditions)
    obj["spec"] = {
        "rules": [
            {
                "backendRefs": [
                    {"name": "fraud-stable", "weight": 100 - canary_weight},
                    {"name": "fraud-canary", "weight": canary_weight},
                ]
            }
        ]
    }
    return obj


def test_a_canary_is_drained_once_its_weight_is_zero_and_the_gateway_took_it() -> None:
    took = condition("Accepted", "True", "Accepted", generation=2)
    assert route_status.drained([weighted(0, took)], "fraud-canary")
    assert not route_status.drained([weighted(10, took)], "fraud-canary")
    behind = condition("Accepted", "True", "Accepted", generation=1)
    assert not route_status.drained([weighted(0, behind)], "fraud-canary")


def test_a_virtual_service_is_drained_by_its_destination_weights() -> None:
    vs = {
        "kind": "VirtualService",
        "metadata": {"name": "fraud"},
        "spec": {
            "http": [
                {
                    "route": [
                        {
                            "destination": {"host": "fraud-stable.ml.svc.cluster.local"},
                            "weight": 100,
                        },
                        {"destination": {"host": "fraud-canary.ml.svc.cluster.local"}, "weight": 0},
                    ]
                }
            ]
        },
    }
    assert route_status.drained([vs], "fraud-canary")
    vs["spec"]["http"][0]["route"][1]["weight"] = 5
    assert not route_status.drained([vs], "fraud-canary")
