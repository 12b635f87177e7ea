"""The Runner that sends every plan through the shared batch scheduler (`--enable_batching`).

One queue per (loaded version, signature, input aliases, output aliases, non-batch shapes):
the version is the servable object itself, so batches never mix versions or signatures, and
tasks whose non-batch dimensions differ are padded (pad_variable_length_inputs) or batched
apart — never mixed. The per-request work on the event loop is a size check, a key, a future
and a short locked enqueue; merging, running and splitting happen on the batch threads.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from typing import Any

from berth_server.batching import parameters, tensors
from berth_server.batching.scheduler import BatchingRecorder, BatchScheduler, Clock
from berth_server.batching.tensors import Tensors
from berth_server.core.aspired_versions_manager import Lease
from berth_server.options import ServerOptions
from berth_server.servables import inference
from berth_server.servables.servable import Servable

_QueueKey = tuple[Servable, str, tuple[str, ...], tuple[str, ...], tuple[object, ...]]


def _execute(key: _QueueKey, inputs: dict[str, object]) -> Tensors:
    servable, signature_name, _, output_aliases, _ = key
    return servable.run(signature_name, inputs, output_aliases)  # type: ignore[arg-type]


class BatchingRunner:
    """Runs plans in batches; `close()` stops the batch threads (pending requests fail).

    With `per_model`, a version's `batching_params.pbtxt` (read once, on its first request)
    sets the options of its queues; the threads stay shared.
    """

    def __init__(self, params: parameters.BatchingParameters, *,
                 clock: Clock | None = None, metrics: BatchingRecorder | None = None,
                 per_model: bool = False) -> None:
        self.scheduler = (BatchScheduler(params, _execute, metrics=metrics) if clock is None
                          else BatchScheduler(params, _execute, clock=clock, metrics=metrics))
        self._params = params
        self._per_model = per_model
        self._model_params: weakref.WeakKeyDictionary[
            Any, parameters.BatchingParameters] = weakref.WeakKeyDictionary()
        self._clock = self.scheduler.clock

    async def __call__(self, lease: Lease[Servable], plan: inference.Plan, timeout_ms: int,
                       ) -> inference.Outputs:
        servable = lease.servable
        params = self._params_for(servable) if self._per_model else self._params
        inputs = plan.inputs
        size = tensors.task_size(inputs)
        names = tuple(sorted(inputs))
        key: _QueueKey = (servable, plan.signature_name, names, tuple(plan.output_aliases),
                          tensors.shape_key(
                              inputs, names, pad_variable_length=params.pad_variable_length_inputs))
        deadline = self._clock() + timeout_ms / 1000 if timeout_ms > 0 else math.inf
        future: asyncio.Future[inference.Outputs] = asyncio.get_running_loop().create_future()
        self.scheduler.schedule(key, inputs, size, deadline, future, params)
        return await future

    def _params_for(self, servable: Servable) -> parameters.BatchingParameters:
        params = self._model_params.get(servable)
        if params is None:
            params = parameters.for_model(servable.path, self._params)
            self._model_params[servable] = params
        return params

    def close(self) -> None:
        self.scheduler.close()


def gpu_count() -> int:
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def from_options(opts: ServerOptions, *,
                 metrics: BatchingRecorder | None = None) -> BatchingRunner | None:
    """The server's BatchingRunner when --enable_batching; a bad parameters file raises."""
    if not opts.enable_batching:
        return None
    threads = parameters.default_num_batch_threads(gpu_count())
    return BatchingRunner(parameters.for_server(opts.batching_parameters_file,
                                                         default_threads=threads),
                          metrics=metrics, per_model=opts.enable_per_model_batching_parameters)
