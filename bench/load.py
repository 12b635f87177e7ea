"""Load generators: h2load for gRPC, wrk for REST, each pinned to the load core and accounted.

Both are C tools with one thread here (more only on the cores axis, one per CPU they get), so
one core drives the load while the server under test has the other. Each run returns its
throughput, p50/p99, errors, and the CPU share the tool itself used (from `wait4` rusage): a
share near 100 % means the row measures the tool, not the server, and the report says so. The
server's CPU is summed over its process and every descendant (its workers).

gRPC through h2load: the request body is a pre-encoded, length-prefixed PredictRequest sent as
HTTP/2 POSTs with gRPC's headers. h2load judges HTTP status only, and a gRPC error is HTTP 200
with a status trailer and no message, so a run also compares the DATA bytes it received with the
size of a good answer (measured once per series by `bench.probe`) and counts the shortfall as
errors. Latency percentiles come from h2load's per-request log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

GRPC_PREDICT_PATH = "/tensorflow.serving.PredictionService/Predict"
WRK_TIMEOUT = "60s"  # MobileNetV2 at 128 clients queues for seconds; wrk's 2 s would drop them


@dataclasses.dataclass(frozen=True)
class RunResult:
    """One bounded run of one load generator against one server."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    completed: int
    """Good answers in the run; fewer than the concurrency means the window was too short for
    this server at this load, and the row says so instead of quoting a rate."""
    loadgen_cpu_share: float
    """Load generator CPU seconds per wall second (1.0 = its whole core)."""
    server_cpu_share: float
    """Server CPU seconds per wall second during the run (all its threads)."""
    server_wait_share: float
    """Seconds the server's threads were runnable but not running, summed over its threads, per
    wall second: its own threads queueing for its one core count, and so does any other process
    on that core (a busy machine makes the row read low)."""


@dataclasses.dataclass(frozen=True)
class Load:
    """What to send: the transport, the server's port and path, the body, the concurrency."""

    transport: str  # "grpc" or "rest"
    port: int
    body: Path
    concurrency: int
    rest_path: str = ""
    good_response_bytes: int = 0
    """gRPC only: DATA bytes of one good answer (frame prefix included)."""
    threads: int = 1
    """Threads of the load tool (one per CPU it is given)."""


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants: a Berth server with workers is several processes."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # it ended meanwhile
    tree, generation = [pid], [pid]
    while generation:
        generation = [child for child, parent in parents.items() if parent in generation]
        tree += generation
    return tree


def _schedstat_seconds(pid: int) -> tuple[float, float]:
    """(on-CPU, runnable-but-waiting) seconds summed over the live threads of the process
    and its descendants."""
    running = waiting = 0
    for process in process_tree(pid):
        with contextlib.suppress(OSError):  # the process ended meanwhile
            for task in Path(f"/proc/{process}/task").iterdir():
                try:
                    on_cpu, wait, _ = (task / "schedstat").read_text().split()
                except (OSError, ValueError):
                    continue  # the thread ended meanwhile
                running += int(on_cpu)
                waiting += int(wait)
    return running / 1e9, waiting / 1e9


def _run_pinned(command: list[str], cpu: int | str, server_pid: int
                ) -> tuple[str, float, float, tuple[float, float]]:
    """Run ``command`` on ``cpu`` (a CPU or a taskset list); return its stdout, wall seconds,
    its CPU seconds and the server's (CPU, wait) seconds over the same span."""
    server_before = _schedstat_seconds(server_pid)
    start = time.monotonic()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(["taskset", "-c", str(cpu), *command],
                                   stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - start
        out.seek(0)
        text = out.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({process.returncode}):\n{text[-2000:]}")
    server_after = _schedstat_seconds(server_pid)
    server = (server_after[0] - server_before[0], server_after[1] - server_before[1])
    return text, wall, usage.ru_utime + usage.ru_stime, server


def _percentile(sorted_values: list[float], share: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))]


