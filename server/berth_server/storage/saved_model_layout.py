"""Whether a version's files are all there, judged from their names and sizes alone.

One rule for a directory on disk and for a prefix in a bucket: the graph (`saved_model.pb` or
`.pbtxt`) is present and not empty, and every variables shard that `variables.index` implies
exists; or the version holds a TF Lite model (`model.tflite`, not empty), served with
`--prefer_tflite_model`. A version still being copied or uploaded fails it and is not loaded
half-way (TF Serving loads whatever it finds, issue #1086).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

GRAPH_FILES = ("saved_model.pb", "saved_model.pbtxt")
TFLITE_FILE = "model.tflite"
_SHARD = re.compile(r"^variables\.data-(\d+)-of-(\d+)$")


def is_complete(sizes: Mapping[str, int]) -> bool:
    """`sizes` maps paths relative to the version (`variables/variables.index`) to bytes."""
    if sizes.get(TFLITE_FILE, 0) > 0:
        return True
    if not any(sizes.get(name, 0) > 0 for name in GRAPH_FILES):
        return False
    names = {path.removeprefix("variables/") for path in sizes if path.startswith("variables/")}
    shards = [m for m in map(_SHARD.match, names) if m]
    if "variables.index" not in names:
        return not shards
    if not shards:
        return False
    total = int(shards[0].group(2))
    return all(f"variables.data-{i:05d}-of-{total:05d}" in names for i in range(total))
