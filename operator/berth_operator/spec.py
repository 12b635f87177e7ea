"""Parse a ModelDeployment's raw spec into typed, defaulted values, or fail naming the field.

The API server already validates against the CRD schema; this module repeats the checks that
matter for rendering so that an object stored under an older schema (or one applied with
validation off) is reported as InvalidSpec instead of producing broken children.

Defaults: the CRD is the source of truth and the API server fills them in; the dataclass field
defaults below restate each one once (a test compares them with the CRD), and `parse` reads a
missing field's default from the class (`Canary.weight`) rather than writing the value again.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args, overload

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
Provider = Literal["gateway-api", "istio", "none"]
"""The name of a traffic provider, as `spec.traffic.provider` spells it."""
PROVIDERS: tuple[Provider, ...] = get_args(Provider)


class SpecError(ValueError):
    """A spec the operator cannot serve; `field` is the dotted path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class PvcSource:
    claim_name: str
    sub_path: str = ""


@dataclass(frozen=True)
class HostPathSource:
    path: str


@dataclass(frozen=True)
class UriSource:
    """An object-store base path the server reads itself (s3://, gs://, az://, abfs://)."""

    uri: str
    credentials_secret: str | None = None
    """A Secret whose keys become the server's environment (AWS_ACCESS_KEY_ID, ...)."""
    endpoint: str | None = None
    """S3-compatible stores (MinIO, Ceph): the server's AWS_ENDPOINT_URL."""
    cache_size: str = "10Gi"
    """The sizeLimit of the emptyDir the server downloads versions into."""


_STORE_URI = re.compile(r"(s3|gs|az|abfs)://[^/\s]+(/\S*)?")


@dataclass(frozen=True)
class Canary:
    version: int
    weight: int = 0
    replicas: int = 1


@dataclass(frozen=True)
class CanaryAutoscaling:
    """Bounds of the canary's own autoscaler; without them its replicas follow its weight."""

    max_replicas: int
    min_replicas: int = 1


DEFAULT_CPU_UTILIZATION_PERCENTAGE = 80
METRIC_TYPES = ("Resource", "Pods", "External")
"""autoscaling/v2 metric types a spec may name; each sets the member of the same name."""


KedaMetric = Literal["queueDepth", "requestRate"]
"""Server metrics a KEDA trigger can follow by name; `keda` holds their PromQL."""
KEDA_METRICS: tuple[KedaMetric, ...] = get_args(KedaMetric)
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


@dataclass(frozen=True)
class Keda:
    """A KEDA ScaledObject per autoscaled track, with a Prometheus trigger, instead of HPAs."""

    server_address: str
    threshold: str
    """The value per server KEDA aims for (a decimal, as KEDA's trigger metadata spells it)."""
    metric: KedaMetric | None = None
    query: str | None = None
    """PromQL of the user's own; `{{selector}}` stands for the track's pods' label matchers."""
    activation_threshold: str | None = None
    polling_interval_seconds: int | None = None
    authentication_ref: Mapping[str, Any] | None = None
    """A TriggerAuthentication (or ClusterTriggerAuthentication) for Prometheus' credentials."""


@dataclass(frozen=True)
class Autoscaling:
    max_replicas: int
    min_replicas: int = 1
    target_cpu_utilization_percentage: int | None = None
    """A cpu Utilization metric next to `metrics`; None adds none."""
    metrics: tuple[Mapping[str, Any], ...] = ()
    """autoscaling/v2 MetricSpecs, passed to the autoscalers as written."""
    behavior: Mapping[str, Any] | None = None
    """autoscaling/v2 HorizontalPodAutoscalerBehavior (scaleUp, scaleDown)."""
    canary: CanaryAutoscaling | None = None
    keda: Keda | None = None
    """KEDA scales the tracks instead of HPAs; `metrics` and the cpu target are then unused."""

    @property
    def cpu_utilization_percentage(self) -> int | None:
        """The cpu target of the shortcut field; 80 when no metric at all is given."""
        if self.target_cpu_utilization_percentage is None and not self.metrics:
            return DEFAULT_CPU_UTILIZATION_PERCENTAGE
        return self.target_cpu_utilization_percentage


@dataclass(frozen=True)
class Batching:
    """TF Serving BatchingParameters; None leaves the server's default."""

    max_batch_size: int | None = None
    batch_timeout_micros: int | None = None
    max_enqueued_batches: int | None = None
    num_batch_threads: int | None = None
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool | None = None