def _h2load(load: Load, seconds: float, cpu: int | str, server_pid: int) -> RunResult:
    with tempfile.NamedTemporaryFile(suffix=".log") as log:
        command = ["h2load", f"-t{load.threads}", f"-c{load.concurrency}", "-m1",
                   f"-D{seconds:g}",
                   "-H", "content-type: application/grpc", "-H", "te: trailers",
                   "-d", str(load.body), f"--log-file={log.name}",
                   f"http://127.0.0.1:{load.port}{GRPC_PREDICT_PATH}"]
        text, wall, cpu_s, server_s = _run_pinned(command, cpu, server_pid)
        micros = sorted(float(line.split("\t")[2]) for line in Path(log.name).read_text().split(
            "\n") if line.count("\t") == 2 and line.split("\t")[1] == "200")
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", text)
    data = re.search(r"traffic: .*\((\d+)\) data", text)
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    if not (done and data and rps):
        raise RuntimeError(f"unexpected h2load output:\n{text[-2000:]}")
    succeeded = int(done.group(2))
    good = round(int(data.group(1)) / load.good_response_bytes) if load.good_response_bytes else 0
    errors = int(done.group(1)) - min(succeeded, good)
    return RunResult(float(rps.group(1)) * (min(succeeded, good) / max(succeeded, 1)),
                     _percentile(micros, 0.5) / 1e3, _percentile(micros, 0.99) / 1e3, errors,
                     min(succeeded, good), cpu_s / wall, server_s[0] / wall, server_s[1] / wall)


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _wrk_ms(text: str, label: str) -> float:
    found = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    return float(found.group(1)) * _UNITS_MS[found.group(2)] if found else float("nan")


def _wrk_script(body: Path) -> Path:
    script = body.with_suffix(".lua")
    script.write_text(f'local f = io.open("{body}", "rb")\nwrk.method = "POST"\n'
                      'wrk.body = f:read("*a")\nf:close()\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')
    return script


def _wrk(load: Load, seconds: float, cpu: int | str, server_pid: int) -> RunResult:
    command = ["wrk", f"-t{load.threads}", f"-c{load.concurrency}", f"-d{seconds:g}s", "--latency",
               f"--timeout={WRK_TIMEOUT}", "-s", str(_wrk_script(load.body)),
               f"http://127.0.0.1:{load.port}{load.rest_path}"]
    text, wall, cpu_s, server_s = _run_pinned(command, cpu, server_pid)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not rps:
        raise RuntimeError(f"unexpected wrk output:\n{text[-2000:]}")
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|timeout):? (\d+)", text))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+)", text)
    errors += sum(int(n) for n in socket.groups()) if socket else 0
    found = re.search(r"(\d+) requests in", text)
    requests = int(found.group(1)) if found else 0
    good_share = 1 - errors / max(requests, 1)
    return RunResult(float(rps.group(1)) * max(good_share, 0.0), _wrk_ms(text, "50%"),
                     _wrk_ms(text, "99%"), errors, max(requests - errors, 0), cpu_s / wall,
                     server_s[0] / wall, server_s[1] / wall)


def run_once(load: Load, seconds: float, *, cpu: int | str, server_pid: int) -> RunResult:
    """One bounded run; errors are counted, and only good answers count towards req/s."""
    runner = _h2load if load.transport == "grpc" else _wrk
    return runner(load, seconds, cpu, server_pid)


def median_of(results: list[RunResult]) -> RunResult:
    """Field-wise medians over the measured runs (errors are summed: any error is worth seeing)."""
    def med(field: str) -> float:
        return statistics.median(getattr(r, field) for r in results)

    return RunResult(med("requests_per_second"), med("p50_ms"), med("p99_ms"),
                     sum(r.errors for r in results), min(r.completed for r in results),
                     med("loadgen_cpu_share"),
                     med("server_cpu_share"), med("server_wait_share"))
