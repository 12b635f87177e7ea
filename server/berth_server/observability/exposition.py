"""Metrics rendered exactly as TF Serving's Prometheus exporter writes them.

TF Serving's format (`util/prometheus_exporter.cc`): only `# TYPE` lines (no `# HELP`); a
counter is printed under its own name (no `_total`, no `_created`); counters and gauges print
int64 values; histogram bounds and sums use absl's six-significant-digit form (`10`, `18`,
`32.4`, `58.32`, `1.45558e+09`) and the last bucket is `+Inf`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

CONTENT_TYPE = b"text/plain; charset=utf-8"
_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def render(registry: CollectorRegistry) -> bytes:
    return render_families(registry.collect())


def render_families(families: Iterable[Metric]) -> bytes:
    lines: list[str] = []
    for family in families:
        kind = family.type if family.type in _SUFFIXES else "untyped"
        lines.append(f"# TYPE {family.name} {kind}")
        lines += [_sample_line(family.name, kind, sample) for sample in rendered_samples(family)]
    lines.append("")
    return "\n".join(lines).encode()


def rendered_samples(family: Metric) -> list[Sample]:
    """The samples TF Serving's format prints (not prometheus-client's `_created`, say)."""
    kind = family.type if family.type in _SUFFIXES else "untyped"
    wanted = {family.name + suffix for suffix in _SUFFIXES.get(kind, ("",))}
    return [sample for sample in family.samples if sample.name in wanted]


def _sample_line(family_name: str, kind: str, sample: Sample) -> str:
    if kind == "counter":
        name, value = family_name, str(int(sample.value))
    elif sample.name.endswith("_sum"):
        name, value = sample.name, _number(sample.value)
    else:
        name, value = sample.name, str(int(sample.value))
    return f"{name}{_labels(sample.labels)} {value}"


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    parts = []
    for key, value in labels.items():
        if key == "le":
            value = "+Inf" if math.isinf(float(value)) else _number(float(value))
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{key}="{escaped}"')
    return "{" + ",".join(parts) + "}"


def _number(value: float) -> str:
    """absl::StrCat's double form: %g with six significant digits."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:g}"
