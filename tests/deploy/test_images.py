"""Dockerfile.server and Dockerfile.operator, proven without a Docker engine.

Each image's build stage is replayed (its COPY and RUN lines, verbatim) into a fresh virtualenv,
then the image's exact ENTRYPOINT runs from that virtualenv with the runtime stage's ENV: the
server serves an exported model over REST, the operator answers its liveness probe and reconciles
a ModelDeployment. Building a virtualenv costs a minute or two (TensorFlow), so each is built once
per session; pip's cache is shared with every other install on the machine.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import dockerfile_recipe
import helm_harness
import processes
import pytest
from dockerfile_recipe import REPO, Recipe
from kube_control_plane import ControlPlane

SERVER = REPO / "Dockerfile.server"
OPERATOR = REPO / "Dockerfile.operator"
DASHBOARD = REPO / "deploy" / "examples" / "grafana" / "berth-model-servers.json"


@pytest.mark.parametrize("path", [SERVER, OPERATOR], ids=["server", "operator"])
def test_dockerfile_shape(path: pathlib.Path) -> None:
    """Two stages on one pinned slim base; the runtime stage gets only the virtualenv, runs as a
    non-root user outside any source tree, and Python never imports from the working directory."""
    recipe = dockerfile_recipe.parse(path)
    assert len(recipe.stages) == 2
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", recipe.args["PYTHON_IMAGE"])
    assert recipe.build.base == recipe.runtime.base == recipe.args["PYTHON_IMAGE"]
    from_build = [i for i in recipe.runtime.all("COPY") if i.flags]
    assert [(i.flags, i.value) for i in from_build] == [
        ([f"--from={recipe.build.name}"], "/opt/berth /opt/berth")
    ]
    copied = [i.value for i in recipe.runtime.all("COPY") if not i.flags]
    assert not [c for c in copied if c.startswith(("server", "operator", "."))], copied
    (user,) = recipe.runtime.all("USER")
    assert user.value.split(":")[0] not in ("root", "0")
    (workdir,) = recipe.runtime.all("WORKDIR")
    assert workdir.value == "/home/berth"
    env = recipe.runtime.env()
    assert env["PYTHONSAFEPATH"] == "1"
    assert env["PATH"].startswith("/opt/berth/bin:")
    build_runs = " ".join(i.value for i in recipe.build.all("RUN"))
    assert "pip wheel --no-deps" in build_runs
    assert "/opt" not in build_runs and "/tmp" not in build_runs, "paths come from ENV only"


def test_server_image_keeps_tf_servings_contract() -> None:
    recipe = dockerfile_recipe.parse(SERVER)
    (expose,) = recipe.runtime.all("EXPOSE")
    assert expose.value.split() == ["8500", "8501"]
    env = recipe.runtime.env()
    assert (env["MODEL_NAME"], env["MODEL_BASE_PATH"]) == ("model", "/models")
    entrypoint = recipe.runtime.exec_form("ENTRYPOINT")
    assert entrypoint[:2] == ["/bin/sh", "-c"]
    assert entrypoint[2] == (
        'exec berth-server --port=8500 --rest_api_port=8501 --model_name="${MODEL_NAME}" '
        '--model_base_path="${MODEL_BASE_PATH}/${MODEL_NAME}" "$@"'
    )
    assert not recipe.runtime.all("CMD"), "extra docker run arguments append to the command"


def installed_by_build(scratch: pathlib.Path, **build_args: str) -> list[str]:
    """The arguments the server build stage gives `pip install`, with `build_args` set: its RUN
    runs verbatim against stand-ins for python (venv, wheel) and the virtualenv's pip."""
    recipe = dockerfile_recipe.parse(SERVER)
    (run,) = recipe.build.all("RUN")
    bin_dir, venv, wheels = scratch / "bin", scratch / "venv", scratch / "wheels"
    for folder in (bin_dir, venv / "bin", wheels):
        folder.mkdir(parents=True)
    (wheels / "berth-0.1.0-py3-none-any.whl").touch()
    (bin_dir / "python").write_text("#!/bin/sh\n")
    (venv / "bin" / "pip").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {scratch / "pip.args"}\n')
    for script in (bin_dir / "python", venv / "bin" / "pip"):
        script.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "VIRTUAL_ENV": str(venv),
        "WHEEL_DIR": str(wheels),
        **{k: v for k, v in recipe.args.items() if k != "PYTHON_IMAGE"},
        **build_args,
    }
    subprocess.run(["/bin/sh", "-c", run.value], env=env, cwd=scratch, check=True)
    return (scratch / "pip.args").read_text().splitlines()


