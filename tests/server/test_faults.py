"""Faults while serving: each one costs at most the model or version it touches, and says why."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import processes
import pytest
import waiting
from server_http import get, post

if TYPE_CHECKING:
    from conftest import ServerProcess

FAST_FAIL = ("--max_num_load_retries=0", "--file_system_poll_wait_seconds=1")


def version_status(port: int, model: str, version: int) -> dict[str, Any] | None:
    reply = get(port, f"/v1/models/{model}")
    if reply.status != 200:
        return None
    for row in reply.json()["model_version_status"]:
        if row["version"] == str(version):
            return dict(row)
    return None


def state(port: int, model: str, version: int) -> str | None:
    return (version_status(port, model, version) or {}).get("state")


def ended(port: int, model: str, version: int) -> dict[str, Any] | None:
    row = version_status(port, model, version)
    return row if row and row["state"] == "END" else None


def predicts(port: int, model: str) -> bool:
    return post(port, f"/v1/models/{model}:predict", {"instances": [1.0]}).status == 200


def add_version(base: Path, source: Path, version: int,
                damage: Callable[[Path], None] | None = None) -> Path:
    """Copy `source` as `base/version`, damaged first, appearing at once (rename)."""
    staging = base / f".staging-{version}"
    shutil.copytree(source, staging)
    if damage is not None:
        damage(staging)
    final = base / str(version)
    staging.rename(final)
    return final


@pytest.fixture
def half_plus_two(tmp_path: Path, exported_models: Path) -> Path:
    base = tmp_path / "half_plus_two"
    shutil.copytree(exported_models / "half_plus_two", base)
    return base


def test_deleting_the_base_path_keeps_serving_the_loaded_version(
        half_plus_two: Path, start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(f"--model_base_path={half_plus_two}", "--model_name=half_plus_two",
                          *FAST_FAIL)
    shutil.rmtree(half_plus_two)
    waiting.wait_for(lambda: f"Could not find base path {half_plus_two}" in server.log(),
                     timeout_seconds=60, message="the missing base path in the log")
    assert predicts(server.rest_port, "half_plus_two")
    assert get(server.rest_port, "/readyz").status == 200
    assert server.process.poll() is None


def corrupt_variables(version_dir: Path) -> None:
    data = version_dir / "variables" / "variables.data-00000-of-00001"
    data.write_bytes(os.urandom(data.stat().st_size))
    index = version_dir / "variables" / "variables.index"
    index.write_bytes(b"\x00garbage" * (index.stat().st_size // 8 + 1))


def truncate_graph(version_dir: Path) -> None:
    """What a full disk leaves: a graph file cut short."""
    graph = version_dir / "saved_model.pb"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 3])


@pytest.mark.parametrize("damage", [corrupt_variables, truncate_graph],
                         ids=["corrupt-variables", "truncated-graph"])
def test_a_damaged_new_version_fails_alone_and_its_status_says_why(
        half_plus_two: Path, start_server: Callable[..., ServerProcess],
        damage: Callable[[Path], None]) -> None:
    server = start_server(f"--model_base_path={half_plus_two}", "--model_name=half_plus_two",
                          *FAST_FAIL)
    add_version(half_plus_two, half_plus_two / "123", 124, damage)
    row = waiting.wait_for(lambda: ended(server.rest_port, "half_plus_two", 124),
                           timeout_seconds=60, message="version 124 to end")
    assert row["status"]["error_code"] != "OK"
    assert row["status"]["error_message"]
    assert version_status(server.rest_port, "half_plus_two", 123)["state"] == "AVAILABLE"
    assert predicts(server.rest_port, "half_plus_two")


def test_a_config_file_replaced_by_garbage_keeps_the_running_config(
        tmp_path: Path, exported_models: Path, start_server: Callable[..., ServerProcess]) -> None:
    config = tmp_path / "models.config"
    entry = ('config {{ name: "{0}" base_path: "{1}" model_platform: "tensorflow" }}')
    config.write_text("model_config_list { " + entry.format(
        "half_plus_two", exported_models / "half_plus_two") + " }")
    server = start_server(f"--model_config_file={config}",
                          "--model_config_file_poll_wait_seconds=1")
    config.write_text("this is { not a model server config")
    waiting.wait_for(lambda: "Keeping the running model config" in server.log(),
                     timeout_seconds=60, message="the kept config")
    assert predicts(server.rest_port, "half_plus_two")
    config.write_text("model_config_list { " + entry.format(
        "half_plus_two", exported_models / "half_plus_two") + entry.format(
        "half_plus_three", exported_models / "half_plus_three") + " }")
    waiting.wait_for(lambda: predicts(server.rest_port, "half_plus_three"),
                     timeout_seconds=60, message="half_plus_three to answer")
    assert predicts(server.rest_port, "half_plus_two")


def fifo_variables(version_dir: Path) -> None:
    """Loading blocks for ever: opening a FIFO waits for a writer that never comes."""
    data = version_dir / "variables" / "variables.data-00000-of-00001"
    data.unlink()
    os.mkfifo(data)


def test_a_hanging_load_does_not_block_other_models(
        tmp_path: Path, exported_models: Path, start_server: Callable[..., ServerProcess]) -> None:
    bases = {}
    for name in ("half_plus_two", "half_plus_three"):
        bases[name] = tmp_path / name
        shutil.copytree(exported_models / name, bases[name])
    config = tmp_path / "models.config"
    config.write_text("model_config_list { " + " ".join(
        f'config {{ name: "{n}" base_path: "{p}" model_platform: "tensorflow" }}'
        for n, p in bases.items()) + " }")
    server = start_server(f"--model_config_file={config}", *FAST_FAIL)
    add_version(bases["half_plus_three"], bases["half_plus_three"] / "123", 124, fifo_variables)
    waiting.wait_for(lambda: state(server.rest_port, "half_plus_three", 124) == "LOADING",
                     timeout_seconds=60, message="the hanging version to be LOADING")
    add_version(bases["half_plus_two"], bases["half_plus_two"] / "123", 124)
    waiting.wait_for(lambda: state(server.rest_port, "half_plus_two", 124) == "AVAILABLE",
                     timeout_seconds=60, message="the other model's new version")
    assert predicts(server.rest_port, "half_plus_three")  # still version 123
    assert version_status(server.rest_port, "half_plus_three", 124)["state"] == "LOADING"
    assert server.stop() == 0  # by itself on SIGTERM, within the harness's grace period


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A directory that user `nobody` can traverse (pytest's tmp_path is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="berth-faults-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to run the server as another user")
def test_a_version_the_server_may_not_read_says_permission_denied(
        world_readable_dir: Path, exported_models: Path) -> None:
    """The classic pitfall: model files copied as root with mode 0600, server not root."""
    base = world_readable_dir / "half_plus_two"
    shutil.copytree(exported_models / "half_plus_two", base)
    for path in [base, *base.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)

    def root_only(version_dir: Path) -> None:
        for path in version_dir.rglob("*"):
            if path.is_file():
                path.chmod(0o600)

    grpc_port, rest_port = processes.free_port(), processes.free_port()
    server = processes.start(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         sys.executable, "-m", "berth_server", f"--port={grpc_port}",
         f"--rest_api_port={rest_port}", f"--model_base_path={base}",
         "--model_name=half_plus_two", *FAST_FAIL],
        name="server as nobody", log_path=world_readable_dir / "server.log",
        cwd=world_readable_dir,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "HOME": str(world_readable_dir),
             "MPLCONFIGDIR": str(world_readable_dir)})
    try:
        server.wait_until(lambda: processes.port_accepts(rest_port), timeout_seconds=120,
                          message="the REST port")
        add_version(base, base / "123", 124, root_only)
        row = waiting.wait_for(lambda: ended(rest_port, "half_plus_two", 124),
                               timeout_seconds=60, message="version 124 to end")
        assert row["status"]["error_code"] == "PERMISSION_DENIED" or \
            "Permission denied" in row["status"]["error_message"], row
        assert predicts(rest_port, "half_plus_two")
    finally:
        server.stop(grace_seconds=30)
