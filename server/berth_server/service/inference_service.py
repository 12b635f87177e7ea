"""Predict, Classify, Regress, MultiInference and metadata: what gRPC and REST call after decoding.

As in TF Serving, where the REST handler turns JSON into the request and calls the same
implementations as the gRPC service: each method resolves the spec's version, holds a lease on
it only while it reads the signatures and runs the plan (so an unload waits for the run, never
for a transport's parsing or encoding), and returns plain values for the transport to encode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, TypeVar

import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2

from berth_server import errors
from berth_server.core.aspired_versions_manager import Lease
from berth_server.core.server_core import ServerCore
from berth_server.observability import request_record
from berth_server.servables import inference
from berth_server.servables.servable import Servable
from berth_server.service.model_spec import ModelSpec
from berth_server.service.runners import Runner

T = TypeVar("T")
# Decodes a request's inputs given the signature its spec names (None: the model has none by
# that name). The REST decoder needs the signature to type JSON values and refuses a missing
# one in TF Serving's REST words; otherwise the service refuses it in its gRPC words. Awaitable,
# so a transport may decode a large request off the event loop (`service.offload`).
InputDecoder = Callable[[meta_graph_pb2.SignatureDef | None], Awaitable[Mapping[str, np.ndarray]]]
# Serialized tf.Examples of a classify or regress request, decoded once the version is found
# (as in TF Serving, a missing model is reported before a malformed input).
ExamplesDecoder = Callable[[], Sequence[bytes]]


@dataclasses.dataclass(frozen=True, slots=True)
class Classifications:
    """One list of (label, score) per example, in input order."""

    rows: list[list[tuple[str, float]]]


@dataclasses.dataclass(frozen=True, slots=True)
class Regressions:
    """One value per example, in input order."""

    values: list[float]


@dataclasses.dataclass(frozen=True, slots=True)
class Result(Generic[T]):
    """A result with the version and signature that produced it (the response's model_spec)."""

    model_name: str
    version: int
    signature_name: str
    value: T


class InferenceService:
    def __init__(self, core: ServerCore, runner: Runner, *, check_method_names: bool) -> None:
        self._core = core
        self._run = runner
        self._check_method_names = check_method_names

    async def predict(self, spec: ModelSpec, decode_inputs: InputDecoder, *,
                      output_filter: Sequence[str] = (), timeout_ms: int,
                      ) -> Result[inference.Outputs]:
        key = spec.signature_key
        with self._lease(spec) as lease:
            signature = lease.servable.signatures.get(key)
            inputs = await decode_inputs(signature)
            plan = inference.plan_predict(key, signature, inputs, output_filter)
            outputs = await self._run(lease, plan, timeout_ms)
        return Result(lease.name, lease.version, key, outputs)

    async def classify(self, spec: ModelSpec, decode_examples: ExamplesDecoder, *,
                       timeout_ms: int) -> Result[Classifications]:
        with self._lease(spec) as lease:
            return await self._classify(lease, spec.signature_name, decode_examples(),
                                        timeout_ms)

    async def regress(self, spec: ModelSpec, decode_examples: ExamplesDecoder, *,
                      timeout_ms: int) -> Result[Regressions]:
        with self._lease(spec) as lease:
            return await self._regress(lease, spec.signature_name, decode_examples(), timeout_ms)

    async def multi_inference(self, specs: Sequence[ModelSpec], methods: Sequence[str],
                              decode_examples: ExamplesDecoder, *, timeout_ms: int,
                              ) -> list[Result[Classifications] | Result[Regressions]]:
        """Classify and regress tasks of one model on the same examples and the same version."""
        if not specs:
            raise errors.invalid_argument("MultiInferenceRequest must have at least one task")
        if any(spec.name != specs[0].name for spec in specs):
            raise errors.invalid_argument("All ModelSpecs in a MultiInferenceRequest must access "
                                          "the same model name.")
        keys = [spec.signature_key for spec in specs]
        if len(set(keys)) != len(keys):
            raise errors.invalid_argument("Duplicate evaluation of signature")
        for method in methods:
            if method not in (inference.CLASSIFY_METHOD, inference.REGRESS_METHOD):
                raise errors.unimplemented(f"Unsupported signature method_name: {method}")
        results: list[Result[Classifications] | Result[Regressions]] = []
        with self._lease(specs[0]) as lease:
            examples = decode_examples()
            for key, method in zip(keys, methods, strict=True):
                task = self._classify if method == inference.CLASSIFY_METHOD else self._regress
                results.append(await task(lease, key, examples, timeout_ms))
        return results

    def metadata(self, spec: ModelSpec) -> Result[inference.Signatures]:
        """The version's signatures (no signature is named: the response's is empty)."""
        with self._lease(spec) as lease:
            return Result(lease.name, lease.version, "", lease.servable.signatures)

    def _lease(self, spec: ModelSpec) -> Lease[Servable]:
        """The version the spec names, held until the caller's `with` block ends."""
        if not spec.name:
            raise errors.invalid_argument("ModelSpec has no name specified.")
        version = self._core.resolve_version(spec.name, spec.version, spec.label)
        lease = self._core.manager.lease(spec.name, version)
        request_record.note_version(lease.version)
        return lease

    async def _classify(self, lease: Lease[Servable], signature_name: str,
                        examples: Sequence[bytes], timeout_ms: int) -> Result[Classifications]:
        plan = inference.plan_classify(lease.servable.signatures, signature_name, examples,
                                       check_method=self._check_method_names)
        outputs = await self._run(lease, plan, timeout_ms)
        return Result(lease.name, lease.version, plan.signature_name,
                      Classifications(inference.classify_result(outputs, len(examples))))

    async def _regress(self, lease: Lease[Servable], signature_name: str,
                       examples: Sequence[bytes], timeout_ms: int) -> Result[Regressions]:
        plan = inference.plan_regress(lease.servable.signatures, signature_name, examples,
                                      check_method=self._check_method_names)
        outputs = await self._run(lease, plan, timeout_ms)
        return Result(lease.name, lease.version, plan.signature_name,
                      Regressions(inference.regress_result(outputs, len(examples))))
