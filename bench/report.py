"""Render one run's results as markdown: targets first, then every row with its same-run ratios.

Ratios are computed here, from rows of the same run only: "x ceiling" divides by the do-nothing
server of the same transport at the same concurrency, "x peer" by the peer's REST row, and
"x in-process" by the best in-process rows/s of the same model on the same core.
"Server CPU wait" is the time the server's threads were runnable but not running, summed over
its threads: its own threads queueing for its one core, plus any other process on that core.
"""

from __future__ import annotations

from typing import Any

MIB = 2**20


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _index(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    return {(r["server"], r["transport"], r["concurrency"]): r for r in rows}


def _ratio(value: float, base: dict[str, Any] | None, field: str = "requests_per_second") -> str:
    return f"{value / base[field]:.2f}" if base and base.get(field) else ""


def series_table(results: dict[str, Any], model: str) -> list[str]:
    entry = results["models"][model]
    ceilings = _index(results.get("ceilings", []) if model == "mlp" else [])
    ceiling_names = {"grpc": "grpc.aio do-nothing", "rest": "ASGI do-nothing"}
    rows = (results.get("ceilings", []) if model == "mlp" else []) + entry["series"]
    peers = _index([r for r in rows if r["server"].startswith("kserve")])
    best = entry["inprocess"]["best"]
    body = []
    for r in rows:
        rps = r["requests_per_second"]
        ceiling = ceilings.get((ceiling_names[r["transport"]], r["transport"], r["concurrency"]))
        peer = next((p for (_, t, c), p in peers.items()
                     if t == r["transport"] and c == r["concurrency"]), None)
        batching = {True: "on", False: "off", None: "-"}[r["batching"]]
        shown = f"{rps:,.0f}" if r["completed"] >= r["concurrency"] else f"{rps:.1f}*"
        spread = f"{r['rps_min']:,.0f}–{r['rps_max']:,.0f}"
        body.append([r["server"], r["transport"], batching, str(r["concurrency"]), shown, spread,
                     f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", str(r["errors"]),
                     f"{r['loadgen_cpu_share']:.0%}", f"{r['server_cpu_share']:.0%}",
                     f"{r['server_wait_share']:.0%}", _ratio(rps, ceiling), _ratio(rps, peer)]
                    + ([] if model == "mlp" else [_ratio(rps, best, "rows_per_second")]))
    # The MLP's in-process best is a batch of 1024, no yardstick for batch-1 requests.
    lines = _table(["server", "transport", "batching", "clients", "req/s", "req/s min–max",
                    "p50 ms", "p99 ms",
                    "errors", "load-gen CPU", "server CPU", "server CPU wait", "x ceiling",
                    "x peer"] + ([] if model == "mlp" else ["x in-process best"]), body)
    if any(r["completed"] < r["concurrency"] for r in rows):
        lines += ["", "\\* fewer answers than clients in a run: most requests were still in "
                  "flight when the window closed, so the rate is a floor and the latencies "
                  "cover only the answers that made it."]
    return lines


def inprocess_table(entry: dict[str, Any]) -> list[str]:
    inproc = entry["inprocess"]
    rows = [[str(r["batch"]), str(r["threads"]), f"{r['rows_per_second']:,.0f}"]
            for r in inproc["rows"]]
    lines = _table(["batch", "threads", "rows/s"], rows)
    best = inproc["best"]
    started = entry.get("berth_batching_off", {})
    lines += ["",
              f"Best: {best['rows_per_second']:,.0f} rows/s at batch {best['batch']} with "
              f"{best['threads']} thread(s). Batch-1 call p50: {inproc['batch1_p50_ms']:.3f} ms. "
              f"Bare process start to loaded: {inproc['bare_start_seconds']:.2f} s; "
              f"its RSS holding the model: {inproc['rss_bytes'] / MIB:.0f} MiB "
              f"({inproc['rss_bytes_trimmed'] / MIB:.0f} MiB with freed memory returned).",
              f"Berth start to AVAILABLE: {started.get('start_to_available_seconds', 0):.2f} s; "
              f"RSS after one request "
              f"{started.get('rss_bytes_after_one_request', 0) / MIB:.0f} MiB "
              f"({started.get('rss_bytes_quiet_after_one_request', 0) / MIB:.0f} once quiet), "
              f"after the load {started.get('rss_bytes_after_load', 0) / MIB:.0f} MiB "
              f"({started.get('rss_bytes_quiet_after_load', 0) / MIB:.0f} once quiet), peak "
              f"{started.get('peak_rss_bytes', 0) / MIB:.0f} MiB (batching off)."]
    return lines


def cores_table(rows: list[dict[str, Any]]) -> list[str]:
    """`bench.cores`: each point against the 1-CPU row and against one worker on its CPUs."""
    index = {(r["model"], r["transport"], r["server_cpus"], r["workers"]): r for r in rows}
    body = []
    for r in rows:
        rps = r["requests_per_second"]
        alone = index.get((r["model"], r["transport"], 1, 1))
        one_worker = index.get((r["model"], r["transport"], r["server_cpus"], 1))
        shown = f"{rps:,.0f}" if r["completed"] >= r["concurrency"] else f"{rps:.1f}*"
        body.append([r["model"], r["transport"], str(r["server_cpus"]), str(r["workers"]),
                     f"{r['load_cpus']} ×{r['load_threads']}", shown,
                     f"{r['rps_min']:,.0f}–{r['rps_max']:,.0f}", f"{r['p50_ms']:.2f}",
                     f"{r['p99_ms']:.2f}", str(r["errors"]), f"{r['server_cpu_share']:.0%}",
                     f"{r['loadgen_cpu_share']:.0%}",
                     f"{r['requests_per_server_cpu_second']:,.0f}", _ratio(rps, alone),
                     _ratio(rps, one_worker) if r["workers"] > 1 else "",
                     f"{r['rss_mib']:,.0f}"])
    return _table(["model", "transport", "server CPUs", "workers", "load tool CPUs ×threads",
                   "req/s", "req/s min–max", "p50 ms", "p99 ms", "errors", "server CPU",
                   "load-gen CPU", "req per server CPU-s", "x 1 CPU", "x 1 worker, same CPUs",
                   "RSS MiB (all processes)"], body) + (
        ["", "\\* fewer answers than clients in a run: the rate is a floor."]
        if any(r["completed"] < r["concurrency"] for r in rows) else [])


def overload_table(overload: dict[str, Any]) -> list[str]:
    """`bench.overload`'s results, one column per transport."""

    def cell(value: object) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{key} {count}" for key, count in value.items())
        if isinstance(value, float):
            return f"{value:,.2f}"
        return "-" if value is None else str(value)

    header = (f"at 2x capacity for {overload['seconds']:g} s, "
              f"--max_inflight_requests={overload['max_inflight_requests']}")
    return _table([header, "gRPC", "REST"],
                  [[key, cell(overload["grpc"][key]), cell(overload["rest"][key])]
                   for key in overload["grpc"]])


def targets_table(results: dict[str, Any]) -> list[str]:
    return _table(["target", "measured", "goal", "reached"],
                  [[t["target"], t["measured"], t["goal"], t["reached"]]
                   for t in results["targets"]])


README_BEGIN = "<!-- bench targets: written by `make bench`, not by hand -->"
README_END = "<!-- end of bench targets -->"


def with_readme_targets(readme: str, results: dict[str, Any]) -> str:
    """The README with its targets table replaced by this run's (a full run's only)."""
    machine = results["machine"]
    head, begin, rest = readme.partition(README_BEGIN)
    _, end, tail = rest.partition(README_END)
    if not begin or not end:
        raise ValueError(f"README.md lacks the markers {README_BEGIN!r} ... {README_END!r}")
    section = [f"Targets from the last full run ({results['started']}, {machine['cores']} cores, "
               f"load average {machine['load_average_at_start'][0]:.2f} at start and "
               f"{machine['load_average_at_end'][0]:.2f} at end):", ""] + targets_table(results)
    return head + begin + "\n" + "\n".join(section) + "\n" + end + tail


def render(results: dict[str, Any]) -> str:
    machine = results["machine"]
    settings = results["settings"]
    lines = [f"# Berth benchmark ({'quick' if settings['quick'] else 'full'} run, "
             f"{results['started']})", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
             f"{machine['os']}, kernel {machine['kernel']}, Python {machine['python']}, "
             f"TensorFlow {machine['packages']['tensorflow']}. {machine['pinning']}. "
             f"Load average at start {machine['load_average_at_start']}, at end "
             f"{machine['load_average_at_end']}. Tools: {machine['h2load']} (gRPC), "
             f"{machine['wrk']} (REST); peer: {machine['peer']}.", "",
             f"Each row: batch-1 requests, the median of {settings['runs']} runs (their lowest "
             f"and highest req/s beside it) of "
             f"{settings['seconds']:g} s after a {settings['warmup_seconds']:g} s warm-up. "
             f"Whole run: {results['elapsed_seconds'] / 60:.1f} min. Load-gen CPU: the load "
             "tool's share of its core. Server CPU / CPU wait: CPU seconds per second over all "
             "its threads, and seconds they were runnable but not running (its own threads "
             "queueing for its one core count, as does anything else on it).", "",
             "## Targets", ""]
    lines += targets_table(results)
    for model, entry in results["models"].items():
        lines += ["", f"## {model}", "", "### Over the wire", "",
                  f"Batching on: `{entry['batching_parameters']}`.", ""]
        lines += series_table(results, model)
        lines += ["", "### In-process limit (signature called from Python, server core)", ""]
        lines += inprocess_table(entry)
    if results.get("cores"):
        lines += ["", "## Cores (`bench.cores`: a worker per CPU, 32 clients, batching on)", "",
                  "The server pinned to its CPUs with `--num_workers` equal to them. Where the "
                  "load tool shares the server's CPUs (\"shared\") req/s reads low by the "
                  "tool's own CPU; req per server CPU-second and the one-worker row on the same "
                  "CPUs compare fairly regardless.", ""]
        lines += cores_table(results["cores"])
    if "overload" in results:
        lines += ["", "## Overload (the busy model, `python -m bench.overload`)", "",
                  "Capacity from four closed-loop clients; then open-loop load at twice that. "
                  "Server refusal latency: the access log's, as the server measured it.", ""]
        lines += overload_table(results["overload"])
    return "\n".join(lines) + "\n"
