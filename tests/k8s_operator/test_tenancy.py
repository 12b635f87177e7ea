"""A team's pod identity, rollout and fencing reach the cluster; the platform's hostPath switch."""

from __future__ import annotations

import pathlib

import waiting
from kube_control_plane import ControlPlane
from operator_harness import (
    Operator,
    apply,
    condition,
    get,
    kubectl,
    model_deployment,
    wait_ready,
    wait_status,
)


def test_a_teams_overrides_are_applied_and_its_servers_become_ready(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    kubectl(control_plane, "create", "serviceaccount", "fraud-reader", "-n", namespace)
    apply(
        control_plane,
        namespace,
        model_deployment(
            "fraud",
            replicas=2,
            server={
                "serviceAccountName": "fraud-reader",
                "imagePullSecrets": [{"name": "team-registry"}],
                "podLabels": {"team": "risk"},
                "volumes": [{"name": "tls", "secret": {"secretName": "fraud-tls"}}],
                "volumeMounts": [{"name": "tls", "mountPath": "/etc/berth-tls"}],
            },
            strategy={"maxSurge": 0, "maxUnavailable": 1},
            disruptionBudget={"minAvailable": 1},
            networkPolicy={"fromNamespaces": ["gateways"]},
        ),
    )
    wait_ready(control_plane, namespace, "fraud")

    deployment = get(control_plane, namespace, "deployment", "fraud-stable")
    assert deployment is not None
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "fraud-reader"
    assert pod["automountServiceAccountToken"] is False
    assert pod["imagePullSecrets"] == [{"name": "team-registry"}]
    assert deployment["spec"]["template"]["metadata"]["labels"]["team"] == "risk"
    pdb = get(control_plane, namespace, "poddisruptionbudget", "fraud")
    assert pdb is not None and pdb["spec"]["minAvailable"] == 1
    policy = get(control_plane, namespace, "networkpolicy", "fraud")
    assert policy is not None and policy["spec"]["policyTypes"] == ["Ingress"]

    kubectl(control_plane, "patch", "md", "fraud", "-n", namespace, "--type=json",
            "-p", '[{"op": "remove", "path": "/spec/networkPolicy"}]')
    waiting.wait_for(
        lambda: get(control_plane, namespace, "networkpolicy", "fraud") is None,
        timeout_seconds=30,
        interval_seconds=0.5,
        message="the NetworkPolicy deleted once the spec drops it",
    )


def test_host_path_storage_is_invalid_where_the_operator_does_not_allow_it(
    modeldeployment_crd: ControlPlane, namespace: str, tmp_path: pathlib.Path
) -> None:
    operator = Operator(modeldeployment_crd, namespace, tmp_path / "operator.log", args=())
    operator.start()
    try:
        apply(modeldeployment_crd, namespace, model_deployment("local"))
        md = wait_status(
            modeldeployment_crd,
            namespace,
            "local",
            lambda s: (condition({"status": s}, "Ready") or {}).get("reason") == "InvalidSpec",
            what="Ready False InvalidSpec",
        )
    finally:
        operator.stop()
    message = (condition(md, "Ready") or {})["message"]
    assert message.startswith("spec.model.storage.hostPath: hostPath storage is off")
    assert get(modeldeployment_crd, namespace, "deployment", "local-stable") is None
