"""kopf glue: watch ModelDeployments and their children, and reconcile one object at a time.

Flow of one reconcile: parse the spec → read the children from kopf's in-memory indexes → let
`rollout` decide → `render` the desired children → apply those that drifted, delete owned ones
that are no longer desired → write the status if it changed. The indexes are fed by watches, so a
steady ModelDeployment costs neither reads nor writes.

State kept in kopf's per-object memo: a lock (a timer and an update may fire together) and the
last status written (the watch may not have delivered it yet when the next check runs).
"""

import asyncio
import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException

from berth_operator import drift, kinds, kubeapi, naming, render, rollout, routes, spec
from berth_operator import settings as operator_settings

Key = tuple[str, str, str]


def register(registry: kopf.OperatorRegistry, options: operator_settings.Options) -> None:
    """Declare every handler on `registry` (nothing is registered at import time)."""
    kopf.on.login(registry=registry)(kopf.login_via_client)
    kopf.on.startup(registry=registry)(startup)
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
    parent = kinds.MODEL_DEPLOYMENT
    resource = (parent.group, parent.version, parent.plural)
    kopf.on.update(*resource, registry=registry, field="spec")(reconcile)
    kopf.timer(*resource, registry=registry, interval=options.resync_seconds)(reconcile)


def _index_id(child: kinds.Kind) -> str:
    return f"children_{child.plural}"


async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator_settings.configure(settings)
    kubeapi.load_config()
    memo.client = kubeapi.Client()


def probe_writes(memo: kopf.Memo, **_: Any) -> int:
    """API writes made so far; reported on the liveness endpoint to prove the operator idles."""
    client: kubeapi.Client = memo.client
    return client.writes


def index_child(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], dict[str, Any]]:
    owner = labels.get(naming.LABEL_OWNER)
    return {(namespace, owner): copy.deepcopy(dict(body))} if owner else {}


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
    async with lock:
        await _reconcile(body, memo, logger, kwargs)


async def _reconcile(
    body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, indexes: Mapping[str, Any]
) -> None:
    client: kubeapi.Client = memo.client
    meta = body["metadata"]
    name, namespace, generation = meta["name"], meta["namespace"], int(meta.get("generation", 1))
    previous = cast(
        rollout.Status, memo.get("status") or copy.deepcopy(dict(body.get("status") or {}))
    )
    now = datetime.now(UTC)
    try:
        md = spec.parse(body["spec"])
    except spec.SpecError as error:
        logger.warning(f"invalid spec: {error}")
        await _write_status(
            client,
            memo,
            name,
            namespace,
            previous,
            rollout.invalid(previous, generation=generation, error=error, now=now),
        )
        return
    live = _children(namespace, name, indexes)
    decision = rollout.decide(
        md,
        generation=generation,
        now=now,
        previous=previous,
        stable=rollout.observe(live.get(_deployment_key(name, "stable"))),
        canary=rollout.observe(live.get(_deployment_key(name, "canary"))),
        url=routes.url(md, name, namespace),
    )
    owner = render.Owner(name=name, namespace=namespace, uid=meta["uid"])
    desired = render.children(md, owner, canary_on=decision.canary_on, weight=decision.weight)
    failures = await _converge(client, logger, namespace, desired, live)
    for event in decision.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        logger.warning(event.message)
    status = decision.status
    if failures:
        message = "; ".join(failures)
        status = rollout.apply_failed(status, previous, message=message, now=now)
        if status.get("conditions") != previous.get("conditions"):
            kopf.warn(body, reason="ApplyFailed", message=message)
    await _write_status(client, memo, name, namespace, previous, status)


async def _converge(
    client: kubeapi.Client,
    logger: kopf.Logger,
    namespace: str,
    desired: list[dict[str, Any]],
    live: dict[Key, dict[str, Any]],
) -> list[str]:
    """Apply the children that drifted (or are missing); delete owned ones no longer desired.

    A child the API server refuses (4xx: its CRD is missing, a webhook denies it) does not stop
    the others; the refusals are returned for the status. Other errors propagate to kopf's retry.
    """
    failures = []
    for obj in desired:
        key = _key(obj)
        if drift.carries(live.get(key), obj):
            continue
        logger.info(f"applying {key[1]} {key[2]}")
        try:
            await asyncio.to_thread(client.apply, obj)
        except ApiException as error:
            if error.status is None or not 400 <= error.status < 500:
                raise
            failures.append(f"{key[1]} {key[2]}: {error.status} {error.reason}")
    wanted = {_key(obj) for obj in desired}
    for api_version, kind, child in live.keys() - wanted:
        logger.info(f"deleting {kind} {child}")
        await asyncio.to_thread(client.delete, api_version, kind, namespace, child)
    return failures


def _key(obj: Mapping[str, Any]) -> Key:
    return (obj["apiVersion"], obj["kind"], obj["metadata"]["name"])


def _deployment_key(owner: str, track: naming.Track) -> Key:
    return (kinds.DEPLOYMENT.api_version, kinds.DEPLOYMENT.kind, naming.track_name(owner, track))


async def _write_status(
    client: kubeapi.Client,
    memo: kopf.Memo,
    name: str,
    namespace: str,
    previous: rollout.Status,
    status: rollout.Status,
) -> None:
    """Merge-patch the status subresource, only when it changed; dropped keys are nulled."""
    if status == previous:
        return
    patch: dict[str, Any] = {key: None for key in previous.keys() - status.keys()}
    patch.update(status)
    await asyncio.to_thread(
        client.patch_model_deployment, namespace, name, {"status": patch}, status=True
    )
    memo.status = copy.deepcopy(status)
