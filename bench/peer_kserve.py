"""The peer: KServe's ModelServer with a small custom predictor for a SavedModel (v1 protocol).

    PEER_VENV/bin/python bench/peer_kserve.py --model_dir=DIR --model_name=NAME \
        --http_port=PORT --grpc_port=PORT [KServe's other ModelServer flags]

Runs in its own virtualenv (`bench/setup.sh` builds it under ~/.cache/berth/peers/), never in
Berth's: it imports nothing from this repository. KServe's v1 REST protocol takes TF Serving's
``{"instances": [...]}`` bodies on ``/v1/models/NAME:predict``, so wrk replays the same request
to it and to Berth. The predictor is written the way KServe's own examples write one: a sync
``predict`` that turns the instances into an array and calls the signature. Per-request
logging is off on both sides (``--enable_latency_logging=false``; access and timing
loggers at WARNING).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import kserve
import numpy as np
import tensorflow as tf


class SavedModelPredictor(kserve.Model):
    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.signature: Any = None
        self.load()

    def load(self) -> bool:
        self.signature = tf.saved_model.load(self.model_dir).signatures["serving_default"]
        self.ready = True
        return self.ready

    def predict(self, payload: dict[str, Any], headers: dict[str, str] | None = None
                ) -> dict[str, Any]:
        x = np.asarray(payload["instances"], dtype=np.float32)
        y = self.signature(x=tf.constant(x))["y"].numpy()
        return {"predictions": y.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True)
    args, _ = parser.parse_known_args()
    model = SavedModelPredictor(args.model_name, args.model_dir)
    server = kserve.ModelServer()
    # Berth writes no access log by default; neither should the peer it is compared with.
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    main()
