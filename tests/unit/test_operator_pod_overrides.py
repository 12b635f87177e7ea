"""What a team sets on its servers' pods, and what the platform decides for all of them."""

import importlib
from typing import Any

import pytest

from berth_operator import naming, render, settings, spec

OWNER = render.Owner(name="fraud", namespace="ml", uid="uid-1")
BASE: dict[str, Any] = {
    "model": {"name": "fraud", "storage": {"pvc": {"claimName": "models"}}},
    "stable": {"version": 3},
}
TLS_VOLUME = {"name": "tls", "secret": {"secretName": "fraud-tls"}}
TLS_MOUNT = {"name": "tls", "mountPath": "/etc/berth-tls", "readOnly": True}
TEAM: dict[str, Any] = {
    **BASE,
    "server": {
        "serviceAccountName": "fraud-reader",
        "imagePullSecrets": [{"name": "team-registry"}],
        "podLabels": {"cost-centre": "risk", "serving.berth.dev/track": "mine"},
        "podAnnotations": {"sidecar.istio.io/inject": "true"},
        "volumes": [TLS_VOLUME],
        "volumeMounts": [TLS_MOUNT],
    },
    "scheduling": {
        "priorityClassName": "serving-high",
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
             "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": {naming.LABEL_OWNER: "fraud"}}},
        ],
    },
}


def children(
    raw: dict[str, Any], security: settings.ServerSecurity = render.DEFAULT_SECURITY
) -> dict[str, Any]:
    objs = render.children(
        spec.parse(raw), OWNER, canary_on=True, weight=0, security=security
    )
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objs}


def template(objs: dict[str, Any], track: str = "stable") -> dict[str, Any]:
    found: dict[str, Any] = objs[f"Deployment/fraud-{track}"]["spec"]["template"]
    return found


def test_a_teams_identity_pull_secret_and_placement_reach_its_pods() -> None:
    pod = template(children(TEAM))["spec"]
    assert pod["serviceAccountName"] == "fraud-reader"
    assert pod["imagePullSecrets"] == [{"name": "team-registry"}]
    assert pod["priorityClassName"] == "serving-high"
    assert pod["topologySpreadConstraints"] == TEAM["scheduling"]["topologySpreadConstraints"]


def test_pod_labels_and_annotations_are_added_but_never_replace_the_selector() -> None:
    meta = template(children(TEAM))["metadata"]
    assert meta["labels"]["cost-centre"] == "risk"
    assert meta["labels"]["serving.berth.dev/track"] == "stable"
    assert meta["annotations"] == {"sidecar.istio.io/inject": "true"}
    assert "annotations" not in template(children(BASE))["metadata"]


