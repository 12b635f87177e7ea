"""The benchmark's models as plain data: what the orchestrator needs without importing TensorFlow.

The orchestrator never imports TensorFlow (it would cost it seconds and hundreds of MB on a
2-core machine that also runs the servers); everything that needs TF runs in a worker process
(`bench.export`, `bench.inprocess`), and this module is what both sides agree on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One benchmarked model: its shape, its in-process batch sweep and Berth's batching setup."""

    name: str
    row_shape: tuple[int, ...]
    """One request's input shape without the batch dimension (requests carry one row)."""
    batch_sizes: tuple[int, ...]
    """Batch sizes the in-process limit tries; the best rows/s among them is "best"."""
    batching_parameters: str
    """TF Serving BatchingParameters text for the batching-on rows."""
    json_decimals: int
    """Decimals of the input values in the REST body: keeps MobileNetV2's JSON near 1 MB."""

    def version_dir(self, models_dir: Path) -> Path:
        return models_dir / self.name / "1"


# One batch thread: the server has one core, so a second thread would only add switching.
# A short timeout: under closed-loop load batches fill while the previous one runs anyway.
MLP = ModelSpec(
    name="mlp",
    row_shape=(10,),
    batch_sizes=(1, 8, 32, 128, 512, 1024),
    batching_parameters=(
        "max_batch_size { value: 128 }\n"
        "batch_timeout_micros { value: 200 }\n"
        "max_enqueued_batches { value: 100 }\n"
        "num_batch_threads { value: 1 }\n"
    ),
    json_decimals=4,
)

MOBILENET_V2 = ModelSpec(
    name="mobilenet_v2",
    row_shape=(224, 224, 3),
    batch_sizes=(1, 2, 4, 8, 16, 32),
    batching_parameters=(
        "max_batch_size { value: 32 }\n"
        "batch_timeout_micros { value: 2000 }\n"
        "max_enqueued_batches { value: 100 }\n"
        "num_batch_threads { value: 1 }\n"
    ),
    json_decimals=3,
)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (MLP, MOBILENET_V2)}


@dataclasses.dataclass(frozen=True)
class Payloads:
    """Pre-encoded batch-1 requests, written once by `bench.export` and replayed by the tools."""

    grpc_frame: Path
    """A gRPC length-prefixed PredictRequest (what h2load sends as the request body)."""
    rest_body: Path
    """The TF Serving REST predict body in row format: {"instances": [row]}."""

    @classmethod
    def under(cls, models_dir: Path, name: str) -> Payloads:
        return cls(grpc_frame=models_dir / f"{name}.grpc.bin",
                   rest_body=models_dir / f"{name}.rest.json")
