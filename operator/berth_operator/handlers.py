"""kopf glue: watch ModelDeployments and their children, and reconcile one object at a time.

Flow of one reconcile: parse the spec → read the children from kopf's in-memory indexes → let
`rollout` decide → `render` the desired children → apply those that drifted, delete owned ones
that are no longer desired → post an event per rollout step → write the status if it changed.
The indexes are fed by watches, so a steady ModelDeployment costs neither reads nor writes.

State kept in kopf's per-object memo: a lock (a timer and an update may fire together) and the
last status written (the watch may not have delivered it yet when the next check runs).
"""

import asyncio
import copy
import dataclasses
import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException

from berth_operator import (
    autoscaling,
    child_cache,
    configfiles,
    drift,
    kinds,
    kubeapi,
    merge_patch,
    naming,
    operator_metrics,
    render,
    rollout,
    rollout_events,
    route_status,
    routes,
    server_failures,
    spec,
    tracks,
)
from berth_operator import settings as operator_settings

Key = tuple[str, str, str]
_FAILING_PODS = "failing_pods"


def register(registry: kopf.OperatorRegistry, options: operator_settings.Options) -> None:
    """Declare every handler on `registry` (nothing is registered at import time)."""
    kopf.on.login(registry=registry)(kopf.login_via_client)
    kopf.on.startup(registry=registry, id="startup")(functools.partial(startup, options=options))
    kopf.on.cleanup(registry=registry, id="cleanup")(cleanup)
    kopf.on.probe(id="writes", registry=registry)(probe_writes)
    for child in kinds.CHILDREN:
        kopf.index(
            group=child.group,
            version=child.version,
            plural=child.plural,
            id=_index_id(child),
            registry=registry,
            labels={naming.LABEL_MANAGED_BY: naming.MANAGED_BY},
        )(index_child)
    kopf.index(
        group=kinds.POD.group,
        version=kinds.POD.version,
        plural=kinds.POD.plural,
        id=_FAILING_PODS,
        registry=registry,
        labels={naming.LABEL_MANAGED_BY: naming.MANAGED_BY},
    )(index_failing_pod)
    parent = kinds.MODEL_DEPLOYMENT
    resource = (parent.group, parent.version, parent.plural)
    kopf.on.update(*resource, registry=registry, field="spec")(reconcile)
    kopf.timer(*resource, registry=registry, interval=options.resync_seconds)(reconcile)
    kopf.on.event(*resource, registry=registry)(observe_conditions)


def _index_id(child: kinds.Kind) -> str:
    return f"children_{child.plural}"


async def startup(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    options: operator_settings.Options,
    **_: Any,
) -> None:
    operator_settings.configure(settings)
    kubeapi.load_config()
    memo.client = kubeapi.Client()
    memo.options = options
    memo.metrics = operator_metrics.OperatorMetrics()
    memo.metrics_server = (
        operator_metrics.MetricsServer(memo.metrics, port=options.metrics_port)
        if options.metrics_port is not None
        else None
    )


async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    server: operator_metrics.MetricsServer | None = memo.get("metrics_server")
    if server is not None:
        await asyncio.to_thread(server.close)


