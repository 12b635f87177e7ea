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
        ({"strategy": {"maxSurge": 0}}, "spec.strategy"),
        ({"strategy": {"maxSurge": "0%", "maxUnavailable": 0}}, "spec.strategy"),
        ({"strategy": {"maxSurge": "lots"}}, "spec.strategy.maxSurge"),
        ({"disruptionBudget": {"maxUnavailable": 1, "minAvailable": 1}}, "spec.disruptionBudget"),
        ({"disruptionBudget": {"unhealthyPodEvictionPolicy": "Never"}},
         "spec.disruptionBudget.unhealthyPodEvictionPolicy"),
        ({"networkPolicy": {}}, "spec.networkPolicy"),
        ({"networkPolicy": {"fromNamespaces": []}}, "spec.networkPolicy"),
        ({"server": {"volumes": [{"name": "config", "emptyDir": {}}]}}, "spec.server.volumes"),
        ({"server": {"imagePullSecrets": [{}]}}, "spec.server.imagePullSecrets"),
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


@pytest.mark.parametrize("name", ["a-stable", "a-canary", "x" * 57, "1fraud", "fraud.v2"])
def test_kubectl_apply_rejects_a_name_whose_children_would_collide_or_not_fit(
    modeldeployment_crd: ControlPlane, namespace: str, name: str
) -> None:
    result = kubectl(modeldeployment_crd, "apply", "-n", namespace, "-f", "-",
                     input=json.dumps(model_deployment(name)), check=False)
    assert result.returncode != 0
    assert "metadata.name must" in result.stderr, result.stderr


def test_kubectl_apply_takes_a_name_as_long_as_every_child_allows(
    modeldeployment_crd: ControlPlane, namespace: str
) -> None:
    name = "x" * 56
    kubectl(modeldeployment_crd, "apply", "-n", namespace, "-f", "-",
            input=json.dumps(model_deployment(name)))


TEAM_SPEC: dict[str, Any] = {
    "server": {
        "serviceAccountName": "fraud-reader",
        "automountServiceAccountToken": True,
        "imagePullSecrets": [{"name": "team-registry"}],
        "podLabels": {"team": "risk"},
        "podAnnotations": {"sidecar.istio.io/inject": "true"},
        "volumes": [{"name": "tls", "secret": {"secretName": "fraud-tls"}}],
        "volumeMounts": [{"name": "tls", "mountPath": "/etc/berth-tls", "readOnly": True}],
    },
    "scheduling": {
        "priorityClassName": "serving-high",
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}
        ],
    },
    "strategy": {"maxSurge": 0, "maxUnavailable": "25%"},
    "disruptionBudget": {"minAvailable": "50%", "unhealthyPodEvictionPolicy": "AlwaysAllow"},
    "networkPolicy": {
        "fromNamespaces": ["gateways"], "from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
    },
}


def test_kubectl_apply_takes_a_teams_pod_overrides_as_written(
    modeldeployment_crd: ControlPlane, namespace: str
) -> None:
    kubectl(modeldeployment_crd, "apply", "-n", namespace, "-f", "-",
            input=json.dumps(model_deployment("team", **TEAM_SPEC)))
    stored = json.loads(kubectl(modeldeployment_crd, "get", "md", "team", "-n", namespace,
                                "-o", "json").stdout)["spec"]
    for key, value in TEAM_SPEC.items():
        assert stored[key] | value == stored[key], key
    assert stored["disruptionBudget"]["enabled"] is True


def test_the_schema_defaults_surge_one_and_no_token(
    modeldeployment_crd: ControlPlane, namespace: str
) -> None:
    manifest = model_deployment("plain", server={}, strategy={})
    kubectl(modeldeployment_crd, "apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    stored = json.loads(kubectl(modeldeployment_crd, "get", "md", "plain", "-n", namespace,
                                "-o", "json").stdout)["spec"]
    assert stored["strategy"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert stored["server"]["automountServiceAccountToken"] is False
