"""render.children: the desired objects for a ModelDeployment."""

from typing import Any

import pytest

from berth_operator import kinds, render, routes, settings, spec

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
        "--shutdown_grace_period_seconds=10",
        "--enable_batching",
        "--batching_parameters_file=/etc/berth/batching.config",
    ]
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": "http",
    }


def test_a_slow_model_load_is_covered_by_the_startup_probe_budget_from_the_spec() -> None:
    container = server(children({**BASE, "server": {"startupTimeoutSeconds": 900}}))
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/healthz", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 900
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert "initialDelaySeconds" not in container["livenessProbe"]


def test_the_startup_budget_defaults_to_ten_minutes() -> None:
    startup = server(children(BASE))["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == 600


def test_a_terminating_server_stops_receiving_before_it_stops_serving() -> None:
    """preStop sleeps while endpoints and routers drop the pod; the grace period covers that
    sleep plus the server's own drain of in-flight requests."""
    objs = children(BASE)
    container = server(objs)
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep >= 5
    drain = next(
        int(a.split("=")[1]) for a in container["args"] if a.startswith("--shutdown_grace_period")
    )
    pod = objs["Deployment/fraud-stable"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > sleep + drain


def test_a_server_that_fails_to_start_leaves_its_last_words_as_the_termination_message() -> None:
    assert server(children(BASE))["terminationMessagePolicy"] == "FallbackToLogsOnError"


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


OBJECT_STORE: dict[str, Any] = {
    **BASE,
    "model": {"name": "fraud", "storage": {
        "uri": "s3://models/fraud", "credentials": {"secretName": "s3-keys"},
        "endpoint": "http://minio.minio:9000", "cacheSize": "20Gi"}},
    "server": {"serviceAccountName": "model-reader"},
}


def test_an_object_store_model_is_read_by_the_server_into_a_sized_cache() -> None:
    objs = children(OBJECT_STORE)
    container = server(objs)
    pod = objs["Deployment/fraud-stable"]["spec"]["template"]["spec"]
    assert "--model_cache_dir=/var/cache/berth" in container["args"]
    assert {"name": "model-cache", "mountPath": "/var/cache/berth"} in container["volumeMounts"]
    assert all(mount["name"] != "model" for mount in container["volumeMounts"])
    assert {"name": "model-cache", "emptyDir": {"sizeLimit": "20Gi"}} in pod["volumes"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-keys"}}]
    assert {"name": "AWS_ENDPOINT_URL", "value": "http://minio.minio:9000"} in container["env"]
    assert pod["serviceAccountName"] == "model-reader"
    (config,) = [o for o in objs.values() if o["kind"] == "ConfigMap"]
    (models,) = [text for key, text in config["data"].items() if key.startswith("models-")]
    assert 'base_path: "s3://models/fraud"' in models


def test_an_object_store_model_without_secret_or_endpoint_uses_the_pods_identity() -> None:
    raw = {**BASE, "model": {"name": "fraud", "storage": {"uri": "gs://models/fraud"}}}
    objs = children(raw)
    container = server(objs)
    pod = objs["Deployment/fraud-stable"]["spec"]["template"]["spec"]
    assert "envFrom" not in container and "env" not in container
    assert "serviceAccountName" not in pod
    assert {"name": "model-cache", "emptyDir": {"sizeLimit": "10Gi"}} in pod["volumes"]


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


def mounted_files(objs: dict[str, Any], track: str) -> dict[str, str]:
    """File name → text as a pod of `track` sees them in its config volume."""
    pod = objs[f"Deployment/fraud-{track}"]["spec"]["template"]["spec"]
    (config,) = [v for v in pod["volumes"] if v["name"] == "config"]
    data = objs["ConfigMap/fraud-config"]["data"]
    return {item["path"]: data[item["key"]] for item in config["configMap"]["items"]}


def test_canary_track_gets_its_own_deployment_service_and_models_config() -> None:
    objs = children({**BASE, "canary": {"version": 4, "weight": 10}}, canary_on=True, weight=10)
    assert "Deployment/fraud-canary" in objs and "Service/fraud-canary" in objs
    assert "versions: 4" in mounted_files(objs, "canary")["models.config"]
    assert "versions: 3" in mounted_files(objs, "stable")["models.config"]
    assert objs["Deployment/fraud-canary"]["spec"]["replicas"] == 1


def test_canary_is_not_rendered_when_the_rollout_turns_it_off() -> None:
    objs = children({**BASE, "canary": {"version": 4, "weight": 10}}, canary_on=False)
    assert "Deployment/fraud-canary" not in objs
    assert not [t for t in objs["ConfigMap/fraud-config"]["data"].values() if "versions: 4" in t]


def test_a_version_change_never_changes_a_file_an_existing_pod_mounts() -> None:
    """The server re-reads models.config while it runs: the text under the key an old pod mounts
    must stay as it was, and the new version must reach pods only through a new pod template."""
    before = children({**BASE, "canary": {"version": 4}}, canary_on=True)
    after = children({**BASE, "stable": {"version": 4}}, canary_on=False)
    old_pod = before["Deployment/fraud-stable"]["spec"]["template"]
    new_pod = after["Deployment/fraud-stable"]["spec"]["template"]
    assert old_pod != new_pod
    old_keys = [
        i["key"]
        for v in old_pod["spec"]["volumes"]
        for i in v.get("configMap", {}).get("items", [])
    ]
    for key in old_keys:
        text = before["ConfigMap/fraud-config"]["data"][key]
        assert after["ConfigMap/fraud-config"]["data"].get(key, text) == text
    assert "versions: 4" in mounted_files(after, "stable")["models.config"]


def test_config_still_mounted_by_old_pods_is_kept_in_the_config_map() -> None:
    old = children(BASE)["ConfigMap/fraud-config"]["data"]
    objs = render.children(
        spec.parse({**BASE, "stable": {"version": 4}}),
        OWNER,
        canary_on=False,
        weight=0,
        mounted=old,
    )
    data = next(o for o in objs if o["kind"] == "ConfigMap")["data"]
    assert old.items() <= data.items() and len(data) == len(old) + 1


def test_routes_split_by_weight_between_track_services() -> None:
    objs = children({**BASE, "canary": {"version": 4, "weight": 30}}, canary_on=True, weight=30)
    for name, port in (("HTTPRoute/fraud-http", 8501), ("GRPCRoute/fraud-grpc", 8500)):
        (rule,) = objs[name]["spec"]["rules"]
        assert rule["backendRefs"] == [
            {"name": "fraud-stable", "port": port, "weight": 70},
            {"name": "fraud-canary", "port": port, "weight": 30},
        ]


def test_routes_attach_to_the_umbrella_service_without_a_parent_ref() -> None:
    objs = children(BASE)
    for name, port in (("HTTPRoute/fraud-http", 8501), ("GRPCRoute/fraud-grpc", 8500)):
        (parent,) = objs[name]["spec"]["parentRefs"]
        assert parent == {"group": "", "kind": "Service", "name": "fraud", "port": port}


GATEWAY: dict[str, Any] = {
    **BASE,
    "traffic": {
        "parentRef": {"name": "ml", "namespace": "gw", "sectionName": "http"},
        "grpcParentRef": {"name": "ml", "namespace": "gw", "sectionName": "grpc"},
        "hostnames": ["a.b"],
    },
}


def test_on_a_gateway_rest_and_grpc_attach_to_listeners_of_their_own() -> None:
    objs = children(GATEWAY)
    rest, grpc = objs["HTTPRoute/fraud-http"]["spec"], objs["GRPCRoute/fraud-grpc"]["spec"]
    assert rest["parentRefs"] == [{"name": "ml", "namespace": "gw", "sectionName": "http"}]
    assert grpc["parentRefs"] == [{"name": "ml", "namespace": "gw", "sectionName": "grpc"}]
    assert rest["hostnames"] == grpc["hostnames"] == ["a.b"]


def test_without_a_grpc_listener_no_grpc_route_competes_with_the_http_route() -> None:
    raw = {**BASE, "traffic": {"parentRef": {"name": "ml"}, "hostnames": ["a.b"]}}
    assert "GRPCRoute/fraud-grpc" not in children(raw)


def _path_matches(match: dict[str, Any], path: str) -> bool:
    """Gateway API path matching: Exact, or PathPrefix by whole path elements."""
    kind, value = match["path"]["type"], match["path"]["value"]
    if kind == "Exact":
        return path == value
    assert kind == "PathPrefix"
    return path == value or path.startswith(value.rstrip("/") + "/")


@pytest.mark.parametrize(
    ("path", "routed"),
    [
        ("/v1/models/fraud", True),
        ("/v1/models/fraud/metadata", True),
        ("/v1/models/fraud:predict", True),
        ("/v1/models/fraud:classify", True),
        ("/v1/models/fraud/versions/3:regress", True),
        ("/v1/models/fraud/labels/stable:predict", True),
        ("/v1/models/fraudster:predict", False),
        ("/v1/models/other:predict", False),
        ("/", False),
    ],
)
def test_the_http_route_on_a_gateway_takes_only_this_models_rest_paths(
    path: str, routed: bool
) -> None:
    (rule,) = children(GATEWAY)["HTTPRoute/fraud-http"]["spec"]["rules"]
    assert any(_path_matches(m, path) for m in rule["matches"]) is routed
    assert len(rule["matches"]) <= 8  # the API's limit per rule


def test_the_grpc_route_on_a_gateway_takes_only_the_servers_services() -> None:
    (rule,) = children(GATEWAY)["GRPCRoute/fraud-grpc"]["spec"]["rules"]
    services = {m["method"]["service"] for m in rule["matches"]}
    assert services == {
        "tensorflow.serving.PredictionService",
        "tensorflow.serving.ModelService",
        "berth.serving.StreamingPredictionService",
    }
    assert all(
        m["method"]["type"] == "Exact" and "method" not in m["method"] for m in rule["matches"]
    )


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
    def template(raw: dict[str, Any]) -> Any:
        return children(raw)["Deployment/fraud-stable"]["spec"]["template"]

    assert template(BASE) != template({**BASE, "batching": {"maxBatchSize": 4}})
    assert template(BASE) != template({**BASE, "stable": {"version": 4}})
    assert template(BASE) == template({**BASE, "replicas": 5})


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
        "networkPolicy": {"fromNamespaces": ["gateways"]},
    }
    watched = {(kind.api_version, kind.kind) for kind in kinds.CHILDREN}
    for name, obj in children(raw, canary_on=True).items():
        assert (obj["apiVersion"], obj["kind"]) in watched, name


TEAM_POD: dict[str, Any] = {
    **BASE,
    "server": {"imagePullSecrets": [{"name": "regcred"}], "podLabels": {"team": "risk"},
               "podAnnotations": {"a": "b"}, "volumes": [{"name": "tls", "emptyDir": {}}],
               "volumeMounts": [{"name": "tls", "mountPath": "/tls"}]},
    "scheduling": {"priorityClassName": "high",
                   "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone"}]},
    "strategy": {"maxSurge": 0, "maxUnavailable": 1},
    "disruptionBudget": {"minAvailable": 1},
    "networkPolicy": {"fromNamespaces": ["gateways"]},
}


def test_rendered_children_hold_no_empty_lists_or_maps_the_api_server_would_drop() -> None:
    for raw in (BASE, {**BASE, "canary": {"version": 4}, "traffic": {"provider": "istio"}},
                OBJECT_STORE, TEAM_POD):
        for name, obj in children(raw, canary_on=True).items():
            assert _empty_paths(obj) == [], name


def test_servers_requesting_gpus_get_the_gpu_image_unless_the_spec_names_one() -> None:
    images = settings.ServerImages(cpu="registry/berth:1", gpu="registry/berth:1-gpu")

    def image(raw: dict[str, Any]) -> str:
        objs = render.children(spec.parse(raw), OWNER, canary_on=False, weight=0, images=images)
        deployment = next(o for o in objs if o["kind"] == "Deployment")
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    assert image(BASE) == "registry/berth:1"
    assert image({**BASE, "resources": {"gpu": 1}}) == "registry/berth:1-gpu"
    pinned = {**BASE, "resources": {"gpu": 1}, "server": {"image": "mine/berth:x"}}
    assert image(pinned) == "mine/berth:x"
