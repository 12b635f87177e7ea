"""Which accelerators the process may use, and a loud line when they are missing.

A pod that requests `nvidia.com/gpu` gets `NVIDIA_VISIBLE_DEVICES` from the device plugin; if
TensorFlow then sees no GPU (a CPU-only TensorFlow, no driver, no CUDA libraries) the server
would run on CPU with nothing said, at a fraction of the speed its users pay for.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import tensorflow as tf

log = logging.getLogger(__name__)

_NO_DEVICES = frozenset(("", "void", "none"))


def requested_gpus(environ: Mapping[str, str]) -> str | None:
    """The GPUs the container runtime was asked to expose, or None."""
    visible = environ.get("NVIDIA_VISIBLE_DEVICES", "").strip()
    return None if visible.lower() in _NO_DEVICES else visible


def check_gpus(environ: Mapping[str, str] = os.environ) -> int:
    """Log the GPUs TensorFlow sees; an error when GPUs were requested and none is visible.
    Returns how many it sees."""
    seen = len(tf.config.list_physical_devices("GPU"))
    requested = requested_gpus(environ)
    if requested is not None and seen == 0:
        log.error("GPUs were requested (NVIDIA_VISIBLE_DEVICES=%s) but TensorFlow sees none "
                  "(built with CUDA: %s): serving on CPU. Use the GPU server image, and check "
                  "the node's driver and the NVIDIA container runtime.", requested,
                  tf.test.is_built_with_cuda())
    elif seen:
        log.info("TensorFlow sees %d GPU(s)", seen)
    return seen
