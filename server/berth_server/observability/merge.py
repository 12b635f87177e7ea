"""The metrics of several worker processes as one scrape answer.

Each worker sends its families as plain JSON-ready lists (`to_wire`); `merge` adds them up by
sample name and labels, as if one process had counted everything: counters, and every bucket,
sum and count of a histogram. A gauge merges by what it holds: a quantity adds up (requests
queued in all workers), a version's life-cycle state (`metrics.STATE_GAUGES`) is the one every
worker has reached (`model_status.combined_state`; a worker without the version has not
started it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.metrics_core import Metric

from berth_server.core import model_status
from berth_server.core.servable_state import State
from berth_server.observability import exposition, metrics

# [family name, type, [[sample name, {label: value}, value], ...]]
WireFamily = list[Any]
_SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def to_wire(families: Iterable[Metric]) -> list[WireFamily]:
    return [[family.name, family.type, [[sample.name, sample.labels, sample.value]
                                        for sample in exposition.rendered_samples(family)]]
            for family in families]


def merge(parts: Sequence[list[WireFamily]]) -> list[Metric]:
    """One family per name, in the order first seen; each sample merged over `parts`."""
    families: dict[str, tuple[str, dict[_SampleKey, list[float]]]] = {}
    for part in parts:
        for name, kind, samples in part:
            _, values = families.setdefault(name, (kind, {}))
            for sample_name, labels, value in samples:
                values.setdefault((sample_name, tuple(labels.items())), []).append(value)
    merged = []
    for name, (kind, values) in families.items():
        family = Metric(name, "", kind)
        state = kind == "gauge" and name in metrics.STATE_GAUGES
        for (sample_name, labels), found in values.items():
            family.add_sample(sample_name, dict(labels),
                              _state(found, len(parts)) if state else sum(found))
        merged.append(family)
    return merged


def _state(values: list[float], workers: int) -> float:
    states = [State(int(value)) for value in values] + [State.START] * (workers - len(values))
    return float(model_status.combined_state(states))