@dataclass(frozen=True)
class Resources:
    gpu: int = 0
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Server:
    image: str | None = None
    """None: the operator's image for the ModelDeployment's resources (`settings.ServerImages`)."""
    args: tuple[str, ...] = ()
    env: tuple[Mapping[str, Any], ...] = ()
    config_poll_seconds: int = 30
    startup_timeout_seconds: int = 600
    service_account_name: str | None = None
    """The pods' identity, e.g. for workload identity to an object store; None: the default."""
    automount_service_account_token: bool = False
    """The server never calls the API server; a token in every pod is only something to steal."""
    image_pull_secrets: tuple[str, ...] = ()
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    """Added to the pods' labels; the operator's own (selectors, version) win over them."""
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    volumes: tuple[Mapping[str, Any], ...] = ()
    """Extra pod volumes (a TLS Secret for --ssl_config_file); not named like the operator's."""
    volume_mounts: tuple[Mapping[str, Any], ...] = ()


RESERVED_VOLUMES = frozenset({"model", "model-cache", "config", "tmp"})
"""Volume names the operator renders itself."""


@dataclass(frozen=True)
class Scheduling:
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] | None = None
    priority_class_name: str | None = None
    topology_spread_constraints: tuple[Mapping[str, Any], ...] = ()


IntOrPercent = int | str
"""A count or a percentage ("25%"), as Deployments and PodDisruptionBudgets take them."""
_PERCENT = re.compile(r"[0-9]+%")


@dataclass(frozen=True)
class Strategy:
    """The tracks' rolling update. A GPU pool without a spare GPU needs maxSurge 0 and
    maxUnavailable 1: a surge pod would wait for a GPU that only the old pod frees."""

    max_surge: IntOrPercent = 1
    max_unavailable: IntOrPercent = 0


@dataclass(frozen=True)
class DisruptionBudget:
    """One PodDisruptionBudget over both tracks; neither bound set means maxUnavailable 1."""

    enabled: bool = True
    max_unavailable: IntOrPercent | None = None
    min_available: IntOrPercent | None = None
    unhealthy_pod_eviction_policy: str | None = None


@dataclass(frozen=True)
class NetworkPolicy:
    """Ingress to the servers' ports only from these namespaces (by name) and peers."""

    from_namespaces: tuple[str, ...] = ()
    peers: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Traffic:
    provider: Provider = "gateway-api"
    parent_ref: Mapping[str, Any] | None = None
    grpc_parent_ref: Mapping[str, Any] | None = None
    hostnames: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelDeploymentSpec:
    model_name: str
    storage: PvcSource | HostPathSource | UriSource
    stable_version: int
    canary: Canary | None = None
    replicas: int = 1
    autoscaling: Autoscaling | None = None
    resources: Resources = field(default_factory=Resources)
    batching: Batching | None = None
    server: Server = field(default_factory=Server)
    scheduling: Scheduling = field(default_factory=Scheduling)
    traffic: Traffic = field(default_factory=Traffic)
    progress_deadline_seconds: int = 600
    revision_history_limit: int = 10
    strategy: Strategy = field(default_factory=Strategy)
    disruption_budget: DisruptionBudget = field(default_factory=DisruptionBudget)
    network_policy: NetworkPolicy | None = None


def parse(raw: Mapping[str, Any]) -> ModelDeploymentSpec:
    """Raw `spec` mapping → ModelDeploymentSpec; raises SpecError naming the first bad field."""
    model = _mapping(raw, "model", required=True)
    stable = _mapping(raw, "stable", required=True)
    stable_version = _int(stable, "version", "spec.stable.version", minimum=1, required=True)
    canary = _canary(raw, stable_version)
    autoscaling = _autoscaling(raw)
    if autoscaling is not None and "replicas" in raw:
        raise SpecError("spec.autoscaling", "replicas and autoscaling are mutually exclusive")
    return ModelDeploymentSpec(
        model_name=_model_name(model),
        storage=_storage(_mapping(model, "storage", required=True, path="spec.model.storage")),
        stable_version=stable_version,
        canary=canary,
        replicas=_int(
            raw, "replicas", "spec.replicas", minimum=0, default=ModelDeploymentSpec.replicas
        ),
        autoscaling=autoscaling,
        resources=_resources(_mapping(raw, "resources")),
        batching=_batching(raw),
        server=_server(_mapping(raw, "server")),
        scheduling=_scheduling(_mapping(raw, "scheduling")),
        traffic=_traffic(_mapping(raw, "traffic")),
        progress_deadline_seconds=_int(
            raw,
            "progressDeadlineSeconds",
            "spec.progressDeadlineSeconds",
            minimum=1,
            default=ModelDeploymentSpec.progress_deadline_seconds,
        ),
        revision_history_limit=_int(
            raw,
            "revisionHistoryLimit",
            "spec.revisionHistoryLimit",
            minimum=1,
            default=ModelDeploymentSpec.revision_history_limit,
        ),
        strategy=_strategy(_mapping(raw, "strategy")),
        disruption_budget=_disruption_budget(_mapping(raw, "disruptionBudget")),
        network_policy=_network_policy(raw),
    )


