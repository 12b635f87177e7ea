"""Faults while serving: each one costs at most the model or version it touches, and says why."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from server_http import get, post

if TYPE_CHECKING:
    from conftest import ServerProcess

FAST_FAIL = ("--max_num_load_retries=0", "--file_system_poll_wait_seconds=1")


def wait_for(predicate: Callable[[], Any], timeout_seconds: float = 30) -> Any:
    deadline = time.monotonic() + timeout_seconds
    while True:
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


def version_status(port: int, model: str, version: int) -> dict[str, Any] | None:
    reply = get(port, f"/v1/models/{model}")
    if reply.status != 200:
        return None
    for row in reply.json()["model_version_status"]:
        if row["version"] == str(version):
            return dict(row)
    return None


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
    wait_for(lambda: f"Could not find base path {half_plus_two}" in server.log())
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
    row = wait_for(lambda: ended(server.rest_port, "half_plus_two", 124))
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
    wait_for(lambda: "Keeping the running model config" in server.log())
    assert predicts(server.rest_port, "half_plus_two")
    config.write_text("model_config_list { " + entry.format(
        "half_plus_two", exported_models / "half_plus_two") + entry.format(
        "half_plus_three", exported_models / "half_plus_three") + " }")
    wait_for(lambda: predicts(server.rest_port, "half_plus_three"))
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
    wait_for(lambda: (version_status(server.rest_port, "half_plus_three", 124) or {}).get(
        "state") == "LOADING")
    add_version(bases["half_plus_two"], bases["half_plus_two"] / "123", 124)
    wait_for(lambda: (version_status(server.rest_port, "half_plus_two", 124) or {}).get(
        "state") == "AVAILABLE")
    assert predicts(server.rest_port, "half_plus_three")  # still version 123
    assert version_status(server.rest_port, "half_plus_three", 124)["state"] == "LOADING"
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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

    grpc_port, rest_port = _free_port(), _free_port()
    log_path = world_readable_dir / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
             sys.executable, "-m", "berth_server", f"--port={grpc_port}",
             f"--rest_api_port={rest_port}", f"--model_base_path={base}",
             "--model_name=half_plus_two", *FAST_FAIL],
            stdout=log, stderr=subprocess.STDOUT, cwd=world_readable_dir,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "HOME": str(world_readable_dir),
                 "MPLCONFIGDIR": str(world_readable_dir)})
    try:
        wait_for(lambda: process.poll() is not None or _accepts(rest_port), 120)
        assert process.poll() is None, log_path.read_text()
        add_version(base, base / "123", 124, root_only)
        row = wait_for(lambda: ended(rest_port, "half_plus_two", 124))
        assert row["status"]["error_code"] == "PERMISSION_DENIED" or \
            "Permission denied" in row["status"]["error_message"], row
        assert predicts(rest_port, "half_plus_two")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
