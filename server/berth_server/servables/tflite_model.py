"""A version served from its `model.tflite` by TensorFlow's TF Lite interpreter
(`--prefer_tflite_model`), through the same signatures, APIs, batching and metrics.

Its signatures are found as TF Serving's TfLiteSession finds them, then as TF Lite knows them:
1. the SignatureDefs TF Serving's tools store in the model's `signature_defs_metadata` (a
   flexbuffer map of key → serialized SignatureDef), bound to tensors by name;
2. else the model's own TF Lite signatures (signature runners, as current converters write);
3. else one `serving_default` whose inputs and outputs are the model's tensors by name.
A call resizes the inputs to what it was sent (the batch dimension, as TF Serving does). One
interpreter per version runs one call at a time, as TF Serving's default of one interpreter per
pool; batching (`--enable_batching`) joins calls into one.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from flatbuffers import flexbuffers
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.lite.tools import flatbuffer_utils

from berth_server import errors
from berth_server.servables.servable import Outputs
from berth_server.storage import saved_model_layout

SIGNATURE_DEFS_METADATA = "signature_defs_metadata"
_DEFAULT_KEY = "serving_default"
_PREDICT = "tensorflow/serving/predict"


class TfLiteModel:
    def __init__(self, path: Path, *, num_threads: int | None = None) -> None:
        self.path = path
        content = (path / saved_model_layout.TFLITE_FILE).read_bytes()
        with warnings.catch_warnings():  # tf.lite.Interpreter's notice that LiteRT replaces it
            warnings.simplefilter("ignore")
            self._interpreter = tf.lite.Interpreter(model_content=content,
                                                    num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._lock = threading.Lock()
        tensors = {detail["name"]: detail["index"]
                   for detail in self._interpreter.get_tensor_details()}
        stored = _stored_signature_defs(content)
        self._runners: dict[str, Any] = {}
        if stored:
            self.signatures = stored
            self._indexes = {key: _bind(signature, tensors) for key, signature in stored.items()}
        elif self._interpreter.get_signature_list():
            self.signatures = {}
            for key in self._interpreter.get_signature_list():
                runner = self._interpreter.get_signature_runner(key)
                self._runners[key] = runner
                self.signatures[key] = _signature_def(runner.get_input_details(),
                                                      runner.get_output_details())
            self._indexes = {}
        else:
            inputs = {d["name"]: d for d in self._interpreter.get_input_details()}
            outputs = {d["name"]: d for d in self._interpreter.get_output_details()}
            self.signatures = {_DEFAULT_KEY: _signature_def(inputs, outputs)}
            self._indexes = {_DEFAULT_KEY: _bind(self.signatures[_DEFAULT_KEY], tensors)}

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray],
            output_keys: Sequence[str]) -> Outputs:
        """Run a signature on inputs keyed by alias; returns outputs keyed by alias."""
        try:
            with self._lock:
                runner = self._runners.get(signature_name)
                if runner is not None:
                    results = runner(**inputs)
                    return {key: np.array(results[key]) for key in output_keys}
                return self._run_tensors(self._indexes[signature_name], inputs, output_keys)
        except ValueError as error:  # the interpreter's word for bad shapes and types
            raise errors.invalid_argument(str(error)) from None
        except RuntimeError as error:  # a kernel that failed while it ran
            raise errors.ServingError(errors.Code.INTERNAL, str(error)) from None

    def _run_tensors(self, indexes: tuple[dict[str, int], dict[str, int]],
                     inputs: Mapping[str, np.ndarray], output_keys: Sequence[str]) -> Outputs:
        interpreter = self._interpreter
        input_indexes, output_indexes = indexes
        resized = False
        for alias, value in inputs.items():
            index = input_indexes[alias]
            if tuple(interpreter.get_tensor(index).shape) != value.shape:
                interpreter.resize_tensor_input(index, value.shape)
                resized = True
        if resized:
            interpreter.allocate_tensors()
        for alias, value in inputs.items():
            interpreter.set_tensor(input_indexes[alias], value)
        interpreter.invoke()
        return {key: interpreter.get_tensor(output_indexes[key]) for key in output_keys}

    def close(self) -> None:
        with self._lock:
            self._runners.clear()
            del self._interpreter


def _stored_signature_defs(content: bytes) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDefs in TF Serving's `signature_defs_metadata`, if the model has them."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    for metadata in model.metadata or []:
        name = metadata.name.decode() if isinstance(metadata.name, bytes) else metadata.name
        if name != SIGNATURE_DEFS_METADATA:
            continue
        entries = flexbuffers.GetRoot(bytes(model.buffers[metadata.buffer].data)).AsMap
        stored = {}
        for key, value in zip(entries.Keys, entries.Values, strict=True):
            serialized = value.AsStringBytes if value.IsString else value.AsBlob
            stored[key.AsKey] = meta_graph_pb2.SignatureDef.FromString(bytes(serialized))
        return stored
    return {}


def _bind(signature: meta_graph_pb2.SignatureDef, tensors: Mapping[str, int],
          ) -> tuple[dict[str, int], dict[str, int]]:
    """Input and output aliases → tensor indexes, by tensor name (older converters dropped
    the `:0` that TF tensor names have)."""
    def index(info: meta_graph_pb2.TensorInfo) -> int:
        for name in (info.name, info.name.removesuffix(":0")):
            if name in tensors:
                return tensors[name]
        raise errors.invalid_argument(f"TF Lite model has no tensor {info.name} named by its "
                                      "signature")

    return ({alias: index(info) for alias, info in signature.inputs.items()},
            {alias: index(info) for alias, info in signature.outputs.items()})


def _signature_def(inputs: Mapping[str, Mapping[str, Any]],
                   outputs: Mapping[str, Mapping[str, Any]]) -> meta_graph_pb2.SignatureDef:
    signature = meta_graph_pb2.SignatureDef(method_name=_PREDICT)
    for target, details in ((signature.inputs, inputs), (signature.outputs, outputs)):
        for alias, detail in details.items():
            shape = detail.get("shape_signature", detail["shape"])
            target[alias].CopyFrom(meta_graph_pb2.TensorInfo(
                name=str(detail.get("name", alias)),
                dtype=tf.as_dtype(detail["dtype"]).as_datatype_enum,
                tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[
                    tensor_shape_pb2.TensorShapeProto.Dim(size=int(size)) for size in shape])))
    return signature
