"""What the numbers were measured on: the machine, the software and how busy the machine was.

Load average is recorded at both ends of the run because this 2-core machine is shared: a high
value means absolute numbers are low and noisy, while the same-run ratios still compare like with
like.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path


def _first_line(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except OSError:
        return "missing"
    return (done.stdout or done.stderr).strip().splitlines()[0]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return 0.0


def _os_name() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def describe(peer_venv: Path) -> dict[str, object]:
    versions = {name: importlib.metadata.version(name) for name in
                ("tensorflow", "grpcio", "uvicorn", "httptools", "uvloop", "orjson")}
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "h2load": _first_line(["h2load", "--version"]),
        "wrk": _first_line(["wrk", "--version"]).split(" Copyright")[0],
        "peer": f"kserve {peer_venv.name.split('-')[1]} (own virtualenv {peer_venv})",
        "pinning": "load generator on CPU 0, server under test on CPU 1 (taskset)",
        "load_average_at_start": load_average(),
    }
