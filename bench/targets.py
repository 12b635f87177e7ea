"""The performance targets, each computed from rows of one run; one without its rows is "not run".

Each target is a ratio or an allowance over a baseline measured in the same run, never over a
number from another day, so a busy machine lowers both sides together. Throughput ratios also
quote the range the runs' extremes give (lowest over highest to highest over lowest): a goal
inside that range is within the run's noise.
"""

from __future__ import annotations

from typing import Any

MIB = 2**20


def _row(results: dict[str, Any], model: str, server: str, transport: str, concurrency: int
         ) -> dict[str, Any] | None:
    if model == "ceilings":
        rows = results.get("ceilings", [])
    else:
        rows = results["models"].get(model, {}).get("series", [])
    for row in rows:
        if (row["server"], row["transport"], row["concurrency"]) == (server,
                                                                      transport, concurrency):
            return dict(row)
    return None


def _peer_label(results: dict[str, Any], model: str) -> str:
    for row in results["models"].get(model, {}).get("series", []):
        if row["server"].startswith("kserve"):
            return str(row["server"])
    return "kserve"


def _target(name: str, measured: str, goal: str, reached: bool | None) -> dict[str, Any]:
    return {"target": name, "measured": measured, "goal": goal,
            "reached": "not run" if reached is None else ("yes" if reached else "no")}


def _spread(row: dict[str, Any], base: dict[str, Any]) -> str:
    return (f" (runs {row['rps_min'] / base['rps_max']:.2f}–"
            f"{row['rps_max'] / base['rps_min']:.2f}x)")


def _throughput_ratio(name: str, row: dict[str, Any] | None, base: dict[str, Any] | None,
                      base_name: str, factor: float) -> dict[str, Any]:
    if row is None or base is None:
        return _target(name, "-", f">= {factor:g}x {base_name}", None)
    ratio = row["requests_per_second"] / base["requests_per_second"]
    return _target(name, f"{row['requests_per_second']:.0f} / {base['requests_per_second']:.0f}"
                   f" req/s = {ratio:.2f}x" + _spread(row, base), f">= {factor:g}x {base_name}",
                   ratio >= factor)


def _mobilenet(results: dict[str, Any], transport: str) -> dict[str, Any]:
    name = f"MobileNetV2, 32 clients, batching on, {transport}: >= 0.9x in-process best rows/s"
    entry = results["models"].get("mobilenet_v2")
    row = _row(results, "mobilenet_v2", "berth+batching", transport, 32)
    if entry is None or row is None:
        return _target(name, "-", ">= 0.9x", None)
    best = entry["inprocess"]["best"]
    ratio = row["requests_per_second"] / best["rows_per_second"]
    return _target(name, f"{row['requests_per_second']:.1f} / {best['rows_per_second']:.1f} "
                   f"rows/s (batch {best['batch']}, {best['threads']} thr) = {ratio:.2f}x "
                   f"(runs {row['rps_min'] / best['rows_per_second']:.2f}–"
                   f"{row['rps_max'] / best['rows_per_second']:.2f}x)", ">= 0.9x", ratio >= 0.9)


def _latency(results: dict[str, Any], model: str, transport: str, allowance_ms: float
             ) -> dict[str, Any]:
    name = f"{model}, 1 client, batching off, {transport} p50 <= in-process + {allowance_ms:g} ms"
    entry = results["models"].get(model)
    row = _row(results, model, "berth", transport, 1)
    if entry is None or row is None:
        return _target(name, "-", "", None)
    floor = entry["inprocess"]["batch1_p50_ms"]
    return _target(name, f"{row['p50_ms']:.2f} ms vs in-process {floor:.2f} ms",
                   f"<= {floor + allowance_ms:.2f} ms", row["p50_ms"] <= floor + allowance_ms)


def _startup(results: dict[str, Any], model: str) -> dict[str, Any]:
    entry = results["models"][model]
    berth = entry["berth_batching_off"]["start_to_available_seconds"]
    bare = entry["inprocess"]["bare_start_seconds"]
    goal = 1.3 * bare + 1.0
    return _target(f"{model}: start to AVAILABLE <= 1.3x bare tf.saved_model.load + 1 s",
                   f"{berth:.2f} s vs bare {bare:.2f} s", f"<= {goal:.2f} s", berth <= goal)


def _memory(results: dict[str, Any], model: str) -> dict[str, Any]:
    """Once quiet, both sides trimmed: the memory it takes to hold the model and answer. The
    reading right after the request, freed memory included, is quoted beside it."""
    entry = results["models"][model]
    started, bare_run = entry["berth_batching_off"], entry["inprocess"]
    berth = started["rss_bytes_quiet_after_one_request"] / MIB
    bare = bare_run["rss_bytes_trimmed"] / MIB
    return _target(f"{model}: RSS <= bare Python process holding the model + 80 MB",
                   f"{berth:.0f} MiB vs bare {bare:.0f} MiB, both with freed memory returned "
                   f"(before: {started['rss_bytes_after_one_request'] / MIB:.0f} vs "
                   f"{bare_run['rss_bytes'] / MIB:.0f})", f"<= {bare + 80:.0f} MiB",
                   berth <= bare + 80)


