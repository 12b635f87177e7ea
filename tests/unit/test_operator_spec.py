"""spec.parse: defaults, and errors that name the offending field."""

from typing import Any

import pytest

from berth_operator import spec

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
        (with_(model={"name": "m", "storage": {"uri": "s3://b/m"}}), "spec.model.storage.uri"),
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
