"""Which accelerators the process may use, how their memory is shared, and where a model runs.

A pod that requests `nvidia.com/gpu` gets `NVIDIA_VISIBLE_DEVICES` from the device plugin; if
TensorFlow then sees no GPU (a CPU-only TensorFlow, no driver, no CUDA libraries) the server
would run on CPU with nothing said, at a fraction of the speed its users pay for.

GPU memory: TensorFlow keeps one allocator per GPU for the whole process, made by whichever
session or eager context first initialises that GPU; the GPUOptions of every later one are
ignored (`GPUProcessState::GetGPUAllocator` creates it only while none exists). Sessions get
`gpu_options` below, but the eager context that runs the object loader's functions has its own
settings, whose default takes nearly all of a GPU's memory. `configure_gpu_memory` makes both
agree with `--per_process_gpu_memory_fraction` before any model loads.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

from berth_server import errors

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


def gpu_options(gpu_memory_fraction: float) -> config_pb2.GPUOptions:
    """TF Serving's GPU memory flag: a fixed share of each GPU, or (0) growth on demand."""
    if gpu_memory_fraction > 0:
        return config_pb2.GPUOptions(per_process_gpu_memory_fraction=gpu_memory_fraction)
    return config_pb2.GPUOptions(allow_growth=True)


def configure_gpu_memory(gpu_memory_fraction: float) -> None:
    """Set up every GPU's process-wide allocator as the flag says; nothing without GPUs.

    Must run before anything initialises a GPU. Growth is set on the eager context (sessions
    ask for it themselves); a fraction cannot be given to the eager context, so a session with
    that fraction initialises the GPUs first and every later session and eager call shares
    the allocators it made.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return
    growth = gpu_memory_fraction <= 0
    try:
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, growth)
    except RuntimeError as error:  # "Physical devices cannot be modified after being initialized"
        log.warning("GPU memory could not be set up (%s): the GPUs were initialised before "
                    "the server started, with the settings of whatever did it", error)
        return
    if growth:
        log.info("GPU memory grows on demand on %d GPU(s)", len(gpus))
        return
    options = gpu_options(gpu_memory_fraction)
    with tf.compat.v1.Session(graph=tf.Graph(),
                              config=config_pb2.ConfigProto(gpu_options=options)) as session:
        limits = {local_name(d.name): d.memory_limit_bytes >> 20 for d in session.list_devices()
                  if tf.DeviceSpec.from_string(d.name).device_type == "GPU"}
    log.info("GPU memory: %.0f%% of each GPU for this process (MiB: %s)",
             100 * gpu_memory_fraction, limits)


def local_name(device: str) -> str:
    """`/job:localhost/replica:0/task:0/device:GPU:1` (as sessions list it) → `/device:GPU:1`."""
    spec = tf.DeviceSpec.from_string(device)
    return f"/device:{spec.device_type}:{spec.device_index}"


def check_placement(device: str, available: list[str], *, what: str) -> None:
    """Fail when `device` (canonical, `/device:GPU:1`) is not among `available`.

    Loads allow soft placement (as TF Serving does), so ops pinned to a device that does not
    exist would run elsewhere with nothing said.
    """
    names = sorted({local_name(name) for name in available})
    if device not in names:
        raise errors.invalid_argument(
            f"--model_device_placement puts {what} on {device}, which this server does not "
            f"have; its devices: {', '.join(names)}")
