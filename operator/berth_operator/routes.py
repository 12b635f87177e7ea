"""Traffic providers: `spec.Provider` → the objects that split requests between the two track
Services, one renderer per provider.

Weights are percents for the canary (0–100); stable gets the rest. A renderer only renders; the
rollout logic decides the weight, so a canary that is not ready is rendered with weight 0.
"""

import re
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


REST_VERBS = ("predict", "classify", "regress")
GRPC_SERVICES = (
    "tensorflow.serving.PredictionService",
    "tensorflow.serving.ModelService",
    "berth.serving.StreamingPredictionService",
)
"""The gRPC services a server answers for its model; requests name the model only in their body."""


def _rest_path_matches(model: str) -> list[Manifest]:
    """Every TF Serving REST path of `model`. PathPrefix matches whole path elements, so it covers
    /v1/models/<m>, …/metadata and …/versions/<v>:predict but not /v1/models/<m>:predict (one
    element, `<m>:predict`): those get Exact matches."""
    base = f"/v1/models/{model}"
    return [{"path": {"type": "PathPrefix", "value": base}}] + [
        {"path": {"type": "Exact", "value": f"{base}:{verb}"}} for verb in REST_VERBS
    ]


def _grpc_method_matches() -> list[Manifest]:
    return [{"method": {"type": "Exact", "service": service}} for service in GRPC_SERVICES]


def _mesh_parent(owner: str, port: int) -> Manifest:
    """The umbrella Service's port (GAMMA): the route covers mesh callers of that port only."""
    return {"group": kinds.SERVICE.group, "kind": kinds.SERVICE.kind, "name": owner, "port": port}


def _route(
    kind: kinds.Kind, name: str, md: spec.ModelDeploymentSpec, parent: Manifest, rule: Manifest
) -> Manifest:
    route_spec: Manifest = {"parentRefs": [parent], "rules": [rule]}
    if md.traffic.hostnames:
        route_spec["hostnames"] = list(md.traffic.hostnames)
    return {**kind.type_meta(), "metadata": {"name": name}, "spec": route_spec}


def gateway_api(
    md: spec.ModelDeploymentSpec, owner: str, namespace: str, weight: int, canary_on: bool
) -> list[Manifest]:
    """An HTTPRoute for REST and a GRPCRoute for gRPC, each one rule with weighted backends.

    On a Gateway the routes match only this model's REST paths and the servers' gRPC services,
    so routes of several ModelDeployments share a listener. The GRPCRoute needs a listener of
    its own (`grpcParentRef`): on one listener with intersecting hostnames a Gateway accepts
    only one of an HTTPRoute and a GRPCRoute. Without parentRef both attach to the umbrella
    Service, one port each.
    """
    rest_backends = _backends(owner, naming.REST_PORT, weight, canary_on)
    grpc_backends = _backends(owner, naming.GRPC_PORT, weight, canary_on)
    if md.traffic.parent_ref is None:
        return [
            _route(
                kinds.HTTP_ROUTE,
                f"{owner}-http",
                md,
                _mesh_parent(owner, naming.REST_PORT),
                {"backendRefs": rest_backends},
            ),
            _route(
                kinds.GRPC_ROUTE,
                f"{owner}-grpc",
                md,
                _mesh_parent(owner, naming.GRPC_PORT),
                {"backendRefs": grpc_backends},
            ),
        ]
    rest_rule = {"matches": _rest_path_matches(md.model_name), "backendRefs": rest_backends}
    found = [_route(kinds.HTTP_ROUTE, f"{owner}-http", md, dict(md.traffic.parent_ref), rest_rule)]
    if md.traffic.grpc_parent_ref is not None:
        grpc_rule = {"matches": _grpc_method_matches(), "backendRefs": grpc_backends}
        parent = dict(md.traffic.grpc_parent_ref)
        found.append(_route(kinds.GRPC_ROUTE, f"{owner}-grpc", md, parent, grpc_rule))
    return found


def istio(
    md: spec.ModelDeploymentSpec, owner: str, namespace: str, weight: int, canary_on: bool
) -> list[Manifest]:
    """One VirtualService for gateways and the mesh alike; REST and gRPC told apart by path.

    A gateway listens on its own ports (80, 443), so a match on the servers' ports would never
    hold there: REST is every path of this model, gRPC the servers' services (gRPC's path is
    /<service>/<method>). The umbrella Service's name is always a host, so mesh callers of it
    are covered when hostnames are set; `mesh` joins the gateways for the same reason.
    """
    base = f"/v1/models/{re.escape(md.model_name)}"
    rest_match = [{"uri": {"regex": f"{base}(/.*|:({'|'.join(REST_VERBS)}))?"}}]
    grpc_match = [{"uri": {"prefix": f"/{service}/"}} for service in GRPC_SERVICES]
    http = [
        {
            "name": name,
            "match": match,
            "route": _destinations(owner, namespace, port, weight, canary_on),
        }
        for name, match, port in (
            ("rest", rest_match, naming.REST_PORT),
            ("grpc", grpc_match, naming.GRPC_PORT),
        )
    ]
    hosts = [*md.traffic.hostnames, service_host(owner, namespace)]
    vs_spec: Manifest = {"hosts": list(dict.fromkeys(hosts)), "http": http}
    if md.traffic.gateways:
        vs_spec["gateways"] = list(dict.fromkeys([*md.traffic.gateways, MESH]))
    return [{**kinds.VIRTUAL_SERVICE.type_meta(), "metadata": {"name": owner}, "spec": vs_spec}]


MESH = "mesh"
"""Istio's reserved gateway name for every sidecar: a VirtualService that names gateways applies
to the mesh only when it lists this one too."""


def _destinations(
    owner: str, namespace: str, port: int, weight: int, canary_on: bool
) -> list[Manifest]:
    return [
        {
            "destination": {
                "host": service_host(ref["name"], namespace),
                "port": {"number": port},
            },
            "weight": ref["weight"],
        }
        for ref in _backends(owner, port, weight, canary_on)
    ]


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