def test_the_gpu_variant_adds_tensorflows_cuda_libraries_to_the_same_install(
    tmp_path: pathlib.Path,
) -> None:
    wheel = str(tmp_path / "cpu" / "wheels" / "berth-0.1.0-py3-none-any.whl")
    assert installed_by_build(tmp_path / "cpu") == ["install", f"{wheel}[server]"]
    wheel = str(tmp_path / "gpu" / "wheels" / "berth-0.1.0-py3-none-any.whl")
    assert installed_by_build(tmp_path / "gpu", TENSORFLOW_EXTRA="and-cuda") == [
        "install",
        f"{wheel}[server]",
        "tensorflow[and-cuda]",
    ]


def build(path: pathlib.Path, scratch: pathlib.Path) -> tuple[Recipe, pathlib.Path]:
    recipe = dockerfile_recipe.parse(path)
    try:
        venv = dockerfile_recipe.replay_build(recipe, scratch)
    except subprocess.CalledProcessError as error:
        raise AssertionError(f"build stage failed:\n{error.stdout}\n{error.stderr}") from error
    return recipe, venv


@pytest.fixture(scope="session")
def server_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recipe, pathlib.Path]:
    return build(SERVER, tmp_path_factory.mktemp("server-image"))


@pytest.fixture(scope="session")
def operator_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recipe, pathlib.Path]:
    return build(OPERATOR, tmp_path_factory.mktemp("operator-image"))


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