def _model_name(model: Mapping[str, Any]) -> str:
    name = model.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError("spec.model.name", "required")
    if not _MODEL_NAME.fullmatch(name):
        raise SpecError("spec.model.name", f"{name!r} must be letters, digits, '_', '-' and '.'")
    return name


def _storage(storage: Mapping[str, Any]) -> PvcSource | HostPathSource | UriSource:
    given = [key for key in ("pvc", "hostPath", "uri") if key in storage]
    if len(given) != 1:
        raise SpecError("spec.model.storage", "set exactly one of pvc, hostPath or uri")
    uri_only = [key for key in ("credentials", "endpoint", "cacheSize") if key in storage]
    if given == ["uri"]:
        return _uri_source(storage)
    if uri_only:
        raise SpecError(f"spec.model.storage.{uri_only[0]}", "applies only with uri")
    if given == ["pvc"]:
        pvc = _mapping(storage, "pvc", path="spec.model.storage.pvc")
        claim = pvc.get("claimName")
        if not isinstance(claim, str) or not claim:
            raise SpecError("spec.model.storage.pvc.claimName", "required")
        return PvcSource(claim_name=claim, sub_path=str(pvc.get("subPath", PvcSource.sub_path)))
    path = _mapping(storage, "hostPath", path="spec.model.storage.hostPath").get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise SpecError("spec.model.storage.hostPath.path", "must be an absolute path")
    return HostPathSource(path=path)


def _uri_source(storage: Mapping[str, Any]) -> UriSource:
    uri = storage["uri"]
    if not isinstance(uri, str) or not _STORE_URI.fullmatch(uri):
        raise SpecError("spec.model.storage.uri",
                        f"{uri!r} must be s3://, gs://, az:// or abfs:// with a bucket")
    endpoint = storage.get("endpoint")
    if endpoint is not None and not uri.startswith("s3://"):
        raise SpecError("spec.model.storage.endpoint", "applies only to s3:// URIs")
    secret = _mapping(storage, "credentials", path="spec.model.storage.credentials").get(
        "secretName")
    if "credentials" in storage and (not isinstance(secret, str) or not secret):
        raise SpecError("spec.model.storage.credentials.secretName", "required")
    return UriSource(uri=uri.rstrip("/"), credentials_secret=secret, endpoint=endpoint,
                     cache_size=str(storage.get("cacheSize", UriSource.cache_size)))


def _canary(raw: Mapping[str, Any], stable_version: int) -> Canary | None:
    if raw.get("canary") is None:
        return None
    canary = _mapping(raw, "canary")
    version = _int(canary, "version", "spec.canary.version", minimum=1, required=True)
    if version == stable_version:
        raise SpecError("spec.canary.version", "must differ from spec.stable.version")
    return Canary(
        version=version,
        weight=_int(
            canary, "weight", "spec.canary.weight", minimum=0, maximum=100, default=Canary.weight
        ),
        replicas=_int(
            canary, "replicas", "spec.canary.replicas", minimum=1, default=Canary.replicas
        ),
    )


