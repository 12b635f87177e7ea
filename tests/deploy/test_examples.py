"""deploy/examples/ applied as the README says (`kubectl apply -f deploy/examples/`) with the
operator running: every ModelDeployment is accepted, becomes Ready and renders what it promises;
the Grafana dashboard is well-formed."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import helm_harness
import local_install
import pytest
import waiting
from helm_harness import OperatorProcess, wait_ready
from kube_control_plane import ControlPlane

EXAMPLES = helm_harness.REPO / "deploy" / "examples"
DASHBOARD = EXAMPLES / "grafana" / "berth-model-servers.json"


def model_deployments() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in helm_harness.load_yaml_docs(path):
            if doc["kind"] == "ModelDeployment":
                found[path.stem] = doc
    return found


def test_there_is_an_example_per_setup() -> None:
    examples = model_deployments()
    assert set(examples) == {"cpu", "gpu", "canary", "istio", "gateway-api", "s3"}
    assert examples["s3"]["spec"]["model"]["storage"]["uri"].startswith("s3://")
    assert examples["gpu"]["spec"]["resources"]["gpu"] >= 1
    assert examples["istio"]["spec"]["traffic"]["provider"] == "istio"
    assert examples["gateway-api"]["spec"]["traffic"]["parentRef"]["name"]
    assert examples["canary"]["spec"]["canary"]["weight"] > 0


@pytest.fixture
def examples_namespace(control_plane: ControlPlane) -> Iterator[str]:
    plane = control_plane
    plane.kubectl("apply", "--server-side", "-f", str(helm_harness.CRD_SOURCE))
    plane.kubectl("wait", "--for=condition=Established", f"crd/{helm_harness.CRD_NAME}")
    namespace = plane.create_namespace("examples")
    yield namespace
    plane.delete_namespace(namespace)
    plane.kubectl("delete", "pv", f"models-{namespace}", "--ignore-not-found", "--wait=false")


def test_every_example_is_applied_and_becomes_ready(
    control_plane: ControlPlane, examples_namespace: str, tmp_path: pathlib.Path
) -> None:
    plane, ns = control_plane, examples_namespace
    directory = str(EXAMPLES)
    plane.kubectl("apply", "--dry-run=server", "-n", ns, "-f", directory)
    local_install.models_volume(plane, ns)
    with OperatorProcess(
        [f"--namespace={ns}", "--resync-seconds=1"],
        kubeconfig=plane.kubeconfig,
        log_path=tmp_path / "operator.log",
    ):
        plane.kubectl("apply", "-n", ns, "-f", directory)
        waiting.wait_for(
            lambda: (
                plane.kubectl_json("get", "pvc", "models", "-n", ns)["status"].get("phase")
                == "Bound"
            ),
            timeout_seconds=60,
            message="the models claim bound",
            interval_seconds=0.5,
        )
        for name, example in model_deployments().items():
            md_name = example["metadata"]["name"]
            md = wait_ready(plane, ns, md_name, timeout=120)
            if "canary" in example["spec"]:
                weight = example["spec"]["canary"]["weight"]
                waiting.wait_for(
                    lambda n=md_name, w=weight: (
                        plane.kubectl_json("get", "md", n, "-n", ns)["status"].get("weight") == w
                    ),
                    timeout_seconds=120,
                    message=f"example {name}: canary at {weight} %",
                    interval_seconds=0.5,
                )
            assert md["status"]["url"]
        check_rendered(plane, ns)
        helm_harness.delete_model_deployments(plane, ns)


def check_rendered(plane: ControlPlane, ns: str) -> None:
    """What each setup promises: routes on the Gateway, the splits, GPUs, the autoscaler."""
    routes = plane.kubectl_json("get", "httproute", "recommender-http", "-n", ns)
    assert routes["spec"]["parentRefs"][0]["name"] == "ml"
    assert routes["spec"]["hostnames"] == ["recommender.ml.example.com"]
    weights = {
        r["name"]: r["weight"]
        for r in plane.kubectl_json("get", "httproute", "fraud-http", "-n", ns)["spec"]["rules"][0][
            "backendRefs"
        ]
    }
    assert weights == {"fraud-stable": 90, "fraud-canary": 10}
    virtual_service = plane.kubectl_json("get", "virtualservice", "sentiment", "-n", ns)
    assert virtual_service["spec"]["gateways"] == ["istio-system/ml-gateway", "mesh"]
    split = [d["weight"] for d in virtual_service["spec"]["http"][0]["route"]]
    assert split == [80, 20]
    gpu = plane.kubectl_json("get", "deployment", "resnet-stable", "-n", ns)
    container = gpu["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    pods = plane.kubectl_json(
        "get", "pods", "-n", ns, "-l", "serving.berth.dev/modeldeployment=resnet"
    )
    assert pods["items"] and all(p["spec"]["nodeName"].startswith("kwok-") for p in pods["items"])
    assert plane.kubectl_json("get", "hpa", "resnet", "-n", ns)["spec"]["maxReplicas"] == 4
    churn = plane.kubectl_json("get", "deployment", "churn-stable", "-n", ns)["spec"]["template"]
    (server,) = churn["spec"]["containers"]
    assert server["envFrom"] == [{"secretRef": {"name": "model-store-keys"}}]
    assert {"name": "model-cache", "emptyDir": {"sizeLimit": "20Gi"}} in churn["spec"]["volumes"]


def test_grafana_dashboard_is_importable_json_with_prometheus_queries() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "namespace", "model"}
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")"), expr
            assert ":tensorflow:serving:" in expr or ":berth:serving:" in expr


def test_the_cpu_example_serves_a_version_the_exporter_writes_readable_by_the_server(
    tmp_path: pathlib.Path,
) -> None:
    """A uid-1000 server reads models exported by another user (root, in a job or by hand)."""
    from examples import export_models

    cpu = model_deployments()["cpu"]["spec"]
    base = tmp_path / cpu["model"]["name"]
    version_dir = export_models.EXPORTERS[cpu["model"]["name"]](base)
    assert version_dir == base / str(cpu["stable"]["version"])
    for path in [version_dir, *version_dir.rglob("*")]:
        needed = 0o005 if path.is_dir() else 0o004  # others may list and enter, or read
        assert path.stat().st_mode & needed == needed, path
