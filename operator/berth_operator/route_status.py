"""What the live routes say: their Gateway's reports, and whether they still send to a track.

Gateway API controllers report in `status.parents[].conditions`. A route can be written and
still carry no traffic: its Gateway refuses it (Accepted=False: NotAllowedByListeners,
NoMatchingListenerHostname, a conflict with another route) or cannot resolve a backend
(ResolvedRefs=False). Those reports feed the Ready condition. A condition computed for an older
generation of the route says nothing about the current one; a route no controller reports on
(no `status.parents`) has nothing to say either.
"""

from collections.abc import Iterable, Mapping
from typing import Any

CHECKED = ("Accepted", "ResolvedRefs")


def problems(routes: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per refused parent: `HTTPRoute fraud-http on ns/ml: Accepted=False Reason: …`."""
    found = []
    for route in routes:
        meta = route.get("metadata") or {}
        generation = int(meta.get("generation", 0))
        for parent in (route.get("status") or {}).get("parents") or []:
            for condition in parent.get("conditions") or []:
                if (
                    condition.get("type") in CHECKED
                    and condition.get("status") == "False"
                    and int(condition.get("observedGeneration", generation)) >= generation
                ):
                    found.append(
                        f"{route.get('kind')} {meta.get('name')} on {_parent(parent)}: "
                        f"{condition['type']}=False {condition.get('reason', '')}: "
                        f"{condition.get('message', '')}".rstrip(": ")
                    )
    return found


def _parent(parent: Mapping[str, Any]) -> str:
    ref = parent.get("parentRef") or {}
    name = f"{ref['namespace']}/{ref.get('name')}" if ref.get("namespace") else ref.get("name")
    return f"{name}/{ref['sectionName']}" if ref.get("sectionName") else str(name)


def drained(routes: Iterable[Mapping[str, Any]], backend: str) -> bool:
    """No live route gives `backend` (a track's Service) weight, and every controller reporting
    on a route has taken its current generation: the canary can go without failing requests."""
    return all(
        not any(weight > 0 for weight in _weights(route, backend)) and _taken(route)
        for route in routes
    )


def _weights(route: Mapping[str, Any], backend: str) -> list[int]:
    """`backend`'s weights in an HTTPRoute/GRPCRoute (backendRefs) or a VirtualService (hosts)."""
    spec = route.get("spec") or {}
    refs = [ref for rule in spec.get("rules", []) for ref in rule.get("backendRefs", [])]
    weights = [int(ref.get("weight", 1)) for ref in refs if ref.get("name") == backend]
    destinations = [d for http in spec.get("http", []) for d in http.get("route", [])]
    return weights + [
        int(d.get("weight", 0))
        for d in destinations
        if str(d.get("destination", {}).get("host", "")).split(".")[0] == backend
    ]


def _taken(route: Mapping[str, Any]) -> bool:
    generation = int((route.get("metadata") or {}).get("generation", 0))
    return all(
        int(condition.get("observedGeneration", generation)) >= generation
        for parent in (route.get("status") or {}).get("parents") or []
        for condition in parent.get("conditions") or []
        if condition.get("type") == "Accepted"
    )
