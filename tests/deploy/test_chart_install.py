"""The chart in the loopback control plane: install, upgrade, uninstall, and its RBAC proven by
running the operator as the chart's ServiceAccount through a ModelDeployment's life."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import helm_harness
import pytest
import waiting
from helm_harness import CHART, CRD_NAME, CRD_SOURCE, OperatorProcess, can_i, helm
from kube_control_plane import ControlPlane


@pytest.fixture(scope="session")
def berth_crd(control_plane: ControlPlane) -> ControlPlane:
    """The ModelDeployment CRD, there whichever test runs first (releases below leave it alone)."""
    control_plane.kubectl("apply", "--server-side", "-f", str(CRD_SOURCE))
    control_plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    return control_plane


def install(
    plane: ControlPlane, release: str, namespace: str, values: dict[str, Any], *verb: str
) -> None:
    helm(
        *(verb or ("install",)),
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--wait",
        "--timeout=120s",
        *helm_harness.set_args(values),
        env=plane.env,
    )


def model_deployment(name: str, **spec: Any) -> str:
    body = {
        "apiVersion": "serving.berth.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "name": "half_plus_two",
                "storage": {"hostPath": {"path": "/srv/models/hpt"}},
            },
            "stable": {"version": 1},
            "replicas": 1,
            **spec,
        },
    }
    return json.dumps(body)


@pytest.fixture
def release_namespace(berth_crd: ControlPlane) -> Iterator[str]:
    name = berth_crd.create_namespace("berth")
    yield name
    berth_crd.delete_namespace(name)


def test_install_upgrade_and_uninstall_keep_the_crd_and_users_objects(
    berth_crd: ControlPlane, release_namespace: str
) -> None:
    plane, ns = berth_crd, release_namespace
    helm_harness.adopt_crd(plane, "lifecycle", ns)
    install(plane, "lifecycle", ns, {})
    deployment = plane.kubectl_json("get", "deployment", "lifecycle-berth", "-n", ns)
    assert deployment["status"]["readyReplicas"] == 1
    crd = plane.kubectl_json("get", "crd", CRD_NAME)
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == "lifecycle"
    notes = helm("get", "notes", "lifecycle", "-n", ns, env=plane.env).stdout
    assert (
        "kubectl get md -n <namespace> -w" in notes
        and "It watches ModelDeployments in every" in notes
    )
    plane.kubectl("apply", "-n", ns, "-f", "-", input=model_deployment("survivor"))

    # Upgrade with changed values: HA through peering replaces the Deployment by a StatefulSet.
    install(
        plane,
        "lifecycle",
        ns,
        {"peering": {"enabled": True, "replicas": 2}, "operator": {"resyncSeconds": 5}},
        "upgrade",
    )
    pods = plane.kubectl_json(
        "get", "pods", "-n", ns, "-l", "app.kubernetes.io/instance=lifecycle"
    )["items"]
    assert sorted(p["metadata"]["labels"]["apps.kubernetes.io/pod-index"] for p in pods) == [
        "0",
        "1",
    ]
    assert plane.kubectl_json("get", "clusterkopfpeering", "berth-operator")
    statefulset = plane.kubectl_json("get", "statefulset", "lifecycle-berth", "-n", ns)
    assert "--resync-seconds=5" in statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    assert (
        plane.kubectl("get", "deployment", "lifecycle-berth", "-n", ns, check=False).returncode != 0
    )
    history = json.loads(helm("history", "lifecycle", "-n", ns, "-o", "json", env=plane.env).stdout)
    assert [h["status"] for h in history] == ["superseded", "deployed"]

    helm("uninstall", "lifecycle", "-n", ns, "--wait", env=plane.env)
    assert plane.kubectl_json("get", "crd", CRD_NAME), "the CRD must outlive the release"
    assert plane.kubectl_json("get", "md", "survivor", "-n", ns), "users' objects must survive"
    assert plane.kubectl("get", "clusterrole", "lifecycle-berth-framework", check=False).returncode


def test_install_refuses_values_the_schema_forbids(
    berth_crd: ControlPlane, release_namespace: str
) -> None:
    result = helm(
        "install",
        "typo",
        str(CHART),
        "--namespace",
        release_namespace,
        "--set",
        "watch.allNamespace=false",
        env=berth_crd.env,
        check=False,
    )
    assert result.returncode != 0
    assert "additional properties 'allNamespace' not allowed" in result.stderr.replace('"', "'")
    assert not json.loads(
        helm("list", "-n", release_namespace, "-o", "json", env=berth_crd.env).stdout
    )


def run_scenario(plane: ControlPlane, namespace: str, operator: OperatorProcess) -> None:
    """Create → Ready, a canary at 30 %, its rollback, then deletion: every write the operator
    makes (apply, delete, status) and every watch it keeps."""
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=model_deployment("iris"))
    helm_harness.wait_ready(plane, namespace, "iris")
    plane.kubectl(
        "patch", "md", "iris", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"canary": {"version": 2, "weight": 30}}}),
    )  # fmt: skip

    def weights() -> dict[str, int] | None:
        route = plane.kubectl_json("get", "httproute", "iris-http", "-n", namespace)
        found = {r["name"]: r["weight"] for r in route["spec"]["rules"][0]["backendRefs"]}
        return found if found == {"iris-stable": 70, "iris-canary": 30} else None

    waiting.wait_for(weights, timeout_seconds=60, message="a 70/30 split", interval_seconds=0.5)
    plane.kubectl(
        "patch", "md", "iris", "-n", namespace, "--type=json",
        "-p", json.dumps([{"op": "remove", "path": "/spec/canary"}]),
    )  # fmt: skip
    waiting.wait_for(
        lambda: (
            plane.kubectl(
                "get", "deployment", "iris-canary", "-n", namespace, check=False
            ).returncode
        ),
        timeout_seconds=60,
        message="the canary Deployment deleted by the operator",
        interval_seconds=0.5,
    )
    assert not apply_refusals(plane, namespace, "iris")
    helm_harness.delete_model_deployments(plane, namespace)  # the finalizer comes off
    assert not operator.refusals(), "\n".join(operator.refusals())


def apply_refusals(plane: ControlPlane, namespace: str, name: str) -> list[str]:
    """Children the API server refused to the operator, as its status reports them
    (Degraded=True, reason ApplyFailed, "<Kind> <name>: 403 Forbidden; ...")."""
    md = plane.kubectl_json("get", "md", name, "-n", namespace)
    return [
        c["message"]
        for c in md.get("status", {}).get("conditions", [])
        if c["type"] == "Degraded" and c.get("reason") == "ApplyFailed" and "403" in c["message"]
    ]


def assert_refused(plane: ControlPlane, user: str, namespace: str) -> None:
    """What the operator never does is refused: it cannot read secrets, run pods, widen its own
    rights, get or update objects it only applies, or delete the users' resources."""
    ns = ("-n", namespace)
    for verb, resource in [
        ("get", "secrets"),
        ("create", "pods"),
        ("get", "deployments"),
        ("update", "deployments"),
        ("delete", "modeldeployments"),
        ("create", "modeldeployments"),
        ("deletecollection", "services"),
        ("create", "rolebindings"),
    ]:
        assert not can_i(plane, user, verb, resource, *ns), f"{user} may {verb} {resource}"
    for verb, resource in [("create", "clusterroles"), ("patch", "customresourcedefinitions")]:
        assert not can_i(plane, user, verb, resource), f"{user} may {verb} {resource}"


