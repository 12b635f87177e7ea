"""tensorflow.serving.PredictionService and ModelService over grpc.aio.

Built on the servicer bases generated in the tensorflow-serving-api wheel, so the official stubs
work unmodified. Each method decodes, delegates to the Predictor / ServerCore, and maps a
ServingError to a gRPC status with the same code, once, in `_abort`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import wrappers_pb2
from tensorflow.core.protobuf import error_codes_pb2
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
from berth_server.core.aspired_versions_manager import Lease
from berth_server.servables import example_inputs, inference, tensor_protos
from berth_server.service.predictor import Predictor

_MAX_MESSAGE_CHARS = 1024
Response = TypeVar("Response")


def _abort(method: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """Turn a ServingError into the gRPC status TF Serving would send (messages cut at 1024)."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Response:
        try:
            return await method(self, request, context)
        except errors.ServingError as error:
            message = error.message
            if len(message) > _MAX_MESSAGE_CHARS:
                message = message[:_MAX_MESSAGE_CHARS] + "...TRUNCATED"
            await context.abort(grpc.StatusCode[error.code.name], message)
            raise  # unreachable: abort raises

    return wrapper


def _version_spec(spec: model_pb2.ModelSpec) -> tuple[int | None, str | None]:
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return spec.version.value, None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def remaining_ms(context: grpc.aio.ServicerContext) -> int:
    """What is left of the call's deadline, in ms; 0 when it has none."""
    remaining = context.time_remaining()
    return max(1, int(remaining * 1000)) if remaining is not None else 0


async def predict(predictor: Predictor, request: predict_pb2.PredictRequest, timeout_ms: int, *,
                  tensor_content_outputs: bool) -> predict_pb2.PredictResponse:
    """Predict on a decoded PredictRequest; shared by unary Predict and the streaming RPC."""
    spec = request.model_spec
    with predictor.lease(spec.name, *_version_spec(spec)) as lease:
        inputs = {k: tensor_protos.to_ndarray(v) for k, v in request.inputs.items()}
        plan = inference.plan_predict(predictor.signatures(lease), spec.signature_name,
                                      inputs, list(request.output_filter))
        outputs = await predictor.run(lease, plan, timeout_ms)
        response = predict_pb2.PredictResponse(
            model_spec=_response_spec(lease, plan.signature_name))
    for alias, value in outputs.items():
        response.outputs[alias].CopyFrom(
            tensor_protos.to_proto(value, as_tensor_content=tensor_content_outputs))
    return response


