"""Traffic providers: `spec.Provider` → the objects that split requests between the two track
Services, one renderer per provider.

Weights are percents for the canary (0–100); stable gets the rest. A renderer only renders; the
rollout logic decides the weight, so a canary that is not ready is rendered with weight 0.
"""

from collections.abc import Callable
from typing import Any

from berth_operator import kinds, naming, spec

Manifest = dict[str, Any]
Renderer = Callable[[spec.ModelDeploymentSpec, str, str, int, bool], list[Manifest]]
"""(spec, owner, namespace, canary weight, canary on) → one provider's routing objects."""


def service_host(owner: str, namespace: str) -> str:
    return f"{owner}.{namespace}.svc.cluster.local"


def url(md: spec.ModelDeploymentSpec, owner: str, namespace: str) -> str:
    """Where REST clients reach the model: the first hostname, else the umbrella Service."""
    if md.traffic.provider != "none" and md.traffic.hostnames:
        return f"http://{md.traffic.hostnames[0]}/v1/models/{md.model_name}"
    return f"http://{service_host(owner, namespace)}:{naming.REST_PORT}/v1/models/{md.model_name}"


def _backends(owner: str, port: int, weight: int, canary_on: bool) -> list[Manifest]:
    refs = [{"name": naming.track_name(owner, "stable"), "port": port, "weight": 100 - weight}]
    if canary_on:
        refs.append({"name": naming.track_name(owner, "canary"), "port": port, "weight": weight})
    return refs


def _parent(md: spec.ModelDeploymentSpec, owner: str, port: int) -> Manifest:
    if md.traffic.parent_ref is not None:
        return dict(md.traffic.parent_ref)
    return {"group": kinds.SERVICE.group, "kind": kinds.SERVICE.kind, "name": owner, "port": port}


def gateway_api(
    md: spec.ModelDeploymentSpec, owner: str, namespace: str, weight: int, canary_on: bool
) -> list[Manifest]:
    """An HTTPRoute for REST and a GRPCRoute for gRPC, each one rule with weighted backends."""
    routes = []
    for kind, suffix, port in (
        (kinds.HTTP_ROUTE, "http", naming.REST_PORT),
        (kinds.GRPC_ROUTE, "grpc", naming.GRPC_PORT),
    ):
        route_spec: Manifest = {
            "parentRefs": [_parent(md, owner, port)],
            "rules": [{"backendRefs": _backends(owner, port, weight, canary_on)}],
        }
        if md.traffic.hostnames:
            route_spec["hostnames"] = list(md.traffic.hostnames)
        routes.append(
            {**kind.type_meta(), "metadata": {"name": f"{owner}-{suffix}"}, "spec": route_spec}
        )
    return routes


def istio(
    md: spec.ModelDeploymentSpec, owner: str, namespace: str, weight: int, canary_on: bool
) -> list[Manifest]:
    """One VirtualService; REST and gRPC are told apart by the port the caller used."""
    http = []
    for port in (naming.REST_PORT, naming.GRPC_PORT):
        destinations = [
            {
                "destination": {
                    "host": service_host(ref["name"], namespace),
                    "port": {"number": port},
                },
                "weight": ref["weight"],
            }
            for ref in _backends(owner, port, weight, canary_on)
        ]
        http.append({"match": [{"port": port}], "route": destinations})
    vs_spec: Manifest = {
        "hosts": list(md.traffic.hostnames) or [service_host(owner, namespace)],
        "http": http,
    }
    if md.traffic.gateways:
        vs_spec["gateways"] = list(md.traffic.gateways)
    return [{**kinds.VIRTUAL_SERVICE.type_meta(), "metadata": {"name": owner}, "spec": vs_spec}]


def none(
    md: spec.ModelDeploymentSpec, owner: str, namespace: str, weight: int, canary_on: bool
) -> list[Manifest]:
    """No router: the umbrella Service spreads connections over both tracks' pods."""
    return []


RENDERERS: dict[spec.Provider, Renderer] = {
    "gateway-api": gateway_api,
    "istio": istio,
    "none": none,
}
