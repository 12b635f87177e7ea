"""The Helm chart without a cluster: lint, the rendered objects that matter, schema refusals, and
the CRD copy against deploy/crds (the single source of truth)."""

from __future__ import annotations

import json
from typing import Any

import helm_harness
import pytest
import yaml
from helm_harness import CHART, CRD_SOURCE, find, helm, render

from berth_operator import kinds

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "single-namespace": {"watch": {"allNamespaces": False}},
    "namespaces": {"watch": {"allNamespaces": False, "namespaces": ["team-a", "team-b"]}},
    "peering": {"peering": {"enabled": True, "replicas": 3}},
    "peering-namespaced": {
        "peering": {"enabled": True},
        "watch": {"allNamespaces": False, "namespaces": ["team-a"]},
    },
    "no-crds-no-rbac": {
        "crds": {"enabled": False},
        "rbac": {"create": False},
        "serviceAccount": {"create": False, "name": "platform-operator"},
    },
    "everything": {
        "image": {"digest": "sha256:" + "a" * 64},
        "imagePullSecrets": [{"name": "regcred"}],
        "metrics": {"serverPodMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
        "operator": {
            "verbose": True,
            "extraArgs": ["--debug"],
            "extraEnv": [{"name": "A", "value": "b"}],
        },
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}
        ],
        "priorityClassName": "system-cluster-critical",
        "crds": {"keep": False},
        "server": {"runAsUser": 1001, "allowHostPath": True},
    },
}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict_passes_for_every_value_set(helm_env: dict[str, str], name: str) -> None:
    helm(
        "lint",
        "--strict",
        str(CHART),
        "--kube-version",
        helm_harness.kube_version(),
        *helm_harness.set_args(VALUE_SETS[name]),
        env=helm_env,
    )


def operator_container(objs: list[dict[str, Any]], kind: str = "Deployment") -> dict[str, Any]:
    workload = find(objs, kind)
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def test_default_install_is_one_standalone_operator_with_recreate(helm_env: dict[str, str]) -> None:
    objs = render(helm_env)
    deployment = find(objs, "Deployment", "berth")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not [
        o for o in objs if o["kind"] in ("StatefulSet", "ClusterKopfPeering", "KopfPeering")
    ]
    args = operator_container(objs)["args"]
    assert args[0] == "--all-namespaces"
    assert "--liveness=http://0.0.0.0:8080/healthz" in args
    assert not [a for a in args if a.startswith(("--peering", "--priority"))]


def test_operator_pod_is_non_root_read_only_without_capabilities_and_probed(
    helm_env: dict[str, str],
) -> None:
    objs = render(helm_env)
    pod = find(objs, "Deployment")["spec"]["template"]["spec"]
    container = operator_container(objs)
    assert pod["serviceAccountName"] == "berth"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    probe = container["livenessProbe"]["httpGet"]
    assert probe == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert "readinessProbe" not in container
    assert container["image"] == "ghcr.io/berth-dev/berth-operator:0.1.0"


def test_the_operator_gets_the_server_images_for_cpu_and_gpu_servers(
    helm_env: dict[str, str],
) -> None:
    assert {
        "--server-image=ghcr.io/berth-dev/berth-server:0.1.0",
        "--server-gpu-image=ghcr.io/berth-dev/berth-server:0.1.0-gpu",
    } <= set(operator_container(render(helm_env))["args"])
    values = {"server": {"image": "registry/berth:2", "gpuImage": "registry/berth:2-gpu"}}
    args = operator_container(render(helm_env, values))["args"]
    assert {"--server-image=registry/berth:2", "--server-gpu-image=registry/berth:2-gpu"} <= set(
        args
    )


def test_server_pods_run_as_the_images_uid_and_without_host_paths_by_default(
    helm_env: dict[str, str],
) -> None:
    args = operator_container(render(helm_env))["args"]
    assert "--server-run-as-user=1000" in args
    assert "--allow-host-path" not in args


def test_a_cluster_that_assigns_uids_and_a_local_cluster_with_host_paths_are_values(
    helm_env: dict[str, str],
) -> None:
    values = {"server": {"runAsUser": None, "allowHostPath": True}}
    args = operator_container(render(helm_env, values))["args"]
    assert {"--server-run-as-user=cluster", "--allow-host-path"} <= set(args)


