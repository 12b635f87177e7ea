"""One real request before each series: proves the server answers it and sizes a good answer.

The load tools replay bytes blindly; a misconfigured series would otherwise benchmark error
responses. The gRPC probe sends the pre-encoded PredictRequest as raw bytes through grpcio (the
orchestrator never imports TensorFlow's protos), and its answer's length tells `bench.load` how
many DATA bytes one good gRPC answer carries.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import grpc

from bench import load


def grpc_response_bytes(port: int, frame_path: Path) -> int:
    """Send the framed request once; return the DATA bytes of its answer (prefix included)."""
    message = frame_path.read_bytes()[5:]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[
            ("grpc.max_receive_message_length", -1),
            ("grpc.max_send_message_length", -1)]) as channel:
        call = channel.unary_unary(load.GRPC_PREDICT_PATH)
        answer: bytes = call(message, timeout=60)
    return len(answer) + 5


def rest_predictions(port: int, path: str, body_path: Path) -> int:
    """POST the REST body once; return how many predictions came back (raises on an error)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body_path.read_bytes(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    if "predictions" not in answer:
        raise RuntimeError(f"no predictions in the answer: {str(answer)[:200]}")
    return len(answer["predictions"])