def _autoscaling(raw: Mapping[str, Any]) -> Autoscaling | None:
    if raw.get("autoscaling") is None:
        return None
    hpa = _mapping(raw, "autoscaling")
    low = _int(
        hpa,
        "minReplicas",
        "spec.autoscaling.minReplicas",
        minimum=1,
        default=Autoscaling.min_replicas,
    )
    high = _int(hpa, "maxReplicas", "spec.autoscaling.maxReplicas", minimum=1, required=True)
    if low > high:
        raise SpecError("spec.autoscaling.minReplicas", "must not exceed maxReplicas")
    target = (
        _int(
            hpa,
            "targetCPUUtilizationPercentage",
            "spec.autoscaling.targetCPUUtilizationPercentage",
            minimum=1,
            maximum=100,
        )
        if hpa.get("targetCPUUtilizationPercentage") is not None
        else Autoscaling.target_cpu_utilization_percentage
    )
    behavior = _mapping(hpa, "behavior", path="spec.autoscaling.behavior")
    keda = _keda(hpa)
    if keda is not None and (hpa.get("metrics") or target is not None):
        raise SpecError(
            "spec.autoscaling.keda", "replaces metrics and targetCPUUtilizationPercentage"
        )
    return Autoscaling(
        max_replicas=high,
        min_replicas=low,
        target_cpu_utilization_percentage=target,
        metrics=tuple(_metric(m, i) for i, m in enumerate(hpa.get("metrics") or ())),
        behavior=dict(behavior) if behavior else Autoscaling.behavior,
        canary=_canary_autoscaling(hpa),
        keda=keda,
    )


def _metric(raw: Any, index: int) -> Mapping[str, Any]:
    """A MetricSpec whose type names a member it sets; the HPA API checks the rest."""
    path = f"spec.autoscaling.metrics[{index}]"
    if not isinstance(raw, Mapping) or raw.get("type") not in METRIC_TYPES:
        raise SpecError(f"{path}.type", f"must be one of {', '.join(METRIC_TYPES)}")
    member = raw["type"].lower()
    body = _mapping(raw, member, required=True, path=f"{path}.{member}")
    if not isinstance(body.get("target"), Mapping) or "type" not in body["target"]:
        raise SpecError(f"{path}.{member}.target.type", "required")
    return dict(raw)


def _keda(hpa: Mapping[str, Any]) -> Keda | None:
    if hpa.get("keda") is None:
        return None
    path = "spec.autoscaling.keda"
    raw = _mapping(hpa, "keda", path=path)
    address = raw.get("serverAddress")
    if not isinstance(address, str) or not address.startswith(("http://", "https://")):
        raise SpecError(f"{path}.serverAddress", "must be an http:// or https:// URL")
    metric, query = raw.get("metric"), raw.get("query")
    if (metric is None) == (query is None):
        raise SpecError(path, "set exactly one of metric or query")
    if metric is not None and metric not in KEDA_METRICS:
        raise SpecError(f"{path}.metric", f"must be one of {', '.join(KEDA_METRICS)}")
    if query is not None and (not isinstance(query, str) or not query.strip()):
        raise SpecError(f"{path}.query", "must be a PromQL query")
    polling = (
        _int(raw, "pollingIntervalSeconds", f"{path}.pollingIntervalSeconds", minimum=1)
        if raw.get("pollingIntervalSeconds") is not None
        else Keda.polling_interval_seconds
    )
    reference = _mapping(raw, "authenticationRef", path=f"{path}.authenticationRef")
    if reference and not reference.get("name"):
        raise SpecError(f"{path}.authenticationRef.name", "required")
    threshold = _decimal(raw, "threshold", f"{path}.threshold")
    if threshold is None:
        raise SpecError(f"{path}.threshold", "required")
    return Keda(
        server_address=address,
        threshold=threshold,
        metric=cast(KedaMetric | None, metric),
        query=query,
        activation_threshold=_decimal(raw, "activationThreshold", f"{path}.activationThreshold"),
        polling_interval_seconds=polling,
        authentication_ref=dict(reference) if reference else Keda.authentication_ref,
    )


def _decimal(raw: Mapping[str, Any], key: str, path: str) -> str | None:
    """A non-negative decimal given as a number or a string, as the string KEDA reads."""
    value = raw.get(key)
    if value is None:
        return None
    text = str(value)
    if isinstance(value, bool) or not _DECIMAL.fullmatch(text):
        raise SpecError(path, f"must be a non-negative decimal number, got {value!r}")
    return text


