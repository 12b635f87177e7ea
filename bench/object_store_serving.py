"""A 200 MB model served from S3: time to AVAILABLE from a bucket, cold and warm cache, vs disk.

    python -m bench.object_store_serving

Needs `make store-emulators` (moto's S3 server). Exports a SavedModel whose variables hold
200 MB, uploads it to moto on loopback, then starts `berth-server --model_base_path=s3://...`
three ways and times each start to the version's AVAILABLE status: from local disk (the
baseline), from the bucket with an empty `--model_cache_dir`, and again with the cache the
first start left (nothing to download). The download line of the server's log gives MB/s.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import processes  # noqa: E402
from store_emulators import S3Emulator  # noqa: E402

VARIABLE_FLOATS = 50 * 2**20  # 200 MB of float32
_FETCHED = re.compile(r"Fetched .*")


def _export(path: Path) -> None:
    module = tf.Module()
    module.v = tf.Variable(np.ones(VARIABLE_FLOATS, np.float32))
    module.serve = tf.function(lambda x: {"y": x + module.v[0]},
                               input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def _time_to_available(base_path: str, cache: Path, env: dict[str, str],
                       log: Path) -> tuple[float, str]:
    """Seconds from the server's start to its model's AVAILABLE; the fetch line of its log."""
    grpc_port, rest_port = processes.free_port(), processes.free_port()
    started = time.monotonic()
    server = processes.start(
        [str(Path(sys.executable).parent / "berth-server"), f"--port={grpc_port}",
         f"--rest_api_port={rest_port}", "--model_name=big", f"--model_base_path={base_path}",
         f"--model_cache_dir={cache}"], name="berth", log_path=log, env=env,
        die_with_parent=True)
    try:
        server.wait_until(lambda: processes.port_accepts(rest_port), timeout_seconds=600,
                          interval_seconds=0.05, message="the server's REST port")
        elapsed = time.monotonic() - started
    finally:
        server.stop(grace_seconds=30)
    fetched = _FETCHED.search(log.read_text())
    return elapsed, fetched.group(0) if fetched else "no download"


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        _export(work / "local" / "big" / "1")
        emulator = S3Emulator.start(work)
        try:
            emulator.upload(work / "local" / "big" / "1", "big/1")
            env = {**os.environ, **emulator.env}
            rows = [("local disk", *_time_to_available(str(work / "local" / "big"),
                                                        work / "unused-cache", env,
                                                        work / "local.log"))]
            for label in ("S3, empty cache", "S3, warm cache"):
                rows.append((label, *_time_to_available(emulator.uri("big"), work / "cache", env,
                                                        work / f"{label[4:9]}.log")))
        finally:
            emulator.stop()
    print("| base path | seconds to AVAILABLE | download |")
    print("|---|---|---|")
    for label, seconds, fetched in rows:
        print(f"| {label} | {seconds:.1f} | {fetched} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
