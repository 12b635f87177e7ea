"""Every kind the operator reads or writes, one row each: the ModelDeployment and its children.

A row holds what every user of a kind needs: the renderers write its `type_meta()`, kopf watches
it by group, version and plural, the API client builds paths from its plural, and the chart's
RBAC rules are checked against the same rows. A new child kind is one row in CHILDREN (plus its
rule in the chart). Every kind here is namespaced.
"""

from dataclasses import dataclass

from berth_operator import naming


@dataclass(frozen=True)
class Kind:
    group: str
    """API group; "" for the core group (ConfigMap, Service)."""
    version: str
    kind: str
    plural: str
    """The resource name in API paths, kopf watches and RBAC rules."""
    provided_by: str = ""
    """The project whose CRD serves the kind; "" for the kinds of Kubernetes itself."""

    @property
    def api_version(self) -> str:
        """`apiVersion` as manifests spell it: the core group has no `group/` prefix."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def crd(self) -> str:
        """The name of the CustomResourceDefinition that serves the kind (if it has one)."""
        return f"{self.plural}.{self.group}"

    def type_meta(self) -> dict[str, str]:
        """The `apiVersion` and `kind` fields that open a manifest of this kind."""
        return {"apiVersion": self.api_version, "kind": self.kind}


MODEL_DEPLOYMENT = Kind(naming.GROUP, "v1alpha1", "ModelDeployment", "modeldeployments")

CONFIG_MAP = Kind("", "v1", "ConfigMap", "configmaps")
SERVICE = Kind("", "v1", "Service", "services")
DEPLOYMENT = Kind("apps", "v1", "Deployment", "deployments")
HORIZONTAL_POD_AUTOSCALER = Kind(
    "autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"
)
POD_DISRUPTION_BUDGET = Kind("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets")
HTTP_ROUTE = Kind("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes", "Gateway API")
GRPC_ROUTE = Kind("gateway.networking.k8s.io", "v1", "GRPCRoute", "grpcroutes", "Gateway API")
VIRTUAL_SERVICE = Kind("networking.istio.io", "v1", "VirtualService", "virtualservices", "Istio")
NETWORK_POLICY = Kind("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies")
SCALED_OBJECT = Kind("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects", "KEDA")

CHILDREN: tuple[Kind, ...] = (
    CONFIG_MAP,
    SERVICE,
    DEPLOYMENT,
    HORIZONTAL_POD_AUTOSCALER,
    POD_DISRUPTION_BUDGET,
    HTTP_ROUTE,
    GRPC_ROUTE,
    VIRTUAL_SERVICE,
    NETWORK_POLICY,
    SCALED_OBJECT,
)
"""Every kind `render` may return; the reconciler watches all of them, so an owned child of a
kind that is no longer rendered (routes of a provider switched off) is still found and deleted."""

POD = Kind("", "v1", "Pod", "pods")
OBSERVED: tuple[Kind, ...] = (POD,)
"""Kinds read and never written: server pods say why a track's servers fail to start."""

ALL: tuple[Kind, ...] = (MODEL_DEPLOYMENT, *CHILDREN, *OBSERVED)

_BY_TYPE_META: dict[tuple[str, str], Kind] = {(k.api_version, k.kind): k for k in ALL}


def of(api_version: str, kind: str) -> Kind:
    """The row of a manifest's apiVersion and kind; KeyError for a kind the operator never uses."""
    return _BY_TYPE_META[(api_version, kind)]
