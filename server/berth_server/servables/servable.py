"""What the service and batching layers need of a loaded version, whatever format it came in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2

Outputs = dict[str, np.ndarray]


class Servable(Protocol):
    """A SavedModel (`saved_model.SavedModel`) or a TF Lite model (`tflite_model.TfLiteModel`)."""

    path: Path
    signatures: dict[str, meta_graph_pb2.SignatureDef]

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray],
            output_keys: Sequence[str]) -> Outputs:
        """Run a signature on inputs keyed by alias; returns outputs keyed by alias."""

    def close(self) -> None: ...
