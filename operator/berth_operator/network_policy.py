"""spec.networkPolicy → the NetworkPolicy that fences a ModelDeployment's servers (pure).

Ingress only: the servers never call out except to their model store, and an egress rule would
have to know every store's addresses. The policy selects both tracks' pods and opens only their
gRPC and REST ports, to the namespaces the spec names (by the `kubernetes.io/metadata.name` label
the API server sets on every namespace) and to the peers it lists (a gateway's pods by label).
Probes come from the kubelet on the node, which network policies do not filter.
"""

from typing import Any

from berth_operator import kinds, naming, spec

Manifest = dict[str, Any]
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def render(md: spec.ModelDeploymentSpec, owner: str) -> list[Manifest]:
    """The policy named like the ModelDeployment, or nothing when the spec asks for none."""
    policy = md.network_policy
    if policy is None:
        return []
    peers: list[Manifest] = [
        {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: name}}}
        for name in policy.from_namespaces
    ]
    peers += [dict(peer) for peer in policy.peers]
    ports = [
        {"protocol": "TCP", "port": port} for port in (naming.GRPC_PORT, naming.REST_PORT)
    ]
    return [
        {
            **kinds.NETWORK_POLICY.type_meta(),
            "metadata": {"name": owner},
            "spec": {
                "podSelector": {"matchLabels": {naming.LABEL_OWNER: owner}},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": peers, "ports": ports}],
            },
        }
    ]
