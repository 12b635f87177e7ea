"""What several workers answer as one: version states, GetModelStatus rows and metrics."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from berth_server import errors
from berth_server.core import model_status
from berth_server.core.servable_state import ServableId, State, VersionStatus
from berth_server.observability import exposition, merge
from berth_server.observability.metrics import Metrics

S = State


@pytest.mark.parametrize("states, combined", [
    ([S.AVAILABLE, S.AVAILABLE], S.AVAILABLE),
    ([S.AVAILABLE, S.LOADING], S.LOADING),
    ([S.START, S.AVAILABLE, S.LOADING], S.START),
    ([S.AVAILABLE, S.UNLOADING], S.UNLOADING),
    ([S.END, S.AVAILABLE], S.UNLOADING),  # one worker has let it go: it is on its way out
    ([S.END, S.UNLOADING], S.UNLOADING),
    ([S.END, S.END], S.END),
])
def test_a_version_is_as_far_along_as_every_worker_has_taken_it(
        states: list[State], combined: State) -> None:
    assert model_status.combined_state(states) == combined


def test_rows_combine_per_version_and_a_version_one_worker_lacks_has_not_started() -> None:
    one = [VersionStatus(1, S.AVAILABLE), VersionStatus(2, S.AVAILABLE)]
    other = [VersionStatus(1, S.AVAILABLE)]
    assert model_status.combined([one, other]) == [VersionStatus(1, S.AVAILABLE),
                                                   VersionStatus(2, S.START)]


def test_a_failed_load_in_one_worker_is_the_versions_status() -> None:
    failed = VersionStatus(3, S.END, errors.ServingError(errors.Code.UNKNOWN, "bad file"))
    rows = model_status.combined([[VersionStatus(3, S.AVAILABLE)], [failed]])
    assert rows == [failed]
    response = model_status.model_status(rows, "m", 3)
    assert response.model_version_status[0].status.error_message == "bad file"


def test_no_rows_anywhere_is_tf_servings_not_found() -> None:
    with pytest.raises(errors.ServingError) as raised:
        model_status.model_status(model_status.combined([[], []]), "m", None)
    assert raised.value.message == "Could not find any versions of model m"


def record(metrics: Metrics, requests: int) -> None:
    for index in range(requests):
        metrics.record_request("m", "OK", "predict", "REST", 40.0 * (index + 1))
        metrics.record_runtime("m", "Predict", 25.0)
    metrics.record_request("m", "NOT_FOUND", "predict", "REST", 1.0)
    metrics.record_warmup("/models/m/1", "OK", 1500.0, 2)
    metrics.batching.record_batch(4, 1)
    metrics.batching.record_queuing_latency(300.0)


def over_the_wire(metrics: Metrics) -> list[merge.WireFamily]:
    wire: list[merge.WireFamily] = orjson.loads(orjson.dumps(
        merge.to_wire(metrics.registry.collect())))
    return wire


def test_merged_metrics_read_as_if_one_process_had_counted_every_request() -> None:
    first, second, alone = Metrics(), Metrics(), Metrics()
    record(first, 3)
    record(second, 5)
    record(alone, 3)
    record(alone, 5)
    version = ServableId("m", 1, Path("/models/m/1"))
    for metrics in (first, second, alone):
        metrics.on_state_change(version, S.AVAILABLE)
        metrics.queue_depth["m"] = 2
    alone.queue_depth["m"] = 4  # requests waiting in both workers
    merged = merge.merge([over_the_wire(first), over_the_wire(second)])
    assert exposition.render_families(merged) == exposition.render(alone.registry)


def test_a_version_state_gauge_merges_to_the_state_every_worker_has_reached() -> None:
    loading, available = Metrics(), Metrics()
    version = ServableId("m", 1, Path("/models/m/1"))
    loading.on_state_change(version, S.LOADING)
    available.on_state_change(version, S.AVAILABLE)
    text = exposition.render_families(
        merge.merge([over_the_wire(loading), over_the_wire(available)])).decode()
    assert ':berth:serving:model_version_state{model_name="m",version="1"} 20' in text
    unseen = exposition.render_families(
        merge.merge([over_the_wire(available), over_the_wire(Metrics())])).decode()
    assert ':berth:serving:model_version_state{model_name="m",version="1"} 10' in unseen
