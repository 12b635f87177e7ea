"""Invalid specs are refused by the API server, with a message that names the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kube_control_plane import ControlPlane
from operator_harness import kubectl, model_deployment

HOST = {"hostPath": {"path": "/m"}}


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"canary": {"version": 1, "weight": 10}}, "spec.canary.version"),
        ({"canary": {"version": 2, "weight": 150}}, "spec.canary.weight"),
        ({"canary": {"version": 2, "weight": -5}}, "spec.canary.weight"),
        (
            {"model": {"name": "m", "storage": {"pvc": {"claimName": "c"}, **HOST}}},
            "spec.model.storage",
        ),
        ({"model": {"name": "m", "storage": {}}}, "spec.model.storage"),
        ({"replicas": 2, "autoscaling": {"maxReplicas": 3}}, "spec.autoscaling"),
        ({"autoscaling": {"minReplicas": 4, "maxReplicas": 3}}, "spec.autoscaling.minReplicas"),
        ({"traffic": {"provider": "linkerd"}}, "spec.traffic.provider"),
        ({"stable": {"version": 0}}, "spec.stable.version"),
        ({"stable": None}, "spec.stable"),
        ({"model": {"name": "m", "storage": {"uri": "http://b/m"}}}, "spec.model.storage.uri"),
        (
            {"model": {"name": "m", "storage": {"uri": "gs://b/m", "endpoint": "http://e"}}},
            "spec.model.storage",
        ),
        ({"model": {"name": "m", "storage": {**HOST, "cacheSize": "1Gi"}}}, "spec.model.storage"),
    ],
)
def test_kubectl_apply_rejects_an_invalid_spec_naming_the_field(
    modeldeployment_crd: ControlPlane, namespace: str, spec: dict[str, Any], field: str
) -> None:
    manifest = model_deployment("bad", **spec)
    manifest["spec"] = {k: v for k, v in manifest["spec"].items() if v is not None}
    result = kubectl(
        modeldeployment_crd,
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(manifest),
        check=False,
    )
    assert result.returncode != 0
    assert field in result.stderr, result.stderr


def test_kubectl_apply_takes_an_object_store_model(
    modeldeployment_crd: ControlPlane, namespace: str
) -> None:
    storage = {"uri": "s3://models/m", "credentials": {"secretName": "keys"},
               "endpoint": "http://minio:9000", "cacheSize": "20Gi"}
    manifest = model_deployment("from-s3", model={"name": "m", "storage": storage},
                                server={"serviceAccountName": "reader"})
    kubectl(modeldeployment_crd, "apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    stored = json.loads(kubectl(modeldeployment_crd, "get", "md", "from-s3", "-n", namespace,
                                "-o", "json").stdout)
    assert stored["spec"]["model"]["storage"] == storage
    assert stored["spec"]["server"]["serviceAccountName"] == "reader"
