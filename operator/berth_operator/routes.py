"""Traffic providers: name → the objects that split requests between the two track Services.

Weights are percents for the canary (0–100); stable gets the rest. A provider only renders; the
rollout logic decides the weight, so a canary that is not ready is rendered with weight 0.
"""

from collections.abc import Callable
from typing import Any

from berth_operator import naming, spec

Manifest = dict[str, Any]
Provider = Callable[[spec.ModelDeploymentSpec, str, str, int, bool], list[Manifest]]

GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
ISTIO_API_VERSION = "networking.istio.io/v1"


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
    return {"group": "", "kind": "Service", "name": owner, "port": port}


def gateway_api(
    md: spec.ModelDeploymentSpec, owner: str, namespace: str, weight: int, canary_on: bool
) -> list[Manifest]:
    """An HTTPRoute for REST and a GRPCRoute for gRPC, each one rule with weighted backends."""
    routes = []
    for kind, port in (("HTTPRoute", naming.REST_PORT), ("GRPCRoute", naming.GRPC_PORT)):
        route_spec: Manifest = {
            "parentRefs": [_parent(md, owner, port)],
            "rules": [{"backendRefs": _backends(owner, port, weight, canary_on)}],
        }
        if md.traffic.hostnames:
            route_spec["hostnames"] = list(md.traffic.hostnames)
        suffix = "http" if kind == "HTTPRoute" else "grpc"
        routes.append(
            {
                "apiVersion": GATEWAY_API_VERSION,
                "kind": kind,
                "metadata": {"name": f"{owner}-{suffix}"},
                "spec": route_spec,
            }
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
    return [
        {
            "apiVersion": ISTIO_API_VERSION,
            "kind": "VirtualService",
            "metadata": {"name": owner},
            "spec": vs_spec,
        }
    ]


def none(
    md: spec.ModelDeploymentSpec, owner: str, namespace: str, weight: int, canary_on: bool
) -> list[Manifest]:
    """No router: the umbrella Service spreads connections over both tracks' pods."""
    return []


PROVIDERS: dict[spec.Provider, Provider] = {
    "gateway-api": gateway_api,
    "istio": istio,
    "none": none,
}
