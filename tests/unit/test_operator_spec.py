"""spec.parse: defaults, and errors that name the offending field."""

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from berth_operator import spec

CRD = Path(__file__).parents[2] / "deploy" / "crds" / "modeldeployments.serving.berth.dev.yaml"

MINIMAL: dict[str, Any] = {
    "model": {"name": "fraud", "storage": {"pvc": {"claimName": "models", "subPath": "fraud"}}},
    "stable": {"version": 3},
}


def with_(**changes: Any) -> dict[str, Any]:
    return {**MINIMAL, **changes}


def test_minimal_spec_gets_defaults() -> None:
    md = spec.parse(MINIMAL)
    assert md.model_name == "fraud"
    assert md.storage == spec.PvcSource(claim_name="models", sub_path="fraud")
    assert md.stable_version == 3
    assert md.canary is None
    assert md.replicas == 1
    assert md.traffic.provider == "gateway-api"
    assert md.progress_deadline_seconds == 600
    assert md.batching is None


def test_canary_weight_and_replicas_default_to_zero_and_one() -> None:
    md = spec.parse(with_(canary={"version": 4}))
    assert md.canary == spec.Canary(version=4, weight=0, replicas=1)


def test_host_path_storage_is_accepted() -> None:
    md = spec.parse(with_(model={"name": "m", "storage": {"hostPath": {"path": "/data/m"}}}))
    assert md.storage == spec.HostPathSource(path="/data/m")


def test_object_store_storage_is_accepted_with_its_credentials_endpoint_and_cache() -> None:
    storage = {"uri": "s3://models/m/", "credentials": {"secretName": "s3"},
               "endpoint": "http://minio.minio:9000", "cacheSize": "50Gi"}
    md = spec.parse(with_(model={"name": "m", "storage": storage}))
    assert md.storage == spec.UriSource(uri="s3://models/m", credentials_secret="s3",
                                        endpoint="http://minio.minio:9000", cache_size="50Gi")
    bare = spec.parse(with_(model={"name": "m", "storage": {"uri": "az://models/m"}}))
    assert bare.storage == spec.UriSource(uri="az://models/m")


def test_batching_fields_are_parsed() -> None:
    md = spec.parse(with_(batching={"maxBatchSize": 128, "allowedBatchSizes": [32, 128]}))
    assert md.batching == spec.Batching(max_batch_size=128, allowed_batch_sizes=(32, 128))


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (with_(canary={"version": 3}), "spec.canary.version"),
        (with_(canary={"version": 4, "weight": 101}), "spec.canary.weight"),
        (with_(canary={"version": 4, "weight": -1}), "spec.canary.weight"),
        (with_(model={"name": "m", "storage": {}}), "spec.model.storage"),
        (
            with_(
                model={
                    "name": "m",
                    "storage": {"pvc": {"claimName": "c"}, "hostPath": {"path": "/m"}},
                }
            ),
            "spec.model.storage",
        ),
        (with_(model={"name": "m", "storage": {"uri": "http://b/m"}}), "spec.model.storage.uri"),
        (with_(model={"name": "m", "storage": {"uri": "s3:///m"}}), "spec.model.storage.uri"),
        (
            with_(model={"name": "m", "storage": {"uri": "gs://b/m", "endpoint": "http://x"}}),
            "spec.model.storage.endpoint",
        ),
        (
            with_(model={"name": "m", "storage": {"uri": "s3://b/m", "credentials": {}}}),
            "spec.model.storage.credentials.secretName",
        ),
        (
            with_(model={"name": "m", "storage": {"pvc": {"claimName": "c"}, "cacheSize": "1Gi"}}),
            "spec.model.storage.cacheSize",
        ),
        (
            with_(model={"name": "bad name", "storage": MINIMAL["model"]["storage"]}),
            "spec.model.name",
        ),
        (with_(stable={}), "spec.stable.version"),
        (with_(stable={"version": 0}), "spec.stable.version"),
        (with_(replicas=2, autoscaling={"maxReplicas": 3}), "spec.autoscaling"),
        (with_(autoscaling={"minReplicas": 5, "maxReplicas": 3}), "spec.autoscaling.minReplicas"),
        (with_(traffic={"provider": "linkerd"}), "spec.traffic.provider"),
        (with_(batching={"allowedBatchSizes": [64, 32]}), "spec.batching.allowedBatchSizes"),
        ({"stable": {"version": 1}}, "spec.model"),
    ],
)
def test_invalid_specs_are_rejected_naming_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(spec.SpecError) as caught:
        spec.parse(raw)
    assert caught.value.field == field
    assert str(caught.value).startswith(field + ":")


def _spec_schema() -> Mapping[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    schema: Mapping[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def _scalar_defaults(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted field path, default) for every non-object default; an object default (`{}`) only
    lets its fields' defaults apply when the object itself is omitted."""
    for key, field in schema.get("properties", {}).items():
        if "default" in field and not isinstance(field["default"], dict):
            yield f"{path}{key}", field["default"]
        yield from _scalar_defaults(field, f"{path}{key}.")


def _attribute(camel_case: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", camel_case).lower()


def test_defaults_stated_in_python_are_the_crds() -> None:
    """The API server applies the CRD's defaults; spec's dataclasses restate them for objects
    stored without them (older schema, validation off), so the two must agree."""
    autoscaling = {"maxReplicas": 2, "canary": {"maxReplicas": 2}}
    md = spec.parse(with_(canary={"version": 4}, autoscaling=autoscaling))
    defaults = dict(_scalar_defaults(_spec_schema()))
    assert "traffic.provider" in defaults and "autoscaling.minReplicas" in defaults
    for path, default in defaults.items():
        value: Any = md
        for key in path.split("."):
            value = getattr(value, _attribute(key))
        assert value == default, path


def test_provider_choices_are_the_crds_enum() -> None:
    provider = _spec_schema()["properties"]["traffic"]["properties"]["provider"]
    assert list(spec.PROVIDERS) == provider["enum"]