def test_extra_volumes_are_mounted_next_to_the_operators_own() -> None:
    pod = template(children(TEAM))["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["model", "config", "tmp", "tls"]
    assert TLS_VOLUME in pod["volumes"]
    assert TLS_MOUNT in pod["containers"][0]["volumeMounts"]


@pytest.mark.parametrize("name", sorted(spec.RESERVED_VOLUMES))
def test_a_volume_named_like_the_operators_own_is_refused(name: str) -> None:
    raw = {**BASE, "server": {"volumes": [{"name": name, "emptyDir": {}}]}}
    with pytest.raises(spec.SpecError) as caught:
        spec.parse(raw)
    assert caught.value.field == "spec.server.volumes"


def test_server_pods_get_no_api_token_unless_the_spec_asks() -> None:
    assert template(children(BASE))["spec"]["automountServiceAccountToken"] is False
    asked = {**BASE, "server": {"automountServiceAccountToken": True}}
    assert template(children(asked))["spec"]["automountServiceAccountToken"] is True


def test_pods_run_as_the_images_uid_by_default() -> None:
    pod = template(children(BASE))["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["containers"][0]["securityContext"]["runAsUser"] == 1000


def test_a_cluster_that_assigns_uids_gets_pods_without_fixed_ids() -> None:
    pod = template(children(BASE, settings.ServerSecurity(run_as_user=None)))["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = pod["containers"][0]["securityContext"]
    assert "runAsUser" not in container and container["runAsNonRoot"] is True


def test_rollouts_surge_one_server_by_default() -> None:
    deployment = children(BASE)["Deployment/fraud-stable"]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_a_gpu_pool_without_a_spare_gpu_replaces_servers_in_place() -> None:
    raw = {**BASE, "strategy": {"maxSurge": 0, "maxUnavailable": 1}}
    for track in ("stable", "canary"):
        rolling = children({**raw, "canary": {"version": 4}})[f"Deployment/fraud-{track}"]
        assert rolling["spec"]["strategy"]["rollingUpdate"] == {
            "maxSurge": 0, "maxUnavailable": 1,
        }


@pytest.mark.parametrize(
    ("strategy", "field"),
    [
        ({"maxSurge": 0, "maxUnavailable": "0%"}, "spec.strategy"),
        ({"maxSurge": "a lot"}, "spec.strategy.maxSurge"),
        ({"maxUnavailable": -1}, "spec.strategy.maxUnavailable"),
    ],
)
def test_a_strategy_that_never_progresses_is_refused(strategy: dict[str, Any], field: str) -> None:
    with pytest.raises(spec.SpecError) as caught:
        spec.parse({**BASE, "strategy": strategy})
    assert caught.value.field == field


def test_the_disruption_budget_defaults_to_one_server_down_across_both_tracks() -> None:
    pdb = children(BASE)["PodDisruptionBudget/fraud"]["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": {naming.LABEL_OWNER: "fraud"}}}


def test_the_disruption_budget_takes_the_specs_bounds_and_eviction_policy() -> None:
    raw = {**BASE, "disruptionBudget": {"minAvailable": "50%",
                                        "unhealthyPodEvictionPolicy": "AlwaysAllow"}}
    pdb = children(raw)["PodDisruptionBudget/fraud"]["spec"]
    assert pdb["minAvailable"] == "50%" and "maxUnavailable" not in pdb
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    raw = {**BASE, "disruptionBudget": {"maxUnavailable": 2}}
    assert children(raw)["PodDisruptionBudget/fraud"]["spec"]["maxUnavailable"] == 2


def test_a_disabled_disruption_budget_is_not_rendered() -> None:
    assert "PodDisruptionBudget/fraud" not in children({**BASE, "disruptionBudget": {
        "enabled": False}})


def test_both_disruption_bounds_are_refused() -> None:
    with pytest.raises(spec.SpecError) as caught:
        spec.parse({**BASE, "disruptionBudget": {"maxUnavailable": 1, "minAvailable": 1}})
    assert caught.value.field == "spec.disruptionBudget"


def test_a_network_policy_admits_only_the_named_namespaces_and_peers_to_the_server_ports() -> None:
    gateway_pods = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "gateway"}}}
    raw = {**BASE, "networkPolicy": {"fromNamespaces": ["gateways"], "from": [gateway_pods]}}
    policy = children(raw)["NetworkPolicy/fraud"]
    assert policy["apiVersion"] == "networking.k8s.io/v1"
    assert policy["spec"]["podSelector"] == {"matchLabels": {naming.LABEL_OWNER: "fraud"}}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateways"}}},
        gateway_pods,
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8500}, {"protocol": "TCP", "port": 8501}]
    assert policy["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_no_network_policy_is_rendered_unless_asked() -> None:
    assert not [name for name in children(BASE) if name.startswith("NetworkPolicy/")]


def test_a_network_policy_that_admits_nobody_is_refused() -> None:
    with pytest.raises(spec.SpecError) as caught:
        spec.parse({**BASE, "networkPolicy": {"fromNamespaces": []}})
    assert caught.value.field == "spec.networkPolicy"


def test_host_path_storage_is_refused_unless_the_platform_allows_it() -> None:
    md = spec.parse({**BASE, "model": {"name": "m", "storage": {"hostPath": {"path": "/srv"}}}})
    with pytest.raises(spec.SpecError) as caught:
        settings.ServerSecurity().check(md)
    assert caught.value.field == "spec.model.storage.hostPath"
    assert "--allow-host-path" in str(caught.value)
    settings.ServerSecurity(allow_host_path=True).check(md)
    settings.ServerSecurity().check(spec.parse(BASE))


@pytest.mark.parametrize(
    "name", ["a-stable", "a-canary", "x" * 57, "1fraud", "fraud.v2", "Fraud"]
)
def test_names_whose_children_would_collide_or_not_fit_are_refused(name: str) -> None:
    with pytest.raises(spec.SpecError) as caught:
        naming.check_owner_name(name)
    assert caught.value.field == "metadata.name"


def test_names_that_fit_every_child_are_accepted() -> None:
    for name in ("fraud", "a", "stable", "fraud-stable-v2", "x" * 56):
        naming.check_owner_name(name)


def test_the_operator_flags_choose_the_servers_uid_and_host_paths() -> None:
    cli = importlib.import_module("berth_operator.__main__")
    args = cli.parse_args(["-A"])
    assert (args.server_run_as_user, args.allow_host_path) == (1000, False)
    args = cli.parse_args(["-A", "--server-run-as-user=cluster", "--allow-host-path"])
    assert (args.server_run_as_user, args.allow_host_path) == (None, True)
    assert cli.parse_args(["-A", "--server-run-as-user=1001"]).server_run_as_user == 1001
