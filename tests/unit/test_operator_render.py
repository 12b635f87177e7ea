"""render.children: the desired objects for a ModelDeployment."""

from typing import Any

import pytest

from berth_operator import kinds, render, routes, spec

OWNER = render.Owner(name="fraud", namespace="ml", uid="uid-1")
BASE: dict[str, Any] = {
    "model": {"name": "fraud", "storage": {"pvc": {"claimName": "models", "subPath": "fraud"}}},
    "stable": {"version": 3},
    "replicas": 2,
}


def children(raw: dict[str, Any], *, canary_on: bool = False, weight: int = 0) -> dict[str, Any]:
    objs = render.children(spec.parse(raw), OWNER, canary_on=canary_on, weight=weight)
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objs}


def server(objs: dict[str, Any], track: str = "stable") -> dict[str, Any]:
    container: dict[str, Any] = objs[f"Deployment/fraud-{track}"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def test_a_stable_only_deployment_renders_the_expected_children() -> None:
    assert sorted(children(BASE)) == [
        "ConfigMap/fraud-config",
        "Deployment/fraud-stable",
        "GRPCRoute/fraud-grpc",
        "HTTPRoute/fraud-http",
        "PodDisruptionBudget/fraud",
        "Service/fraud",
        "Service/fraud-stable",
    ]


def test_every_child_is_owned_by_the_model_deployment_as_controller() -> None:
    for obj in children(BASE, canary_on=True).values():
        (ref,) = obj["metadata"]["ownerReferences"]
        assert (
            ref["uid"] == "uid-1" and ref["controller"] is True and ref["kind"] == "ModelDeployment"
        )
        assert obj["metadata"]["namespace"] == "ml"
        assert obj["metadata"]["labels"]["serving.berth.dev/modeldeployment"] == "fraud"


def test_server_runs_with_tf_serving_flags_and_probes_the_model_version() -> None:
    container = server(children({**BASE, "batching": {"maxBatchSize": 8}}))
    assert container["command"] == ["berth-server"]
    assert container["args"] == [
        "--port=8500",
        "--rest_api_port=8501",
        "--model_config_file=/etc/berth/models.config",
        "--model_config_file_poll_wait_seconds=30",
        "--enable_reload_config_rpc=false",
        "--enable_batching",
        "--batching_parameters_file=/etc/berth/batching.config",
    ]
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": "http",
    }


def test_batching_flags_are_absent_without_batching() -> None:
    assert not any("batching" in a for a in server(children(BASE))["args"])


