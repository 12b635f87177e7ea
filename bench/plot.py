"""The PNG: per model, throughput vs concurrency and p50/p99 latency vs concurrency.

matplotlib runs headless (Agg); log scales because concurrency steps by 4x and latencies span
orders of magnitude between the do-nothing servers and MobileNetV2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first


def _lines(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    lines: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["completed"] < row["concurrency"]:  # window too short: no rate to plot
            continue
        lines.setdefault(f"{row['server']} {row['transport']}", []).append(row)
    return lines


def draw(results: dict[str, Any], path: Path) -> None:
    names = list(results["models"])
    figure, axes = plt.subplots(len(names), 2, figsize=(13, 5 * len(names)), squeeze=False)
    for (throughput, latency), model in zip(axes, names, strict=True):
        rows = results.get("ceilings", []) if model == "mlp" else []
        rows = rows + results["models"][model]["series"]
        for label, points in _lines(rows).items():
            points.sort(key=lambda r: r["concurrency"])
            x = [r["concurrency"] for r in points]
            throughput.plot(x, [r["requests_per_second"] for r in points], marker="o",
                            label=label)
            (p50,) = latency.plot(x, [r["p50_ms"] for r in points], marker="o", label=label)
            latency.plot(x, [r["p99_ms"] for r in points], marker="x", linestyle="--",
                         color=p50.get_color())
        inproc = results["models"][model]["inprocess"]
        batch1 = max(r["rows_per_second"] for r in inproc["rows"] if r["batch"] == 1)
        throughput.axhline(batch1, color="grey", linestyle=":", label="in-process batch 1")
        if model != "mlp":  # the MLP's best is a batch of 1024: off the chart, no yardstick
            throughput.axhline(inproc["best"]["rows_per_second"], color="black", linestyle=":",
                               label="in-process best rows/s")
        throughput.set(title=f"{model}: throughput", xlabel="concurrent clients",
                       ylabel="requests/s", xscale="log", yscale="log")
        latency.set(title=f"{model}: latency (p50 solid, p99 dashed)",
                    xlabel="concurrent clients", ylabel="ms", xscale="log", yscale="log")
        for ax in (throughput, latency):
            ticks = sorted({r["concurrency"] for r in rows})
            ax.set_xticks(ticks, [str(c) for c in ticks])
            ax.grid(True, which="both", alpha=0.3)
        throughput.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