@pytest.fixture(scope="session")
def exported_models(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """MODEL_BASE_PATH with half_plus_two (version 123), exported by examples/export_models.py."""
    models = tmp_path_factory.mktemp("models")
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import pathlib, sys; from examples import export_models; "
            "export_models.export_half_plus_two(pathlib.Path(sys.argv[1]) / 'half_plus_two')",
            str(models),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    return models


@pytest.fixture
def running_server(
    server_image: tuple[Recipe, pathlib.Path], exported_models: pathlib.Path, tmp_path: pathlib.Path
) -> Iterator[tuple[str, pathlib.Path]]:
    """`docker run -e MODEL_NAME=half_plus_two -v models:/models berth-server --port=… …`."""
    recipe, venv = server_image
    env = dockerfile_recipe.runtime_env(recipe, venv)
    env.update(MODEL_NAME="half_plus_two", MODEL_BASE_PATH=str(exported_models))
    monitoring = dockerfile_recipe.runtime_files(recipe)["/etc/berth-server/monitoring.config"]
    grpc_port, rest_port = processes.free_port(), processes.free_port()
    # Appended flags win over the entrypoint's (the last occurrence counts, as in TF Serving), so
    # the test picks free ports without touching the image's command line.
    extra = [
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--monitoring_config_file={monitoring}",
        "--enable_batching",
    ]
    workdir = tmp_path / "home"
    workdir.mkdir()
    server = processes.start(
        [*recipe.runtime.exec_form("ENTRYPOINT"), *extra],
        name="image server",
        log_path=tmp_path / "server.log",
        env=env,
        cwd=workdir,
    )
    base = f"http://127.0.0.1:{rest_port}"
    try:
        server.wait_until(
            lambda: get(f"{base}/v1/models/half_plus_two")[0],
            until=lambda status: status == 200,
            timeout_seconds=120,
            interval_seconds=0.5,
            message="the model's status URL to answer 200",
        )
        yield base, venv
    finally:
        server.stop(grace_seconds=30)


def test_server_image_entrypoint_serves_a_model_over_rest(
    running_server: tuple[str, pathlib.Path],
) -> None:
    base, venv = running_server
    request = urllib.request.Request(
        f"{base}/v1/models/half_plus_two:predict",
        data=json.dumps({"instances": [1.0, 2.0, 5.0]}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert json.loads(reply.read()) == {"predictions": [2.5, 3.0, 4.5]}
    status, body = get(f"{base}/v1/models/half_plus_two")
    assert json.loads(body)["model_version_status"][0]["state"] == "AVAILABLE"

    # The metrics the Grafana dashboard charts are the ones the server exports.
    status, body = get(f"{base}/monitoring/prometheus/metrics")
    assert status == 200
    text = body.decode()
    # Families, as `# TYPE` announces them (a labelled histogram has no sample before its first
    # observation, e.g. batching's queuing latency before a batch has queued).
    exported = set(re.findall(r"^# TYPE (\S+)", text, re.M))
    wanted = {re.sub(r"_bucket$", "", m) for m in dashboard_metrics()}
    assert wanted, "the dashboard charts no metric"
    assert wanted <= exported, f"not exported: {sorted(wanted - exported)}"


def dashboard_metrics() -> set[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return {m for e in exprs for m in re.findall(r"(:(?:tensorflow|berth):[a-z_:]+)", e)}


def test_server_image_holds_the_installed_package_only(
    server_image: tuple[Recipe, pathlib.Path],
) -> None:
    """Imports come from the virtualenv's site-packages even when started in the repository."""
    recipe, venv = server_image
    env = dockerfile_recipe.runtime_env(recipe, venv)
    found = subprocess.run(
        ["python", "-c", "import berth_server, berth_operator; print(berth_server.__file__)"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert found.startswith(str(venv / "lib")), found


def test_operator_image_entrypoint_answers_liveness_and_reconciles(
    operator_image: tuple[Recipe, pathlib.Path],
    control_plane: ControlPlane,
    tmp_path: pathlib.Path,
) -> None:
    recipe, venv = operator_image
    env = dockerfile_recipe.runtime_env(recipe, venv)
    lean = subprocess.run(["python", "-c", "import tensorflow"], env=env, capture_output=True)
    assert lean.returncode != 0, "the operator image must not carry TensorFlow"
    assert recipe.runtime.exec_form("CMD") == [
        "--all-namespaces",
        "--liveness=http://0.0.0.0:8080/healthz",
    ]
    plane = control_plane
    plane.kubectl("apply", "--server-side", "-f", str(helm_harness.CRD_SOURCE))
    plane.kubectl("wait", "--for=condition=Established", f"crd/{helm_harness.CRD_NAME}")
    namespace = plane.create_namespace("image")
    workdir = tmp_path / "home"
    workdir.mkdir()
    try:
        # The chart replaces CMD with its own arguments; so does this test (a free port).
        with helm_harness.OperatorProcess(
            [f"--namespace={namespace}", "--resync-seconds=1", "--allow-host-path"],
            kubeconfig=plane.kubeconfig,
            log_path=tmp_path / "operator.log",
            command=recipe.runtime.exec_form("ENTRYPOINT"),
            env=env,
            cwd=workdir,
        ) as operator:
            assert operator.health()
            md = {
                "apiVersion": "serving.berth.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": "hpt"},
                "spec": {
                    "model": {"name": "hpt", "storage": {"hostPath": {"path": "/srv/hpt"}}},
                    "stable": {"version": 1},
                },
            }
            plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(md))
            helm_harness.wait_ready(plane, namespace, "hpt")
            helm_harness.delete_model_deployments(plane, namespace)
    finally:
        plane.delete_namespace(namespace)
