"""TF Serving's REST API as a bare ASGI app (no framework: every layer is paid per request).

Routes, JSON shapes, error body `{"error": ...}` and the code → HTTP status table follow TF
Serving; decoding and encoding live in json_body / predict_request / response, model work in
the Predictor shared with gRPC.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

from berth_server import errors
from berth_server.observability import request_record
from berth_server.rest import examples_request, json_body, predict_request, response, routes
from berth_server.rpc import services as rpc_services
from berth_server.servables import inference
from berth_server.service.predictor import Predictor

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
_CORS = [(b"access-control-allow-origin", b"*"),
         (b"access-control-allow-methods", b"POST, GET"),
         (b"access-control-allow-headers", b"Content-Type")]
_NOT_FOUND_PAGE = (b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n"
                   b"<H1>Not Found</H1>\n</BODY></HTML>\n")
_MAX_DECOMPRESSED_BYTES = 100 << 20


class RestApi:
    def __init__(self, predictor: Predictor, *, timeout_ms: int, enable_cors: bool,
                 max_body_bytes: int) -> None:
        self._predictor = predictor
        self._timeout_ms = timeout_ms
        self._extra_headers = _CORS if enable_cors else []
        self._max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        path = scope.get("raw_path", scope["path"].encode()).decode("latin-1").split("?", 1)[0]
        if not path.lower().startswith("/v1/"):
            await _respond(send, 404, _NOT_FOUND_PAGE, [(b"content-type", b"text/html")])
            return
        if method == "OPTIONS" and self._extra_headers:
            await self._preflight(scope, send)
            return
        try:
            body = await self._read_body(scope, receive)
            payload = await self._dispatch(method, path, body)
            status = 200
        except errors.ServingError as error:
            request_record.note_error(error.code)
            status, payload = errors.http_status(error.code), json_body.encode_error(error.message)
        except Exception as error:  # a bug must cost one request, never the server
            log.exception("Unexpected error handling %s %s", method, path)
            status, payload = 500, json_body.encode_error(f"Internal error: {error!r}")
        await _respond(send, status, payload, [_JSON, *self._extra_headers])

    async def _preflight(self, scope: Scope, send: Send) -> None:
        origin = dict(scope["headers"]).get(b"origin", b"")
        if b"http://" in origin or b"https://" in origin:
            await _respond(send, 200, b"", self._extra_headers)
        else:
            await _respond(send, 400, json_body.encode_error(
                "Origin header is missing in CORS preflight"), [_JSON, *self._extra_headers])

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body_bytes:
                raise errors.ServingError(errors.Code.RESOURCE_EXHAUSTED,
                                          f"Request body exceeds the maximum of "
                                          f"{self._max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        encoding = dict(scope["headers"]).get(b"content-encoding", b"")
        return _gunzip(body) if b"gzip" in encoding.lower() else body

    async def _dispatch(self, method: str, path: str, body: bytes) -> bytes:
        route = routes.match(method, path)
        request_record.note_route(route.model_name, route.verb)
        if route.verb == "status":
            return self._status(route)
        with self._predictor.lease(route.model_name, route.version, route.label) as lease:
            if route.verb == "metadata":
                return self._metadata(lease)
            document = json_body.parse_body(body)
            if route.verb == "predict":
                return await self._predict(lease, document)
            return await self._examples(lease, route.verb, document)

    def _status(self, route: routes.Route) -> bytes:
        spec = model_pb2.ModelSpec(name=route.model_name)
        if route.version is not None:
            spec.version.value = route.version
        if route.label is not None:
            spec.version_label = route.label
        response = rpc_services.model_status(self._predictor.core.manager.statuses, spec)
        return json_format.MessageToJson(response, always_print_fields_with_no_presence=True,
                                         preserving_proto_field_name=True, indent=1).encode()

    def _metadata(self, lease: Any) -> bytes:
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in self._predictor.signatures(lease).items():
            signature_map.signature_def[key].CopyFrom(signature)
        spec = model_pb2.ModelSpec(name=lease.name, signature_name="")
        spec.version.value = lease.version

        def to_dict(message: Any) -> dict[str, Any]:
            return json_format.MessageToDict(message, always_print_fields_with_no_presence=True,
                                             preserving_proto_field_name=True)

        return json_body.dumps({"model_spec": to_dict(spec),
                                "metadata": {"signature_def": to_dict(signature_map)}})

    async def _predict(self, lease: Any, document: dict[str, Any]) -> bytes:
        signature_name = json_body.signature_name_of(document)
        signatures = self._predictor.signatures(lease)
        signature = signatures.get(signature_name or inference.DEFAULT_SIGNATURE)
        if signature is None:
            raise errors.invalid_argument(
                f'Serving signature name: "{signature_name or inference.DEFAULT_SIGNATURE}" not '
                "found in signature def")
        decoded = predict_request.decode_predict_request(
            document, {alias: info.dtype for alias, info in signature.inputs.items()})
        plan = inference.plan_predict(signatures, signature_name, decoded.tensors)
        outputs = await self._predictor.run(lease, plan, self._timeout_ms)
        return response.encode_predict_response(outputs, decoded.row_format)

    async def _examples(self, lease: Any, verb: str, document: dict[str, Any]) -> bytes:
        request = examples_request.decode_examples_request(document)
        examples = request.serialized_examples()
        signatures = self._predictor.signatures(lease)
        check = self._predictor.check_method_names
        if verb == "classify":
            plan = inference.plan_classify(signatures, request.signature_name, examples,
                                           check_method=check)
            outputs = await self._predictor.run(lease, plan, self._timeout_ms)
            return response.encode_classify_response(
                inference.classify_result(outputs, len(examples)))
        plan = inference.plan_regress(signatures, request.signature_name, examples,
                                      check_method=check)
        outputs = await self._predictor.run(lease, plan, self._timeout_ms)
        return response.encode_regress_response(
            inference.regress_result(outputs, len(examples)))


def _gunzip(body: bytes) -> bytes:
    decompressor = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        data = decompressor.decompress(body, _MAX_DECOMPRESSED_BYTES)
    except (zlib.error, gzip.BadGzipFile) as error:
        raise errors.invalid_argument(f"Failed to decompress gzip request body: {error}") from None
    if decompressor.unconsumed_tail:
        raise errors.invalid_argument("Decompressed request body exceeds 100 MB")
    return data


async def _respond(send: Send, status: int, body: bytes,
                   headers: list[tuple[bytes, bytes]]) -> None:
    request_record.note_response(status, len(body))
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
