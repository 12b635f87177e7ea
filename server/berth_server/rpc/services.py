"""tensorflow.serving.PredictionService and ModelService over grpc.aio.

Built on the servicer bases generated in the tensorflow-serving-api wheel, so the official stubs
work unmodified. Each method decodes its request, calls the InferenceService (the ServerView for
model status and config reloads), encodes the result, and maps a ServingError to a gRPC status
with the same code, once, in `_abort`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from berth_server import errors
from berth_server.core import model_status
from berth_server.servables import example_inputs, inference, tensor_protos
from berth_server.service import offload
from berth_server.service.inference_service import (
    Classifications,
    InferenceService,
    Regressions,
    Result,
)
from berth_server.service.model_spec import ModelSpec
from berth_server.service.server_view import ServerView

log = logging.getLogger(__name__)

_MAX_MESSAGE_CHARS = 1024
Response = TypeVar("Response")


def _abort(method: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """Turn a ServingError into the gRPC status TF Serving would send (messages cut at 1024).

    Any other exception is a bug: it is logged with its traceback and answered INTERNAL, never
    with grpc's default `Unexpected <class ...>` text.
    """

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Response:
        try:
            return await method(self, request, context)
        except errors.ServingError as error:
            code, message = grpc.StatusCode[error.code.name], error.message
            if len(message) > _MAX_MESSAGE_CHARS:
                message = message[:_MAX_MESSAGE_CHARS] + "...TRUNCATED"
        except Exception:
            log.exception("Unexpected error in %s", method.__name__)
            code, message = grpc.StatusCode.INTERNAL, errors.INTERNAL_MESSAGE
        # grpc keeps the abort's exception, and so every frame it passes, with the call's state,
        # which outlives the call: abort outside the `except` (or the error, its message and
        # its traceback stay too), from a frame that no longer holds the request.
        del request
        await context.abort(code, message)
        raise AssertionError("abort raises")  # for the type checker: abort() is not NoReturn

    return wrapper


def model_spec(spec: model_pb2.ModelSpec) -> ModelSpec:
    choice = spec.WhichOneof("version_choice")
    return ModelSpec(spec.name,
                     version=spec.version.value if choice == "version" else None,
                     label=spec.version_label if choice == "version_label" else None,
                     signature_name=spec.signature_name)


def remaining_ms(context: grpc.aio.ServicerContext) -> int:
    """What is left of the call's deadline, in ms; 0 when it has none."""
    remaining = context.time_remaining()
    return max(1, int(remaining * 1000)) if remaining is not None else 0


async def predict(service: InferenceService, request: predict_pb2.PredictRequest,
                  timeout_ms: int, *, tensor_content_outputs: bool,
                  max_fill_bytes: int = tensor_protos.MAX_FILLED_BYTES,
                  ) -> predict_pb2.PredictResponse:
    """Predict on a decoded PredictRequest; shared by unary Predict and the streaming RPC."""

    async def decode(signature: meta_graph_pb2.SignatureDef | None) -> dict[str, np.ndarray]:
        if signature is not None:  # refuse junk inputs before decoding any of them
            inference.check_aliases(signature, request.inputs.keys())
        tensor_protos.check_fills(request.inputs.values(), max_fill_bytes)
        return await offload.run(lambda: {
            k: tensor_protos.to_ndarray(v, max_fill_bytes=max_fill_bytes)
            for k, v in request.inputs.items()}, size=request.ByteSize())

    result = await service.predict(model_spec(request.model_spec), decode,
                                   output_filter=list(request.output_filter),
                                   timeout_ms=timeout_ms)
    return await offload.run(lambda: _predict_response(result, tensor_content_outputs),
                             size=sum(value.nbytes for value in result.value.values()))


def _predict_response(result: Result[inference.Outputs], tensor_content: bool,
                      ) -> predict_pb2.PredictResponse:
    """Built in place: each output is encoded straight into its map entry, never copied."""
    response = predict_pb2.PredictResponse()
    _fill_spec(response.model_spec, result)
    outputs = response.outputs
    for alias, value in result.value.items():
        tensor_protos.fill_proto(outputs[alias], value, as_tensor_content=tensor_content)
    return response


def _response_spec(result: Result[Any]) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec()
    _fill_spec(spec, result)
    return spec


def _fill_spec(spec: model_pb2.ModelSpec, result: Result[Any]) -> None:
    spec.name = result.model_name
    spec.version.value = result.version
    spec.signature_name = result.signature_name


def _classification(value: Classifications) -> classification_pb2.ClassificationResult:
    return classification_pb2.ClassificationResult(classifications=[
        classification_pb2.Classifications(classes=[
            classification_pb2.Class(label=label, score=score) for label, score in row])
        for row in value.rows])