def _overload(results: dict[str, Any]) -> list[dict[str, Any]]:
    """What --max_inflight_requests promises at twice the capacity (tests check the statuses)."""
    grpc, rest = results["overload"]["grpc"], results["overload"]["rest"]
    refusal, rest_refusal = grpc["server_refusal_p50_micros"], rest["client_refusal_p50_ms"]
    statuses = sorted({*grpc["statuses"], *rest["statuses"]})
    return [
        _target("Overload: every answer OK or UNAVAILABLE (gRPC and REST)", ", ".join(statuses),
                "OK, UNAVAILABLE", set(statuses) <= {"OK", "UNAVAILABLE"}),
        _target("Overload, gRPC: median refusal in the server <= 20 ms",
                "-" if refusal is None else f"{refusal / 1000:.2f} ms", "<= 20 ms",
                None if refusal is None else refusal < 20_000),
        _target("Overload, REST: median refusal seen by the client <= 1 s",
                "-" if rest_refusal is None else f"{rest_refusal:.1f} ms", "<= 1000 ms",
                None if rest_refusal is None else rest_refusal < 1000),
        _target("Overload, gRPC: served >= 0.4x capacity",
                f"{grpc['served_share_of_capacity']:.2f}x", ">= 0.4x",
                grpc["served_share_of_capacity"] >= 0.4),
        _target("Overload, gRPC: RSS flat (second half +64 MiB, whole run +512 MiB at most)",
                f"+{grpc['rss_growth_second_half_mib']:.0f} / +{grpc['rss_growth_mib']:.0f} MiB",
                "<= 64 / 512 MiB", grpc["rss_growth_second_half_mib"] <= 64
                and grpc["rss_growth_mib"] <= 512),
        _target("Overload: the next request answers within 5 s (gRPC and REST)",
                f"{grpc['recovery_ms']:.0f} / {rest['recovery_ms']:.0f} ms", "<= 5000 ms",
                max(grpc["recovery_ms"], rest["recovery_ms"]) <= 5000),
    ]


def _cores(results: dict[str, Any], transport: str) -> dict[str, Any]:
    """The workers keep one process's work per CPU: then throughput grows with the CPUs given,
    whatever share of them the load tool takes on a small machine."""
    rows = [r for r in results.get("cores", []) if (r["model"], r["transport"]) == ("mlp",
                                                                                    transport)]
    name = (f"Cores, MLP, {transport}: req per server CPU-second with a worker per CPU "
            ">= 0.8x one worker on one CPU")
    alone = next((r for r in rows if (r["server_cpus"], r["workers"]) == (1, 1)), None)
    widest = max(rows, key=lambda r: (r["workers"], r["server_cpus"]), default=None)
    if alone is None or widest is None or widest is alone:
        return _target(name, "-", ">= 0.8x", None)
    ratio = (widest["requests_per_server_cpu_second"]
             / alone["requests_per_server_cpu_second"])
    return _target(name, f"{widest['requests_per_server_cpu_second']:.0f} ({widest['workers']} "
                   f"workers) / {alone['requests_per_server_cpu_second']:.0f} = {ratio:.2f}x",
                   ">= 0.8x", ratio >= 0.8)


def _with_handoff(results: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """The gRPC target with what the do-nothing server reaches once it, too, answers through
    a batch thread (`bench.null_grpc --handoff_micros`), as Berth's batched calls do."""
    handoff = _row(results, "ceilings", "grpc.aio do-nothing + batch hand-off", "grpc", 32)
    base = _row(results, "ceilings", "grpc.aio do-nothing", "grpc", 32)
    if handoff is None or base is None:
        return target
    share = handoff["requests_per_second"] / base["requests_per_second"]
    return {**target, "measured": f"{target['measured']}; do-nothing with a batch hand-off: "
                                  f"{share:.2f}x"}


REST_LATENCY_ALLOWANCE_MS = {"mlp": 1.0, "mobilenet_v2": 3.0}
"""A 224×224×3 image is ~1 MB of JSON: its parse alone outlasts the MLP's whole allowance."""


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    peer = _peer_label(results, "mlp")
    mlp_rest = _row(results, "mlp", "berth+batching", "rest", 32)
    targets = [
        _throughput_ratio("MLP, 32 clients, batching on, REST >= 4x peer", mlp_rest,
                          _row(results, "mlp", peer, "rest", 32), peer, 4.0),
        _throughput_ratio("MLP, 32 clients, batching on, REST >= 0.7x do-nothing ASGI", mlp_rest,
                          _row(results, "ceilings", "ASGI do-nothing", "rest", 32), "ASGI", 0.7),
        _with_handoff(results, _throughput_ratio(
            "MLP, 32 clients, batching on, gRPC >= 0.8x do-nothing grpc.aio",
            _row(results, "mlp", "berth+batching", "grpc", 32),
            _row(results, "ceilings", "grpc.aio do-nothing", "grpc", 32), "grpc.aio", 0.8)),
        _mobilenet(results, "grpc"),
        _mobilenet(results, "rest"),
    ]
    for model in results["models"]:
        targets += [_latency(results, model, "grpc", 0.5),
                    _latency(results, model, "rest", REST_LATENCY_ALLOWANCE_MS.get(model, 1.0)),
                    _startup(results, model), _memory(results, model)]
    if results.get("cores"):
        targets += [_cores(results, "grpc"), _cores(results, "rest")]
    if "overload" in results:
        targets += _overload(results)
    return targets