def test_namespaced_rbac_is_enough_for_the_operator_and_refuses_the_rest(
    berth_crd: ControlPlane, release_namespace: str, tmp_path: pathlib.Path
) -> None:
    plane, ns = berth_crd, release_namespace
    install(plane, "scoped", ns, {"crds": {"enabled": False}, "watch": {"allNamespaces": False}})
    user = f"system:serviceaccount:{ns}:scoped-berth"
    kubeconfig = helm_harness.service_account_kubeconfig(
        plane, ns, "scoped-berth", tmp_path / "sa.kubeconfig"
    )
    with OperatorProcess(
        ["--namespace", ns, "--resync-seconds=1", "--allow-host-path"],
        kubeconfig=kubeconfig,
        log_path=tmp_path / "operator.log",
    ) as operator:
        run_scenario(plane, ns, operator)
    assert_refused(plane, user, ns)
    other = plane.create_namespace("elsewhere")
    try:
        for verb, resource in [("list", "modeldeployments"), ("patch", "deployments")]:
            assert can_i(plane, user, verb, resource, "-n", ns)
            assert not can_i(plane, user, verb, resource, "-n", other), "outside its namespace"
        forbidden = plane.kubectl(
            f"--kubeconfig={kubeconfig}", "get", "secrets", "-n", ns, check=False
        )
        assert forbidden.returncode != 0 and "Forbidden" in forbidden.stderr
    finally:
        plane.delete_namespace(other)