def observe_conditions(
    event: kopf.RawEvent,
    name: str,
    namespace: str | None,
    body: kopf.Body,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Every watch event of a ModelDeployment, deletion included, feeds the conditions gauge."""
    metrics: operator_metrics.OperatorMetrics = memo.metrics
    where = namespace or ""
    if event["type"] == "DELETED":
        metrics.conditions.forget(where, name)
    else:
        metrics.conditions.observe(where, name, body.get("status", {}).get("conditions", []))


def probe_writes(memo: kopf.Memo, **_: Any) -> int:
    """API writes made so far; reported on the liveness endpoint to prove the operator idles."""
    client: kubeapi.Client = memo.client
    return client.writes


def index_child(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], dict[str, Any]]:
    owner = labels.get(naming.LABEL_OWNER)
    return {(namespace, owner): child_cache.slim(body)} if owner else {}


def index_failing_pod(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], server_failures.PodFailure]:
    """Only pods whose server fails, and only what the status says of them."""
    owner = labels.get(naming.LABEL_OWNER)
    failure = server_failures.of_pod(body) if owner else None
    return {(namespace, owner): failure} if owner and failure else {}


def _children(namespace: str, name: str, indexes: Mapping[str, Any]) -> dict[Key, dict[str, Any]]:
    """Live owned children by (apiVersion, kind, name), from the indexes kopf keeps current."""
    found: dict[Key, dict[str, Any]] = {}
    for child in kinds.CHILDREN:
        index = indexes.get(_index_id(child))
        for obj in index.get((namespace, name), []) if index is not None else []:
            found[_key(obj)] = obj
    return found


async def reconcile(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> None:
    lock: asyncio.Lock = memo.setdefault("lock", asyncio.Lock())
    metrics: operator_metrics.OperatorMetrics = memo.metrics
    async with lock:
        try:
            result = await _reconcile(body, memo, logger, kwargs)
        except Exception as error:
            metrics.reconciled("error")
            metrics.error("ApiError" if isinstance(error, ApiException) else "InternalError")
            raise
        metrics.reconciled(result)


async def _reconcile(
    body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, indexes: Mapping[str, Any]
) -> operator_metrics.Result:
    client: kubeapi.Client = memo.client
    metrics: operator_metrics.OperatorMetrics = memo.metrics
    meta = body["metadata"]
    name, namespace, generation = meta["name"], meta["namespace"], int(meta.get("generation", 1))
    previous = cast(
        rollout.Status, memo.get("status") or copy.deepcopy(dict(body.get("status") or {}))
    )
    now = datetime.now(UTC)
    options: operator_settings.Options = memo.options
    try:
        naming.check_owner_name(name)
        md = spec.parse(body["spec"])
        options.security.check(md)
    except spec.SpecError as error:
        logger.warning(f"invalid spec: {error}")
        metrics.error("InvalidSpec")
        await _write_status(
            client,
            memo,
            name,
            namespace,
            previous,
            rollout.invalid(previous, generation=generation, error=error, now=now),
        )
        return "invalid_spec"
    live = _children(namespace, name, indexes)
    live_routes = [obj for key, obj in live.items() if key[:2] in _ROUTE_TYPES]
    decision = rollout.decide(
        md,
        generation=generation,
        now=now,
        previous=previous,
        stable=tracks.observe(live.get(_deployment_key(name, "stable"))),
        canary=tracks.observe(live.get(_deployment_key(name, "canary"))),
        stable_failure=server_failures.reason(
            indexes.get(_FAILING_PODS, {}).get((namespace, name), []), md
        ),
        url=routes.url(md, name, namespace),
        route_problems=route_status.problems(
            route for route in live_routes if route["kind"] != kinds.VIRTUAL_SERVICE.kind
        ),
        routes_drained=route_status.drained(live_routes, naming.track_name(name, "canary")),
        drain_seconds=options.drain_seconds,
    )
    owner = render.Owner(name=name, namespace=namespace, uid=meta["uid"])
    mounted = configfiles.still_mounted(
        live.get(_config_map_key(name)),
        [obj for key, obj in live.items() if key[:2] == _DEPLOYMENT_TYPE],
    )
    desired = render.children(
        dataclasses.replace(md, canary=decision.canary),
        owner,
        canary_on=decision.canary_on,
        weight=decision.weight,
        mounted=mounted,
        images=options.images,
        security=options.security,
        stable_replicas=(live.get(_deployment_key(name, "stable")) or {}).get("spec", {}).get(
            "replicas"
        ),
    )
    failures = await _converge(client, metrics, logger, namespace, desired, live)
    steps = rollout_events.between(previous, decision.status, applied=not failures)
    for event in [*decision.events, *steps]:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        (logger.warning if event.type == "Warning" else logger.info)(event.message)
    status = decision.status
    if failures:
        message = "; ".join(failures)
        status = rollout.apply_failed(status, previous, message=message, now=now)
        if status.get("conditions") != previous.get("conditions"):
            kopf.warn(body, reason="ApplyFailed", message=message)
    await _write_status(client, memo, name, namespace, previous, status)
    return "apply_failed" if failures else "ok"


async def _converge(
    client: kubeapi.Client,
    metrics: operator_metrics.OperatorMetrics,
    logger: kopf.Logger,
    namespace: str,
    desired: list[dict[str, Any]],
    live: dict[Key, dict[str, Any]],
) -> list[str]:
    """Apply the children that drifted (or are missing); delete owned ones no longer desired.

    A child the API server refuses (4xx: its CRD is missing, a webhook denies it) does not stop
    the others; the refusals are returned for the status. Other errors propagate to kopf's retry.
    Deletes come after the applies, except an autoscaler's: it goes first, so that an HPA and
    the ScaledObject replacing it never both scale a Deployment (KEDA refuses that, too).
    """
    stale = live.keys() - {_key(obj) for obj in desired}
    autoscalers = {key for key in stale if key[:2] in _AUTOSCALER_TYPES}
    await _delete(client, metrics, logger, namespace, autoscalers)
    failures = []
    for obj in desired:
        key = _key(obj)
        if drift.carries(live.get(key), obj):
            continue
        logger.info(f"applying {key[1]} {key[2]}")
        handover = autoscaling.handover(live.get(key), obj)
        try:
            with metrics.applying(key[1]):
                if handover is not None:
                    await asyncio.to_thread(
                        client.apply, handover, manager=autoscaling.HANDOVER_MANAGER
                    )
                await asyncio.to_thread(client.apply, obj)
        except ApiException as error:
            if error.status is None or not 400 <= error.status < 500:
                raise
            metrics.error("ApplyRefused")
            failures.append(_refusal(key, error))
    await _delete(client, metrics, logger, namespace, stale - autoscalers)
    return failures


async def _delete(
    client: kubeapi.Client,
    metrics: operator_metrics.OperatorMetrics,
    logger: kopf.Logger,
    namespace: str,
    keys: set[Key],
) -> None:
    for api_version, kind, child in sorted(keys):
        logger.info(f"deleting {kind} {child}")
        metrics.wrote(kind, "delete")
        await asyncio.to_thread(client.delete, api_version, kind, namespace, child)


def _refusal(key: Key, error: ApiException) -> str:
    """What the status says of a refused child; a 404 on an apply means its kind is not served
    (a server-side apply creates what is missing), so it names the CRD to install."""
    kind = kinds.of(key[0], key[1])
    if error.status == 404 and kind.provided_by:
        return (
            f"{key[1]} {key[2]}: the cluster does not serve {kind.api_version} {kind.plural}; "
            f"install {kind.provided_by} (CRD {kind.crd})"
        )
    return f"{key[1]} {key[2]}: {error.status} {error.reason}"


def _key(obj: Mapping[str, Any]) -> Key:
    return (obj["apiVersion"], obj["kind"], obj["metadata"]["name"])


_DEPLOYMENT_TYPE = (kinds.DEPLOYMENT.api_version, kinds.DEPLOYMENT.kind)
_AUTOSCALER_TYPES = {
    (k.api_version, k.kind) for k in (kinds.HORIZONTAL_POD_AUTOSCALER, kinds.SCALED_OBJECT)
}
_ROUTE_TYPES = {
    (k.api_version, k.kind) for k in (kinds.HTTP_ROUTE, kinds.GRPC_ROUTE, kinds.VIRTUAL_SERVICE)
}


def _deployment_key(owner: str, track: naming.Track) -> Key:
    return (*_DEPLOYMENT_TYPE, naming.track_name(owner, track))


def _config_map_key(owner: str) -> Key:
    return (kinds.CONFIG_MAP.api_version, kinds.CONFIG_MAP.kind, naming.config_map_name(owner))


async def _write_status(
    client: kubeapi.Client,
    memo: kopf.Memo,
    name: str,
    namespace: str,
    previous: rollout.Status,
    status: rollout.Status,
) -> None:
    """Merge-patch the status subresource, only when it changed."""
    if status == previous:
        return
    patch = merge_patch.between(previous, status)
    metrics: operator_metrics.OperatorMetrics = memo.metrics
    metrics.wrote(kinds.MODEL_DEPLOYMENT.kind, "patch_status")
    await asyncio.to_thread(
        client.patch_model_deployment, namespace, name, {"status": patch}, status=True
    )
    memo.status = copy.deepcopy(status)