def test_peering_runs_a_statefulset_whose_ordinals_are_distinct_priorities(
    helm_env: dict[str, str],
) -> None:
    objs = render(helm_env, {"peering": {"enabled": True, "replicas": 3, "name": "ha"}})
    assert not [o for o in objs if o["kind"] == "Deployment"]
    statefulset = find(objs, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 3
    container = operator_container(objs, "StatefulSet")
    assert "--peering=ha" in container["args"]
    assert "--priority=$(POD_INDEX)" in container["args"]
    env = {
        e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        for e in container["env"]
    }
    assert env["POD_INDEX"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert env["POD_ID"] == "metadata.name"
    assert find(objs, "ClusterKopfPeering", "ha")
    framework = find(objs, "ClusterRole", "berth-framework")
    assert {
        "apiGroups": ["kopf.dev"],
        "resources": ["clusterkopfpeerings"],
        "verbs": ["get", "list", "watch", "patch"],
    } in framework["rules"]


def rules_of(obj: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in obj["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_application_rules_cover_exactly_the_resources_the_operator_touches(
    helm_env: dict[str, str],
) -> None:
    """The operator's own tables decide: what it indexes (kopf watches) and what it applies."""
    application = find(render(helm_env), "ClusterRole", "berth-application")
    granted = {(group, resource) for group, resource, _ in rules_of(application)}
    used = {(kind.group, kind.plural) for kind in kinds.ALL}
    used.add(("serving.berth.dev", "modeldeployments/status"))
    assert granted == used
    verbs = {verb for _, _, verb in rules_of(application)}
    assert verbs == {"list", "watch", "create", "patch", "delete"}, (
        "no get, update or deletecollection"
    )


def test_framework_rules_are_kopf_needs_and_no_more(helm_env: dict[str, str]) -> None:
    cluster = rules_of(find(render(helm_env), "ClusterRole", "berth-framework"))
    assert cluster == {
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        ("", "events", "create"),
    }
    objs = render(helm_env, VALUE_SETS["namespaces"])
    namespaced_cluster = rules_of(find(objs, "ClusterRole", "berth-framework"))
    assert namespaced_cluster == {
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
    }


def test_single_namespace_mode_grants_roles_only_in_the_watched_namespaces(
    helm_env: dict[str, str],
) -> None:
    objs = render(helm_env, VALUE_SETS["namespaces"])
    assert not [
        o for o in objs if o["kind"] == "ClusterRole" and "application" in o["metadata"]["name"]
    ]
    roles = {
        (o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs if o["kind"] == "Role"
    }
    assert roles == {
        (ns, f"berth-{kind}")
        for ns in ("team-a", "team-b")
        for kind in ("framework", "application")
    }
    for binding in (o for o in objs if o["kind"] == "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "berth", "namespace": "berth-system"}
        ]
    args = operator_container(objs)["args"]
    assert args[:2] == ["--namespace=team-a", "--namespace=team-b"]
    assert "--all-namespaces" not in args
    # Without a list, the release namespace is the one watched.
    objs = render(helm_env, VALUE_SETS["single-namespace"], namespace="ml")
    assert operator_container(objs)["args"][0] == "--namespace=ml"


def test_crd_is_rendered_from_the_source_of_truth_and_kept_on_uninstall(
    helm_env: dict[str, str],
) -> None:
    source = yaml.safe_load(CRD_SOURCE.read_text())
    rendered = find(render(helm_env), "CustomResourceDefinition")
    assert rendered["spec"] == source["spec"]
    assert rendered["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert rendered["metadata"]["labels"].items() >= source["metadata"]["labels"].items()
    unkept = find(render(helm_env, {"crds": {"keep": False}}), "CustomResourceDefinition")
    assert "annotations" not in unkept["metadata"]
    assert not [
        o
        for o in render(helm_env, {"crds": {"enabled": False}})
        if o["kind"] == "CustomResourceDefinition"
    ]


def test_the_charts_crd_copy_is_identical_to_deploy_crds() -> None:
    copy = CHART / "files" / "crds" / CRD_SOURCE.name
    assert copy.read_bytes() == CRD_SOURCE.read_bytes(), (
        "deploy/helm/berth/files/crds drifted from deploy/crds: run `make chart-crds`"
    )


def test_server_pod_monitor_selects_the_operators_server_pods(helm_env: dict[str, str]) -> None:
    from berth_operator import naming

    objs = render(helm_env, {"metrics": {"serverPodMonitor": {"enabled": True}}})
    monitor = find(objs, "PodMonitor")
    labels = naming.owner_labels("any")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["spec"]["podTargetLabels"] == [naming.LABEL_TRACK, naming.LABEL_VERSION]
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/monitoring/prometheus/metrics"
    assert not [o for o in render(helm_env) if o["kind"] == "PodMonitor"]


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"imagee": {"repository": "x"}}, "imagee"),
        ({"watch": {"allNamespace": False}}, "allNamespace"),
        ({"peering": {"replicas": 0}}, "replicas"),
        ({"watch": {"namespaces": ["Not_A_Namespace"]}}, "namespaces"),
        ({"securityContext": {"runAsUser": "root"}}, "runAsUser"),
        ({"resources": {"limits": {"memory": "lots"}}}, "memory"),
    ],
)
def test_schema_refuses_typos_and_bad_values(
    helm_env: dict[str, str], values: dict[str, Any], complaint: str
) -> None:
    result = helm(
        "template",
        "berth",
        str(CHART),
        "--kube-version",
        helm_harness.kube_version(),
        *helm_harness.set_args(values),
        env=helm_env,
        check=False,
    )
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert complaint in result.stderr


def test_schema_forbids_unknown_keys_in_every_object() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "additionalProperties" not in node:
                free = path.endswith(
                    ("valueFrom", "nodeAffinity", "podAffinity", "podAntiAffinity")
                )
                assert free, f"{path} accepts unknown keys"
            for key, child in node.items():
                walk(child, f"{path}.{key}")

    walk(schema, "$")
    assert schema["additionalProperties"] is False


def render_with_apis(
    env: dict[str, str], values: dict[str, Any], *api_versions: str
) -> list[dict[str, Any]]:
    """`helm template` as for a cluster that serves `api_versions` (what Capabilities sees)."""
    out = helm(
        "template",
        "berth",
        str(CHART),
        "--namespace",
        "berth-system",
        "--kube-version",
        helm_harness.kube_version(),
        *[arg for api in api_versions for arg in ("--api-versions", api)],
        *helm_harness.set_args(values),
        env=env,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"


def test_the_operator_serves_its_metrics_behind_a_service_by_default(
    helm_env: dict[str, str],
) -> None:
    objs = render(helm_env)
    container = operator_container(objs)
    assert "--metrics-port=8081" in container["args"]
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    service = find(objs, "Service", "berth-metrics")
    pod_labels = find(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}
    ]
    off = render(helm_env, {"metrics": {"enabled": False}})
    assert not [a for a in operator_container(off)["args"] if a.startswith("--metrics-port")]
    assert not [o for o in off if o["kind"] == "Service"]


def test_service_monitor_needs_its_value_and_the_prometheus_operator_api(
    helm_env: dict[str, str],
) -> None:
    wanted = {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}}
    assert not [o for o in render(helm_env, wanted) if o["kind"] == "ServiceMonitor"]
    assert not [
        o
        for o in render_with_apis(helm_env, {}, SERVICE_MONITOR_API)
        if o["kind"] == "ServiceMonitor"
    ]
    objs = render_with_apis(helm_env, wanted, SERVICE_MONITOR_API)
    monitor = find(objs, "ServiceMonitor", "berth")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    service = find(objs, "Service", "berth-metrics")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["berth-system"]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s"}
    ]
    helm(
        "lint",
        "--strict",
        str(CHART),
        "--kube-version",
        helm_harness.kube_version(),
        *helm_harness.set_args(wanted),
        env=helm_env,
    )


def test_aggregated_roles_let_edit_users_manage_and_view_users_read_modeldeployments(
    helm_env: dict[str, str],
) -> None:
    objs = render(helm_env)
    edit = find(objs, "ClusterRole", "berth-modeldeployments-edit")
    view = find(objs, "ClusterRole", "berth-modeldeployments-view")
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    assert {k for k, v in edit["metadata"]["labels"].items() if k.startswith(aggregate)} == {
        f"{aggregate}admin",
        f"{aggregate}edit",
    }
    assert view["metadata"]["labels"][f"{aggregate}view"] == "true"
    manage = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
    assert rules_of(edit) == {("serving.berth.dev", "modeldeployments", v) for v in manage}
    assert rules_of(view) == {
        ("serving.berth.dev", resource, verb)
        for resource in ("modeldeployments", "modeldeployments/status")
        for verb in ("get", "list", "watch")
    }, "reading only; the status is the operator's to write"
    off = render(helm_env, {"rbac": {"aggregatedRoles": False}})
    assert not [o for o in off if o["metadata"]["name"].startswith("berth-modeldeployments")]