def test_cluster_wide_rbac_is_enough_for_the_operator_and_refuses_the_rest(
    berth_crd: ControlPlane, release_namespace: str, tmp_path: pathlib.Path
) -> None:
    plane, ns = berth_crd, release_namespace
    install(plane, "wide", ns, {"crds": {"enabled": False}})
    user = f"system:serviceaccount:{ns}:wide-berth"
    kubeconfig = helm_harness.service_account_kubeconfig(
        plane, ns, "wide-berth", tmp_path / "sa.kubeconfig"
    )
    models = plane.create_namespace("models")
    try:
        with OperatorProcess(
            ["--all-namespaces", "--resync-seconds=1", "--allow-host-path"],
            kubeconfig=kubeconfig,
            log_path=tmp_path / "operator.log",
        ) as operator:
            run_scenario(plane, models, operator)
        assert_refused(plane, user, models)
        assert not can_i(plane, user, "list", "namespaces"), "kopf needs no namespace list with -A"
    finally:
        plane.delete_namespace(models)


def test_peering_rbac_lets_two_operators_share_a_namespace_one_working(
    berth_crd: ControlPlane, release_namespace: str, tmp_path: pathlib.Path
) -> None:
    """HA as the chart sets it up: a KopfPeering per watched namespace, two operators of distinct
    priorities with the chart's identity; the lower one pauses, the higher one reconciles."""
    plane, ns = berth_crd, release_namespace
    values = {
        "crds": {"enabled": False},
        "watch": {"allNamespaces": False},
        "peering": {"enabled": True, "name": "ha"},
    }
    install(plane, "ha", ns, values)
    assert plane.kubectl_json("get", "kopfpeering", "ha", "-n", ns)
    kubeconfig = helm_harness.service_account_kubeconfig(
        plane, ns, "ha-berth", tmp_path / "sa.kubeconfig"
    )

    def operator(priority: int) -> OperatorProcess:
        return OperatorProcess(
            [
                f"--namespace={ns}", "--peering=ha", f"--priority={priority}",
                "--resync-seconds=1", "--allow-host-path",
            ],
            kubeconfig=kubeconfig,
            log_path=tmp_path / f"operator-{priority}.log",
        )

    with operator(0) as standby, operator(1) as active:
        waiting.wait_for(
            lambda: (
                len(plane.kubectl_json("get", "kopfpeering", "ha", "-n", ns).get("status", {})) == 2
            ),
            timeout_seconds=60,
            message="both operators in the peering",
            interval_seconds=0.5,
        )
        waiting.wait_for(
            lambda: "Pausing operations in favour of" in standby.log(400),
            timeout_seconds=60,
            message="the lower priority operator to pause",
            interval_seconds=0.5,
        )
        plane.kubectl("apply", "-n", ns, "-f", "-", input=model_deployment("ha"))
        helm_harness.wait_ready(plane, ns, "ha")
        assert "applying Deployment ha-stable" in active.log(400)
        assert "applying Deployment" not in standby.log(400)
        assert not apply_refusals(plane, ns, "ha")
        helm_harness.delete_model_deployments(plane, ns)
        assert not standby.refusals() and not active.refusals()


@pytest.fixture(scope="module")
def scoped_release(berth_crd: ControlPlane) -> Iterator[tuple[str, pathlib.Path]]:
    """A namespaced release whose application Role the next test trims one verb at a time."""
    ns = berth_crd.create_namespace("minimal")
    install(
        berth_crd, "minimal", ns, {"crds": {"enabled": False}, "watch": {"allNamespaces": False}}
    )
    kubeconfig = helm_harness.service_account_kubeconfig(
        berth_crd, ns, "minimal-berth", pathlib.Path(ns + ".kubeconfig").absolute()
    )
    try:
        yield ns, kubeconfig
    finally:
        kubeconfig.unlink()
        berth_crd.delete_namespace(ns)


