"""TF Serving's /v1 REST handler: route → decode JSON → InferenceService → encode JSON.

The counterpart of TF Serving's `HttpRestApiHandler::ProcessRequest`: it takes a method, a raw
path and a body, and returns the response body or raises a ServingError; HTTP itself (body
limits, gzip, CORS, status codes) is the front door's (`rest.front`). As in TF Serving, the
JSON body is parsed before the model is looked up, and the version is leased only while the
request's signature is read and its plan runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf import json_format
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

from berth_server import errors
from berth_server.observability import request_record
from berth_server.rest import examples_request, json_body, predict_request, response, routes
from berth_server.service import offload
from berth_server.service.inference_service import InferenceService
from berth_server.service.model_spec import ModelSpec
from berth_server.service.server_view import ServerView


class RestApi:
    def __init__(self, service: InferenceService, view: ServerView, *, timeout_ms: int) -> None:
        self._service = service
        self._view = view
        self._timeout_ms = timeout_ms

    async def handle(self, method: str, path: str, body: bytes) -> bytes:
        route = routes.match(method, path)
        request_record.note_route(route.model_name, route.verb)
        if route.verb == "status":
            return _proto_json(await self._view.status(route.model_name, route.version))
        if route.verb == "metadata":
            return self._metadata(route)
        if route.verb == "predict":
            return await self._predict(route, body)
        document = await offload.run(lambda: json_body.parse_body(body), size=len(body))
        request = examples_request.decode_examples_request(document)
        spec = _spec(route, request.signature_name)
        examples = request.serialized_examples()
        if route.verb == "classify":
            classified = await self._service.classify(spec, lambda: examples,
                                                      timeout_ms=self._timeout_ms)
            return response.encode_classify_response(classified.value.rows)
        regressed = await self._service.regress(spec, lambda: examples,
                                                timeout_ms=self._timeout_ms)
        return response.encode_regress_response(regressed.value.values)

    def _metadata(self, route: routes.Route) -> bytes:
        result = self._service.metadata(_spec(route, ""))
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in result.value.items():
            signature_map.signature_def[key].CopyFrom(signature)
        spec = model_pb2.ModelSpec(name=result.model_name, signature_name="")
        spec.version.value = result.version
        return json_body.dumps({"model_spec": _proto_dict(spec),
                                "metadata": {"signature_def": _proto_dict(signature_map)}})

    async def _predict(self, route: routes.Route, body: bytes) -> bytes:
        parsed = await offload.run(lambda: predict_request.parse_predict_body(body),
                                   size=len(body))
        spec = _spec(route, predict_request.signature_name_of(parsed))
        row_format = False

        async def decode(signature: meta_graph_pb2.SignatureDef | None,
                         ) -> dict[str, np.ndarray]:
            nonlocal row_format
            if signature is None:
                raise errors.invalid_argument(f'Serving signature name: "{spec.signature_key}" '
                                              "not found in signature def")
            dtypes = {alias: info.dtype for alias, info in signature.inputs.items()}
            decoded = await offload.run(lambda: predict_request.decode_parsed_request(
                parsed, body, dtypes, signature_name=spec.signature_name), size=len(body))
            row_format = decoded.row_format
            return decoded.tensors

        result = await self._service.predict(spec, decode, timeout_ms=self._timeout_ms)
        return await offload.run(
            lambda: response.encode_predict_response(result.value, row_format),
            size=sum(value.nbytes for value in result.value.values()))


def _spec(route: routes.Route, signature_name: str) -> ModelSpec:
    return ModelSpec(route.model_name, version=route.version, label=route.label,
                     signature_name=signature_name)


def _proto_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True,
                                     preserving_proto_field_name=True)


def _proto_json(message: Any) -> bytes:
    return json_format.MessageToJson(message, always_print_fields_with_no_presence=True,
                                     preserving_proto_field_name=True, indent=1).encode()