def _canary_autoscaling(hpa: Mapping[str, Any]) -> CanaryAutoscaling | None:
    if hpa.get("canary") is None:
        return None
    bounds = _mapping(hpa, "canary", path="spec.autoscaling.canary")
    path = "spec.autoscaling.canary"
    low = _int(bounds, "minReplicas", f"{path}.minReplicas", minimum=1,
               default=CanaryAutoscaling.min_replicas)
    high = _int(bounds, "maxReplicas", f"{path}.maxReplicas", minimum=1, required=True)
    if low > high:
        raise SpecError(f"{path}.minReplicas", "must not exceed maxReplicas")
    return CanaryAutoscaling(max_replicas=high, min_replicas=low)


def _resources(raw: Mapping[str, Any]) -> Resources:
    return Resources(
        gpu=_int(raw, "gpu", "spec.resources.gpu", minimum=0, default=Resources.gpu),
        requests={k: str(v) for k, v in _mapping(raw, "requests").items()},
        limits={k: str(v) for k, v in _mapping(raw, "limits").items()},
    )


def _batching(raw: Mapping[str, Any]) -> Batching | None:
    if raw.get("batching") is None:
        return None
    b = _mapping(raw, "batching")

    def opt(key: str, minimum: int) -> int | None:
        return _int(b, key, f"spec.batching.{key}", minimum=minimum) if key in b else None

    sizes = tuple(int(s) for s in b.get("allowedBatchSizes", ()))
    if list(sizes) != sorted(sizes):
        raise SpecError("spec.batching.allowedBatchSizes", "must be ascending")
    pad = b.get("padVariableLengthInputs")
    return Batching(
        max_batch_size=opt("maxBatchSize", 1),
        batch_timeout_micros=opt("batchTimeoutMicros", 0),
        max_enqueued_batches=opt("maxEnqueuedBatches", 1),
        num_batch_threads=opt("numBatchThreads", 1),
        allowed_batch_sizes=sizes,
        pad_variable_length_inputs=None if pad is None else bool(pad),
    )


def _server(raw: Mapping[str, Any]) -> Server:
    return Server(
        image=str(raw["image"]) if raw.get("image") else Server.image,
        args=tuple(str(a) for a in raw.get("args", ())),
        env=tuple(dict(e) for e in raw.get("env", ())),
        config_poll_seconds=_int(
            raw,
            "configPollSeconds",
            "spec.server.configPollSeconds",
            minimum=1,
            default=Server.config_poll_seconds,
        ),
        startup_timeout_seconds=_int(
            raw,
            "startupTimeoutSeconds",
            "spec.server.startupTimeoutSeconds",
            minimum=1,
            default=Server.startup_timeout_seconds,
        ),
        service_account_name=str(raw["serviceAccountName"]) if raw.get("serviceAccountName")
        else Server.service_account_name,
        automount_service_account_token=bool(
            raw.get("automountServiceAccountToken", Server.automount_service_account_token)
        ),
        image_pull_secrets=tuple(
            str(s["name"]) for s in raw.get("imagePullSecrets", ()) if s.get("name")
        ),
        pod_labels=_strings(raw, "podLabels"),
        pod_annotations=_strings(raw, "podAnnotations"),
        volumes=_volumes(raw),
        volume_mounts=tuple(dict(m) for m in raw.get("volumeMounts", ())),
    )


def _strings(raw: Mapping[str, Any], key: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in _mapping(raw, key).items()}