@pytest.mark.parametrize(
    ("resource", "verb"),
    [
        ("deployments", "list"),
        ("deployments", "watch"),
        ("deployments", "create"),
        ("deployments", "patch"),
        ("deployments", "delete"),
        ("modeldeployments/status", "patch"),
    ],
)
def test_every_granted_verb_is_needed(
    berth_crd: ControlPlane,
    scoped_release: tuple[str, pathlib.Path],
    tmp_path: pathlib.Path,
    resource: str,
    verb: str,
) -> None:
    """Take one verb away from the chart's Role and the operator is refused while it drives a
    ModelDeployment through create, canary and canary removal: the grant is not wider than used."""
    plane, (ns, kubeconfig) = berth_crd, scoped_release
    original = plane.kubectl_json("get", "role", "minimal-berth-application", "-n", ns)
    trimmed = json.loads(json.dumps(original))
    for rule in trimmed["rules"]:
        if resource in rule["resources"]:
            assert rule["resources"] == [resource] and verb in rule["verbs"]
            rule["verbs"].remove(verb)
    trimmed["rules"] = [rule for rule in trimmed["rules"] if rule["verbs"]]
    plane.kubectl("replace", "-f", "-", input=json.dumps(trimmed))
    name = f"needs-{verb}-{resource.split('/')[-1]}"
    try:
        with OperatorProcess(
            [f"--namespace={ns}", "--resync-seconds=1", "--allow-host-path"],
            kubeconfig=kubeconfig,
            log_path=tmp_path / "operator.log",
        ) as operator:
            plane.kubectl(
                "apply", "-n", ns, "-f", "-",
                input=model_deployment(name, canary={"version": 2, "weight": 10}),
            )  # fmt: skip
            waiting.wait_for(
                lambda: (
                    operator.refusals()
                    or apply_refusals(plane, ns, name)
                    or not plane.kubectl(
                        "get", "deployment", f"{name}-canary", "-n", ns, check=False
                    ).returncode
                ),
                timeout_seconds=60,
                message="a refusal or the canary Deployment",
                interval_seconds=0.5,
            )
            plane.kubectl(
                "patch", "md", name, "-n", ns, "--type=json",
                "-p", json.dumps([{"op": "remove", "path": "/spec/canary"}]),
            )  # fmt: skip
            waiting.wait_for(
                lambda: operator.refusals() or apply_refusals(plane, ns, name),
                timeout_seconds=60,
                message=f"the API server refusing {verb} {resource}",
                interval_seconds=0.5,
            )
    finally:
        plane.kubectl("replace", "-f", "-", input=json.dumps(_without_status(original)))
        # The operator that put its finalizer there is gone: take it off by hand.
        finalizers = json.dumps({"metadata": {"finalizers": None}})
        plane.kubectl("patch", "md", name, "-n", ns, "--type=merge", "-p", finalizers)
        plane.kubectl("delete", "md", name, "-n", ns, "--wait=false")


def _without_status(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj["metadata"].items() if k not in ("resourceVersion", "uid")}
    return {**obj, "metadata": meta}


def test_edit_and_view_users_of_a_namespace_get_modeldeployments_through_aggregation(
    berth_crd: ControlPlane, release_namespace: str
) -> None:
    """The chart's aggregated ClusterRoles reach the built-in edit and view roles, so a plain
    RoleBinding is all a team needs: no Berth-specific role to hand out."""
    plane, ns = berth_crd, release_namespace
    install(plane, "tenancy", ns, {"crds": {"enabled": False}})
    for user, role in (("alice", "edit"), ("bob", "view")):
        plane.kubectl(
            "create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}", f"--user={user}",
            "-n", ns,
        )  # fmt: skip
    waiting.wait_for(
        lambda: can_i(plane, "alice", "create", "modeldeployments", "-n", ns),
        timeout_seconds=30,
        message="the edit role aggregating ModelDeployments",
        interval_seconds=0.5,
    )
    for verb in ("get", "list", "watch", "patch", "delete"):
        assert can_i(plane, "alice", verb, "modeldeployments", "-n", ns), f"edit may not {verb}"
    status = ("--subresource=status", "-n", ns)
    assert not can_i(plane, "alice", "patch", "modeldeployments", *status), "the operator's"
    assert can_i(plane, "bob", "get", "modeldeployments", *status)
    for verb in ("get", "list", "watch"):
        assert can_i(plane, "bob", verb, "modeldeployments", "-n", ns), f"view may not {verb}"
    for verb in ("create", "patch", "delete"):
        assert not can_i(plane, "bob", verb, "modeldeployments", "-n", ns), f"view may {verb}"
    assert not can_i(plane, "alice", "list", "modeldeployments", "-n", "default")
    helm("uninstall", "tenancy", "--namespace", ns, "--wait", env=plane.env)
    # Other releases on this control plane aggregate the same rights, so what is checked is that
    # this release's roles went with it.
    left = plane.kubectl_json("get", "clusterroles", "-l", "app.kubernetes.io/instance=tenancy")
    assert [role["metadata"]["name"] for role in left["items"]] == []