def _response_spec(lease: Lease, signature_name: str) -> model_pb2.ModelSpec:
    return model_pb2.ModelSpec(name=lease.name,
                               version=wrappers_pb2.Int64Value(value=lease.version),
                               signature_name=signature_name)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, predictor: Predictor, *, tensor_content_outputs: bool) -> None:
        self._predictor = predictor
        self._tensor_content = tensor_content_outputs

    @_abort
    async def Predict(self, request: predict_pb2.PredictRequest,
                      context: grpc.aio.ServicerContext) -> predict_pb2.PredictResponse:
        return await predict(self._predictor, request, remaining_ms(context),
                             tensor_content_outputs=self._tensor_content)

    @_abort
    async def Classify(self, request: classification_pb2.ClassificationRequest,
                       context: grpc.aio.ServicerContext,
                       ) -> classification_pb2.ClassificationResponse:
        spec = request.model_spec
        with self._predictor.lease(spec.name, *_version_spec(spec)) as lease:
            result = await self._classify(lease, spec.signature_name, request.input, context)
            return classification_pb2.ClassificationResponse(
                model_spec=_response_spec(lease, spec.signature_name or
                                          inference.DEFAULT_SIGNATURE), result=result)

    @_abort
    async def Regress(self, request: regression_pb2.RegressionRequest,
                      context: grpc.aio.ServicerContext) -> regression_pb2.RegressionResponse:
        spec = request.model_spec
        with self._predictor.lease(spec.name, *_version_spec(spec)) as lease:
            result = await self._regress(lease, spec.signature_name, request.input, context)
            return regression_pb2.RegressionResponse(
                model_spec=_response_spec(lease, spec.signature_name or
                                          inference.DEFAULT_SIGNATURE), result=result)

    async def _classify(self, lease: Lease, signature_name: str, request_input: Any,
                        context: grpc.aio.ServicerContext,
                        ) -> classification_pb2.ClassificationResult:
        examples = example_inputs.serialized_examples(request_input)
        plan = inference.plan_classify(self._predictor.signatures(lease), signature_name, examples,
                                       check_method=self._predictor.check_method_names)
        outputs = await self._predictor.run(lease, plan, remaining_ms(context))
        return classification_pb2.ClassificationResult(classifications=[
            classification_pb2.Classifications(classes=[
                classification_pb2.Class(label=label, score=score) for label, score in row])
            for row in inference.classify_result(outputs, len(examples))])

    async def _regress(self, lease: Lease, signature_name: str, request_input: Any,
                       context: grpc.aio.ServicerContext) -> regression_pb2.RegressionResult:
        examples = example_inputs.serialized_examples(request_input)
        plan = inference.plan_regress(self._predictor.signatures(lease), signature_name, examples,
                                      check_method=self._predictor.check_method_names)
        outputs = await self._predictor.run(lease, plan, remaining_ms(context))
        return regression_pb2.RegressionResult(regressions=[
            regression_pb2.Regression(value=v)
            for v in inference.regress_result(outputs, len(examples))])

    @_abort
    async def MultiInference(self, request: inference_pb2.MultiInferenceRequest,
                             context: grpc.aio.ServicerContext,
                             ) -> inference_pb2.MultiInferenceResponse:
        tasks = list(request.tasks)
        if not tasks:
            raise errors.invalid_argument("MultiInferenceRequest must have at least one task")
        name = tasks[0].model_spec.name
        if any(t.model_spec.name != name for t in tasks):
            raise errors.invalid_argument("All ModelSpecs in a MultiInferenceRequest must access "
                                          "the same model name.")
        signature_names = [t.model_spec.signature_name or inference.DEFAULT_SIGNATURE
                           for t in tasks]
        if len(set(signature_names)) != len(signature_names):
            raise errors.invalid_argument("Duplicate evaluation of signature")
        for task in tasks:
            if task.method_name not in (inference.CLASSIFY_METHOD, inference.REGRESS_METHOD):
                raise errors.unimplemented(f"Unsupported signature method_name: {task.method_name}")
        response = inference_pb2.MultiInferenceResponse()
        with self._predictor.lease(name, *_version_spec(tasks[0].model_spec)) as lease:
            for task, signature_name in zip(tasks, signature_names, strict=True):
                result = response.results.add(
                    model_spec=_response_spec(lease, signature_name))
                if task.method_name == inference.CLASSIFY_METHOD:
                    result.classification_result.CopyFrom(
                        await self._classify(lease, signature_name, request.input, context))
                else:
                    result.regression_result.CopyFrom(
                        await self._regress(lease, signature_name, request.input, context))
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
        spec = request.model_spec
        with self._predictor.lease(spec.name, *_version_spec(spec)) as lease:
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, signature in self._predictor.signatures(lease).items():
                signature_map.signature_def[key].CopyFrom(signature)
            response = get_model_metadata_pb2.GetModelMetadataResponse(
                model_spec=_response_spec(lease, ""))
        response.metadata["signature_def"].Pack(signature_map)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, predictor: Predictor) -> None:
        self._core = predictor.core

    @_abort
    async def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                             context: grpc.aio.ServicerContext,
                             ) -> get_model_status_pb2.GetModelStatusResponse:
        if not request.HasField("model_spec"):
            raise errors.invalid_argument("Missing ModelSpec")
        return model_status(self._core.manager.statuses, request.model_spec)

    @_abort
    async def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest,
                                        context: grpc.aio.ServicerContext,
                                        ) -> model_management_pb2.ReloadConfigResponse:
        if request.config.WhichOneof("config") != "model_config_list":
            kind = request.config.WhichOneof("config")
            raise errors.invalid_argument(f"ServerCore config changes of type {kind} is not "
                                          "supported; only model_config_list is")
        await self._core.reload(request.config)
        return model_management_pb2.ReloadConfigResponse(status=_status_proto(None))


def model_status(statuses: Callable[[str], list[Any]], spec: model_pb2.ModelSpec,
                 ) -> get_model_status_pb2.GetModelStatusResponse:
    """GetModelStatus for a spec; only `version` narrows it (a label is ignored, as in TFS)."""
    rows = statuses(spec.name)
    if spec.WhichOneof("version_choice") == "version":
        rows = [r for r in rows if r.version == spec.version.value]
        if not rows:
            raise errors.not_found(f"Could not find version {spec.version.value} of model "
                                   f"{spec.name}")
    elif not rows:
        raise errors.not_found(f"Could not find any versions of model {spec.name}")
    return get_model_status_pb2.GetModelStatusResponse(model_version_status=[
        get_model_status_pb2.ModelVersionStatus(version=r.version, state=int(r.state),
                                                status=_status_proto(r.error)) for r in rows])


def _status_proto(error: errors.ServingError | None) -> Any:
    from tensorflow_serving.apis import status_pb2

    if error is None:
        return status_pb2.StatusProto(error_code=error_codes_pb2.OK)
    return status_pb2.StatusProto(error_code=int(error.code), error_message=error.message)


def add_services(server: grpc.aio.Server, predictor: Predictor, *,
                 tensor_content_outputs: bool) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(predictor, tensor_content_outputs=tensor_content_outputs), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(predictor), server)