def test_server_is_non_root_with_a_read_only_root_filesystem() -> None:
    objs = children(BASE)
    context = server(objs)["securityContext"]
    assert context["runAsNonRoot"] and context["runAsUser"] == 1000
    assert context["readOnlyRootFilesystem"] is True
    pod = objs["Deployment/fraud-stable"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_pvc_model_is_mounted_read_only_with_its_sub_path() -> None:
    objs = children(BASE)
    mount = server(objs)["volumeMounts"][0]
    assert mount == {
        "name": "model",
        "mountPath": "/models/fraud",
        "readOnly": True,
        "subPath": "fraud",
    }
    volume = objs["Deployment/fraud-stable"]["spec"]["template"]["spec"]["volumes"][0]
    assert volume["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}


def test_host_path_model_is_mounted_without_sub_path() -> None:
    raw = {**BASE, "model": {"name": "fraud", "storage": {"hostPath": {"path": "/srv/fraud"}}}}
    objs = children(raw)
    assert "subPath" not in server(objs)["volumeMounts"][0]
    volume = objs["Deployment/fraud-stable"]["spec"]["template"]["spec"]["volumes"][0]
    assert volume["hostPath"]["path"] == "/srv/fraud"


def test_gpu_count_sets_the_limit_the_toleration_and_memory_growth() -> None:
    objs = children({**BASE, "resources": {"gpu": 2, "requests": {"cpu": "1"}}})
    container = server(objs)
    assert container["resources"] == {"requests": {"cpu": "1"}, "limits": {"nvidia.com/gpu": "2"}}
    assert {"name": "TF_FORCE_GPU_ALLOW_GROWTH", "value": "true"} in container["env"]
    tolerations = objs["Deployment/fraud-stable"]["spec"]["template"]["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_cpu_only_servers_get_no_gpu_toleration() -> None:
    pod = children(BASE)["Deployment/fraud-stable"]["spec"]["template"]["spec"]
    assert "tolerations" not in pod


def test_scheduling_fields_reach_the_pod() -> None:
    raw = {
        **BASE,
        "scheduling": {"nodeSelector": {"pool": "gpu"}, "affinity": {"nodeAffinity": {}}},
    }
    pod = children(raw)["Deployment/fraud-stable"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "gpu"} and pod["affinity"] == {"nodeAffinity": {}}


def test_canary_track_gets_its_own_deployment_service_and_models_config() -> None:
    objs = children({**BASE, "canary": {"version": 4, "weight": 10}}, canary_on=True, weight=10)
    assert "Deployment/fraud-canary" in objs and "Service/fraud-canary" in objs
    assert "versions: 4" in objs["ConfigMap/fraud-config"]["data"]["canary.models.config"]
    volumes = objs["Deployment/fraud-canary"]["spec"]["template"]["spec"]["volumes"]
    assert volumes[1]["configMap"]["items"] == [
        {"key": "canary.models.config", "path": "models.config"}
    ]
    assert objs["Deployment/fraud-canary"]["spec"]["replicas"] == 1


def test_canary_is_not_rendered_when_the_rollout_turns_it_off() -> None:
    objs = children({**BASE, "canary": {"version": 4, "weight": 10}}, canary_on=False)
    assert "Deployment/fraud-canary" not in objs
    assert "canary.models.config" not in objs["ConfigMap/fraud-config"]["data"]


def test_routes_split_by_weight_between_track_services() -> None:
    objs = children({**BASE, "canary": {"version": 4, "weight": 30}}, canary_on=True, weight=30)
    for name, port in (("HTTPRoute/fraud-http", 8501), ("GRPCRoute/fraud-grpc", 8500)):
        (rule,) = objs[name]["spec"]["rules"]
        assert rule["backendRefs"] == [
            {"name": "fraud-stable", "port": port, "weight": 70},
            {"name": "fraud-canary", "port": port, "weight": 30},
        ]


def test_routes_attach_to_the_umbrella_service_without_a_parent_ref() -> None:
    parent = children(BASE)["HTTPRoute/fraud-http"]["spec"]["parentRefs"][0]
    assert parent == {"group": "", "kind": "Service", "name": "fraud", "port": 8501}


def test_routes_attach_to_the_given_gateway_with_hostnames() -> None:
    raw = {
        **BASE,
        "traffic": {"parentRef": {"name": "ml", "namespace": "gw"}, "hostnames": ["a.b"]},
    }
    route = children(raw)["GRPCRoute/fraud-grpc"]["spec"]
    assert route["parentRefs"] == [{"name": "ml", "namespace": "gw"}] and route["hostnames"] == [
        "a.b"
    ]


def test_istio_provider_renders_a_virtual_service_instead_of_routes() -> None:
    objs = children(
        {**BASE, "canary": {"version": 4}, "traffic": {"provider": "istio"}},
        canary_on=True,
        weight=20,
    )
    assert "HTTPRoute/fraud-http" not in objs
    http = objs["VirtualService/fraud"]["spec"]["http"]
    assert [r["weight"] for r in http[0]["route"]] == [80, 20]
    assert http[0]["route"][1]["destination"]["host"] == "fraud-canary.ml.svc.cluster.local"


def test_none_provider_renders_only_services() -> None:
    objs = children({**BASE, "traffic": {"provider": "none"}})
    assert not [k for k in objs if "Route" in k or "VirtualService" in k]


def test_autoscaling_renders_an_hpa_and_leaves_replicas_to_it() -> None:
    raw = {k: v for k, v in BASE.items() if k != "replicas"}
    objs = children({**raw, "autoscaling": {"minReplicas": 2, "maxReplicas": 5}})
    hpa = objs["HorizontalPodAutoscaler/fraud"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 5)
    assert hpa["scaleTargetRef"]["name"] == "fraud-stable"
    assert "replicas" not in objs["Deployment/fraud-stable"]["spec"]


def test_pods_roll_when_their_config_changes() -> None:
    def config_hash(raw: dict[str, Any]) -> str:
        template = children(raw)["Deployment/fraud-stable"]["spec"]["template"]
        return str(template["metadata"]["annotations"]["serving.berth.dev/config-hash"])

    assert config_hash(BASE) != config_hash({**BASE, "batching": {"maxBatchSize": 4}})
    assert config_hash(BASE) != config_hash({**BASE, "stable": {"version": 4}})
    assert config_hash(BASE) == config_hash({**BASE, "replicas": 5})


def _empty_paths(value: Any, path: str = "") -> list[str]:
    if isinstance(value, dict):
        if not value and not path.endswith("emptyDir"):
            return [path]
        return [p for k, v in value.items() for p in _empty_paths(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [path] if not value else [p for v in value for p in _empty_paths(v, path + "[]")]
    return []


def test_every_provider_has_a_renderer() -> None:
    assert set(routes.RENDERERS) == set(spec.PROVIDERS)


@pytest.mark.parametrize("provider", spec.PROVIDERS)
def test_every_rendered_child_is_of_a_watched_kind(provider: str) -> None:
    """The reconciler sees only kinds.CHILDREN: a child of another kind would be re-applied on
    every check and never deleted."""
    raw = {k: v for k, v in BASE.items() if k != "replicas"}
    raw |= {
        "canary": {"version": 4},
        "autoscaling": {"maxReplicas": 3},
        "traffic": {"provider": provider},
    }
    watched = {(kind.api_version, kind.kind) for kind in kinds.CHILDREN}
    for name, obj in children(raw, canary_on=True).items():
        assert (obj["apiVersion"], obj["kind"]) in watched, name


def test_rendered_children_hold_no_empty_lists_or_maps_the_api_server_would_drop() -> None:
    for raw in (BASE, {**BASE, "canary": {"version": 4}, "traffic": {"provider": "istio"}}):
        for name, obj in children(raw, canary_on=True).items():
            assert _empty_paths(obj) == [], name
