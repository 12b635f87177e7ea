"""One loaded SavedModel version, and the cheapest way to run its signatures.

Every version gets its own graph and session, as in TF Serving. This serves TF1 builder exports
and TF2 `tf.saved_model.save` exports alike, honours the session flags (thread pools, GPU memory),
and runs a signature through a cached callable made from CallableOptions, which skips the
per-call feed and fetch parsing of `Session.run` and, like TF Serving's C++ session, does not
check fed shapes against the static shapes of placeholders (a half_plus_two `x` of shape
[-1,1] takes `[1.0, 2.0, 5.0]`). See the README for the measured costs of the alternatives.

Some TF2 exports keep variables the session loader cannot restore: a Keras 3 model held by a
plain `tf.Module` and saved with `tf.saved_model.save` tracks them only through the object
graph, so after the session restore the signatures read variables that were never set (TF
Serving then fails every request with `Could not find variable ...`, tensorflow/serving#2250).
Such a version is detected at load, by asking the session whether every resource variable is
initialised, and served with TensorFlow's object loader instead: the same signatures, slower
per call (the README has the numbers), TensorFlow's global thread pools.

A version may be pinned to one device (`--model_device_placement`): its graph is imported
without the export's own device fields, under that device's scope, so every op lands there;
an object-loader version is loaded and run under the same scope.

Thread-safety: `run` may be called from many threads at once; `close` only once nothing runs.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2

from berth_server import errors
from berth_server.servables import devices

log = logging.getLogger(__name__)

Outputs = dict[str, np.ndarray]


def session_config(*, intra_op: int, inter_op: int, gpu_memory_fraction: float,
                   ) -> config_pb2.ConfigProto:
    """A ConfigProto from TF Serving's session flags; GPU memory grows on demand by default."""
    return config_pb2.ConfigProto(intra_op_parallelism_threads=intra_op,
                                  inter_op_parallelism_threads=inter_op,
                                  allow_soft_placement=True,
                                  gpu_options=devices.gpu_options(gpu_memory_fraction))


def tf_error(error: tf.errors.OpError) -> errors.ServingError:
    """A TensorFlow runtime error as a client-facing error with the same canonical code."""
    return errors.ServingError(errors.Code(error.error_code), error.message)


