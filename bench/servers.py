"""Servers under test as pinned subprocesses: Berth, the two do-nothing ceilings and the peer.

Each server runs on the server core (`taskset`), logs to a file (a full pipe would stall it), and
is ready when its own readiness signal says so: Berth when GetModelStatus over REST reports the
version AVAILABLE (the time from spawn to that answer is Berth's start-to-AVAILABLE), the peer
when KServe's model endpoint says ready, the ceilings when their port accepts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from bench import load
from berth_server import heap

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 300.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class Server:
    """A started server process and what the bench needs from it."""

    name: str
    process: subprocess.Popen[bytes]
    grpc_port: int
    rest_port: int
    start_to_ready_seconds: float
    log_path: Path

    def status_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        return 0

    @property
    def rss_bytes(self) -> int:
        return self.status_kib("VmRSS") * 1024

    @property
    def tree_rss_bytes(self) -> int:
        """Resident memory of the server and its workers together (shared pages counted in
        each process, so an upper bound)."""
        total = 0
        for pid in load.process_tree(self.process.pid):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total

    def quiet_rss_bytes(self, timeout_seconds: float = 3 * heap.INTERVAL_SECONDS) -> int:
        """RSS once the server has handed freed memory back (`heap.Trimmer`, within a second
        of going quiet): the lowest reading until it drops, or until the timeout."""
        first = lowest = self.rss_bytes
        deadline = time.monotonic() + timeout_seconds
        while lowest >= first and time.monotonic() < deadline:
            time.sleep(0.05)
            lowest = min(lowest, self.rss_bytes)
        return lowest

    @property
    def peak_rss_bytes(self) -> int:
        return self.status_kib("VmHWM") * 1024


def _http_json(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return dict(json.loads(response.read()))
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


def berth_available(rest_port: int, model: str) -> Callable[[], bool]:
    def ready() -> bool:
        status = _http_json(f"http://127.0.0.1:{rest_port}/v1/models/{model}")
        versions = status.get("model_version_status", []) if status else []
        return bool(versions) and all(  # type: ignore[union-attr]
            v.get("state") == "AVAILABLE" for v in versions)  # type: ignore[union-attr]
    return ready


def kserve_ready(rest_port: int, model: str) -> Callable[[], bool]:
    def ready() -> bool:
        status = _http_json(f"http://127.0.0.1:{rest_port}/v1/models/{model}")
        return bool(status and status.get("ready"))
    return ready


def port_ready(port: int) -> Callable[[], bool]:
    return lambda: _port_open(port)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running(name: str, command: list[str], *, cpu: int | str, logs_dir: Path, grpc_port: int = 0,
            rest_port: int = 0, ready: Callable[[], bool]) -> Iterator[Server]:
    """Start ``command`` pinned to ``cpu`` (a CPU or a taskset list); yield once ``ready()``;
    stop it (SIGTERM) after."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = logs_dir / f"{name}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(["taskset", "-c", str(cpu), *command], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        while not ready():
            if process.poll() is not None or time.monotonic() - started > START_TIMEOUT_SECONDS:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} did not become ready; log {log_path}:\n{tail}")
            time.sleep(0.02)
        yield Server(name, process, grpc_port, rest_port, time.monotonic() - started, log_path)
    finally:
        _stop(process)


def berth_command(model: str, model_dir: Path, grpc_port: int, rest_port: int,
                  batching_file: Path | None, *, workers: int = 1) -> list[str]:
    command = [str(Path(sys.executable).parent / "berth-server"), f"--port={grpc_port}",
               f"--rest_api_port={rest_port}", f"--model_name={model}",
               f"--model_base_path={model_dir.resolve()}"]
    if workers != 1:
        command.append(f"--num_workers={workers}")
    if batching_file is not None:
        command += ["--enable_batching", f"--batching_parameters_file={batching_file}"]
    return command


def null_command(kind: str, port: int) -> list[str]:
    return [sys.executable, "-m", f"bench.null_{kind}", f"--port={port}"]


def peer_command(peer_venv: Path, model: str, model_dir: Path, rest_port: int) -> list[str]:
    return [str(peer_venv / "bin" / "python"), str(ROOT / "bench" / "peer_kserve.py"),
            f"--model_dir={model_dir.resolve()}", f"--model_name={model}",
            f"--http_port={rest_port}", f"--grpc_port={free_port()}",
            "--enable_latency_logging=false"]