def _regression(value: Regressions) -> regression_pb2.RegressionResult:
    return regression_pb2.RegressionResult(
        regressions=[regression_pb2.Regression(value=v) for v in value.values])


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, service: InferenceService, *, tensor_content_outputs: bool,
                 max_fill_bytes: int) -> None:
        self._service = service
        self._tensor_content = tensor_content_outputs
        self._max_fill_bytes = max_fill_bytes

    @_abort
    async def Predict(self, request: predict_pb2.PredictRequest,
                      context: grpc.aio.ServicerContext) -> predict_pb2.PredictResponse:
        return await predict(self._service, request, remaining_ms(context),
                             tensor_content_outputs=self._tensor_content,
                             max_fill_bytes=self._max_fill_bytes)

    @_abort
    async def Classify(self, request: classification_pb2.ClassificationRequest,
                       context: grpc.aio.ServicerContext,
                       ) -> classification_pb2.ClassificationResponse:
        result = await self._service.classify(
            model_spec(request.model_spec),
            lambda: example_inputs.serialized_examples(request.input),
            timeout_ms=remaining_ms(context))
        return classification_pb2.ClassificationResponse(model_spec=_response_spec(result),
                                                         result=_classification(result.value))

    @_abort
    async def Regress(self, request: regression_pb2.RegressionRequest,
                      context: grpc.aio.ServicerContext) -> regression_pb2.RegressionResponse:
        result = await self._service.regress(
            model_spec(request.model_spec),
            lambda: example_inputs.serialized_examples(request.input),
            timeout_ms=remaining_ms(context))
        return regression_pb2.RegressionResponse(model_spec=_response_spec(result),
                                                 result=_regression(result.value))

    @_abort
    async def MultiInference(self, request: inference_pb2.MultiInferenceRequest,
                             context: grpc.aio.ServicerContext,
                             ) -> inference_pb2.MultiInferenceResponse:
        results = await self._service.multi_inference(
            [model_spec(task.model_spec) for task in request.tasks],
            [task.method_name for task in request.tasks],
            lambda: example_inputs.serialized_examples(request.input),
            timeout_ms=remaining_ms(context))
        response = inference_pb2.MultiInferenceResponse()
        for result in results:
            entry = response.results.add(model_spec=_response_spec(result))
            if isinstance(result.value, Classifications):
                entry.classification_result.CopyFrom(_classification(result.value))
            else:
                entry.regression_result.CopyFrom(_regression(result.value))
        return response

    @_abort
    async def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                               context: grpc.aio.ServicerContext,
                               ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        fields = list(request.metadata_field)
        if not fields:
            raise errors.invalid_argument("GetModelMetadataRequest must specify at least one "
                                          "metadata_field")
        for field in fields:
            if field != "signature_def":
                raise errors.invalid_argument(f"Metadata field {field} is not supported")
        result = self._service.metadata(model_spec(request.model_spec))
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in result.value.items():
            signature_map.signature_def[key].CopyFrom(signature)
        response = get_model_metadata_pb2.GetModelMetadataResponse(
            model_spec=_response_spec(result))
        response.metadata["signature_def"].Pack(signature_map)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, view: ServerView, *, enable_reload: bool) -> None:
        self._view = view
        self._enable_reload = enable_reload

    @_abort
    async def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                             context: grpc.aio.ServicerContext,
                             ) -> get_model_status_pb2.GetModelStatusResponse:
        if not request.HasField("model_spec"):
            raise errors.invalid_argument("Missing ModelSpec")
        spec = model_spec(request.model_spec)
        return await self._view.status(spec.name, spec.version)

    @_abort
    async def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest,
                                        context: grpc.aio.ServicerContext,
                                        ) -> model_management_pb2.ReloadConfigResponse:
        if not self._enable_reload:
            raise errors.unimplemented("HandleReloadConfigRequest is turned off on this server "
                                       "(--enable_reload_config_rpc=false)")
        if request.config.WhichOneof("config") != "model_config_list":
            kind = request.config.WhichOneof("config")
            raise errors.invalid_argument(f"ServerCore config changes of type {kind} is not "
                                          "supported; only model_config_list is")
        await self._view.reload(request.config, timeout_seconds=context.time_remaining())
        return model_management_pb2.ReloadConfigResponse(status=model_status.status_proto(None))


def add_services(server: grpc.aio.Server, service: InferenceService, view: ServerView, *,
                 tensor_content_outputs: bool, max_fill_bytes: int, enable_reload: bool) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(service, tensor_content_outputs=tensor_content_outputs,
                          max_fill_bytes=max_fill_bytes), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(view, enable_reload=enable_reload), server)