class SavedModel:
    """A SavedModel version loaded into its own session."""

    def __init__(self, path: Path, *, tags: Sequence[str], config: config_pb2.ConfigProto,
                 device: str | None = None) -> None:
        """`device`: where every op runs (canonical, `/device:GPU:1`); None keeps the export's
        own placement, as TF Serving does."""
        self.path = path
        self._device = device
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=config)
        try:
            if device is not None:
                devices.check_placement(device, [d.name for d in self._session.list_devices()],
                                        what=str(path))
            # clear_devices is passed on to import_meta_graph: the import applies the scope to
            # each op, but an op's own device from the export would win over it.
            with self._graph.as_default(), self._placed():
                self.meta_graph: meta_graph_pb2.MetaGraphDef = tf.compat.v1.saved_model.load(
                    self._session, list(tags), str(path), clear_devices=device is not None)
        except Exception:
            self._session.close()
            raise
        self.signatures = dict(self.meta_graph.signature_def)
        self._callables: dict[tuple[str, tuple[str, ...], tuple[str, ...]], Callable[..., Any]] = {}
        self._callables_lock = threading.Lock()
        self._object_graph: Any = None
        unset = self._uninitialized_variables()
        if unset:
            log.warning("%s: %d variables were not restored by the session loader (e.g. %s); "
                        "serving this version with TensorFlow's object loader", path,
                        len(unset), unset[0])
            self._session.close()
            if device is not None:  # the eager context's devices, not the session's
                devices.check_placement(
                    device, [d.name for d in tf.config.list_logical_devices()], what=str(path))
            with self._placed():
                self._object_graph = tf.saved_model.load(str(path), tags=list(tags))
            still_unset = self._unset_object_graph_variables()
            if still_unset:  # served, every request would fail (or answer nothing)
                raise errors.failed_precondition(
                    f"The signatures of {path} read {len(still_unset)} variables that neither "
                    f"the session loader nor the object loader restored (e.g. {still_unset[0]}); "
                    "the version cannot serve")

    def _placed(self) -> contextlib.AbstractContextManager[object]:
        return tf.device(self._device) if self._device else contextlib.nullcontext()

    def _uninitialized_variables(self) -> list[str]:
        """Resource variables that a signature reads and the restore left unset."""
        handles = self._variables_read()
        if not handles:
            return []
        with self._graph.as_default(), self._placed():
            checks = [tf.raw_ops.VarIsInitializedOp(resource=op.outputs[0]) for op in handles]
        done = self._session.run(checks)
        return [op.get_attr("shared_name").decode() or op.name
                for op, initialized in zip(handles, done, strict=True) if not initialized]

    def _unset_object_graph_variables(self) -> list[str]:
        """Variables the object loader's signatures read and left unset (a TF1 export whose
        checkpoint lacks them, say)."""
        unset = set()
        for function in self._object_graph.signatures.values():
            for handle, placeholder in function.graph.captures:
                read = any(consumer.type == "ReadVariableOp"
                           for consumer in placeholder.consumers())
                if read and not tf.raw_ops.VarIsInitializedOp(resource=handle):
                    unset.add(placeholder.name.split(":")[0])
        return sorted(unset)

    def _variables_read(self) -> list[tf.Operation]:
        """The VarHandleOps the signatures' outputs depend on (an export may hold others)."""
        elements = [self._graph.as_graph_element(info.name)  # an init op's output is an op
                    for signature in self.signatures.values()
                    for info in signature.outputs.values()]
        pending = [getattr(element, "op", element) for element in elements]
        seen: set[tf.Operation] = set()
        while pending:
            op = pending.pop()
            if op in seen:
                continue
            seen.add(op)
            pending.extend(tensor.op for tensor in op.inputs)
            pending.extend(op.control_inputs)
        return sorted((op for op in seen if op.type == "VarHandleOp"), key=lambda op: op.name)

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray],
            output_keys: Sequence[str]) -> Outputs:
        """Run a signature on inputs keyed by alias; returns outputs keyed by alias."""
        if self._object_graph is not None:
            return self._run_object_graph(signature_name, inputs, output_keys)
        input_keys = tuple(inputs)
        try:  # building the callable can fail as running it can (an init-op signature, say)
            fn = self._callable(signature_name, input_keys, tuple(output_keys))
            values = fn(*(inputs[k] for k in input_keys))
        except tf.errors.OpError as error:
            raise tf_error(error) from None
        return {key: _as_array(value) for key, value in zip(output_keys, values, strict=True)}

    def _callable(self, signature_name: str, input_keys: tuple[str, ...],
                  output_keys: tuple[str, ...]) -> Callable[..., Any]:
        key = (signature_name, input_keys, output_keys)
        fn = self._callables.get(key)
        if fn is None:
            signature = self.signatures[signature_name]
            options = config_pb2.CallableOptions(
                feed=[signature.inputs[k].name for k in input_keys],
                fetch=[signature.outputs[k].name for k in output_keys])
            with self._callables_lock:
                fn = self._session._make_callable_from_options(options)
                self._callables[key] = fn
        return fn

    def _run_object_graph(self, signature_name: str, inputs: Mapping[str, np.ndarray],
                          output_keys: Sequence[str]) -> Outputs:
        function = self._object_graph.signatures[signature_name]
        try:
            with self._placed():
                results = function(**{alias: tf.constant(value)
                                      for alias, value in inputs.items()})
        except tf.errors.OpError as error:
            raise tf_error(error) from None
        except (TypeError, ValueError) as error:  # inputs that do not fit the input signature
            raise errors.invalid_argument(str(error)) from None
        return {key: _as_array(results[key].numpy()) for key in output_keys}

    def close(self) -> None:
        self._session.close()
        self._object_graph = None


def _as_array(value: Any) -> np.ndarray:
    """TensorFlow returns a rank-0 string as bare `bytes`; every output is an array here (an
    object array keeps the bytes exactly, trailing NULs included)."""
    return value if isinstance(value, np.ndarray) else np.array(value, dtype=object)