def _volumes(raw: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    volumes = tuple(dict(v) for v in raw.get("volumes", ()))
    for volume in volumes:
        if volume.get("name") in RESERVED_VOLUMES:
            raise SpecError("spec.server.volumes",
                            f"{volume['name']!r} is a volume of the operator's own")
    return volumes


def _scheduling(raw: Mapping[str, Any]) -> Scheduling:
    affinity = raw.get("affinity")
    return Scheduling(
        node_selector=_strings(raw, "nodeSelector"),
        tolerations=tuple(dict(t) for t in raw.get("tolerations", ())),
        affinity=dict(affinity) if affinity else None,
        priority_class_name=str(raw["priorityClassName"]) if raw.get("priorityClassName")
        else Scheduling.priority_class_name,
        topology_spread_constraints=tuple(
            dict(c) for c in raw.get("topologySpreadConstraints", ())
        ),
    )


def _strategy(raw: Mapping[str, Any]) -> Strategy:
    surge = _int_or_percent(raw, "maxSurge", "spec.strategy.maxSurge", Strategy.max_surge)
    unavailable = _int_or_percent(
        raw, "maxUnavailable", "spec.strategy.maxUnavailable", Strategy.max_unavailable
    )
    if surge in (0, "0%") and unavailable in (0, "0%"):
        raise SpecError("spec.strategy", "maxSurge and maxUnavailable must not both be 0")
    return Strategy(max_surge=surge, max_unavailable=unavailable)


def _disruption_budget(raw: Mapping[str, Any]) -> DisruptionBudget:
    path = "spec.disruptionBudget"
    if "maxUnavailable" in raw and "minAvailable" in raw:
        raise SpecError(path, "set at most one of maxUnavailable and minAvailable")
    policy = raw.get("unhealthyPodEvictionPolicy")
    if policy not in (None, "IfHealthyBudget", "AlwaysAllow"):
        raise SpecError(f"{path}.unhealthyPodEvictionPolicy",
                        f"{policy!r} is not IfHealthyBudget or AlwaysAllow")
    return DisruptionBudget(
        enabled=bool(raw.get("enabled", DisruptionBudget.enabled)),
        max_unavailable=_int_or_percent(raw, "maxUnavailable", f"{path}.maxUnavailable", None),
        min_available=_int_or_percent(raw, "minAvailable", f"{path}.minAvailable", None),
        unhealthy_pod_eviction_policy=policy,
    )


def _network_policy(raw: Mapping[str, Any]) -> NetworkPolicy | None:
    if raw.get("networkPolicy") is None:
        return None
    policy = _mapping(raw, "networkPolicy")
    allowed = NetworkPolicy(
        from_namespaces=tuple(str(n) for n in policy.get("fromNamespaces", ())),
        peers=tuple(dict(p) for p in policy.get("from", ())),
    )
    if not (allowed.from_namespaces or allowed.peers):
        raise SpecError("spec.networkPolicy", "name fromNamespaces or from; none would deny all")
    return allowed


@overload
def _int_or_percent(
    raw: Mapping[str, Any], key: str, path: str, default: IntOrPercent
) -> IntOrPercent: ...
@overload
def _int_or_percent(
    raw: Mapping[str, Any], key: str, path: str, default: None
) -> IntOrPercent | None: ...
def _int_or_percent(
    raw: Mapping[str, Any], key: str, path: str, default: IntOrPercent | None
) -> IntOrPercent | None:
    value = raw.get(key, default)
    if isinstance(value, str) and _PERCENT.fullmatch(value):
        return value
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise SpecError(path, f"must be a count >= 0 or a percentage like '25%', got {value!r}")


def _traffic(raw: Mapping[str, Any]) -> Traffic:
    provider = raw.get("provider", Traffic.provider)
    if provider not in PROVIDERS:
        raise SpecError(
            "spec.traffic.provider", f"{provider!r} is not one of {', '.join(PROVIDERS)}"
        )
    parents = {key: _parent_ref(raw, key) for key in ("parentRef", "grpcParentRef")}
    if parents["grpcParentRef"] is not None and parents["parentRef"] is None:
        raise SpecError("spec.traffic.grpcParentRef", "needs spec.traffic.parentRef")
    return Traffic(
        provider=cast(Provider, provider),
        parent_ref=parents["parentRef"],
        grpc_parent_ref=parents["grpcParentRef"],
        hostnames=tuple(str(h) for h in raw.get("hostnames", ())),
        gateways=tuple(str(g) for g in raw.get("gateways", ())),
    )


def _parent_ref(raw: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    if raw.get(key) is None:
        return None
    parent = _mapping(raw, key, path=f"spec.traffic.{key}")
    if not parent.get("name"):
        raise SpecError(f"spec.traffic.{key}.name", "required")
    return dict(parent)


def _mapping(
    raw: Mapping[str, Any], key: str, *, required: bool = False, path: str | None = None
) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        if required:
            raise SpecError(path or f"spec.{key}", "required")
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(path or f"spec.{key}", "must be an object")
    return value


def _int(
    raw: Mapping[str, Any],
    key: str,
    path: str,
    *,
    minimum: int,
    maximum: int | None = None,
    default: int | None = None,
    required: bool = False,
) -> int:
    value = raw.get(key)
    if value is None:
        if required or default is None:
            raise SpecError(path, "required")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(path, f"must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise SpecError(path, f"must be {bounds}, got {value}")
    return value
