"""The REST port's front door: Berth's extra routes, request recording and the body-size limit.

Sits in front of `rest_api.RestApi` (TF Serving's /v1 grammar, untouched). The extra routes live
outside `/v1/`, where TF Serving answers a plain 404, so no TF Serving route changes meaning:

* `<monitoring path>` (default `/monitoring/prometheus/metrics`): Prometheus text, when enabled.
* `/healthz`: liveness, 200 while the process serves HTTP.
* `/readyz`: readiness, 200 only when every configured model has an AVAILABLE version, else 503
  (TF Serving's status URL says 200 even when nothing is loaded, issue #671).
* `/berth/v1/models`: every configured model with its version statuses (issue #795); GET
  `/v1/models` keeps TF Serving's 400 `Missing model name in request.`.

Every `/v1/` request is recorded (metrics, access log); RestApi notes the route, error code and
response through `request_record`, so recording adds no wrapper around `send`. With
`read_length` (a size limit or the access log is on) the `Content-Length` is read: above
`max_body_bytes` the request is refused with 413 before the body is read; a chunked body that
grows past it is stopped by RestApi with RESOURCE_EXHAUSTED (429, TF Serving's mapping).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from google.protobuf import json_format
from tensorflow_serving.apis import model_pb2

from berth_server import errors
from berth_server.core.server_core import ServerCore
from berth_server.observability import exposition, request_record
from berth_server.observability.request_observer import RequestObserver
from berth_server.rest import json_body
from berth_server.rpc import services as rpc_services

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
LIST_MODELS_PATH = "/berth/v1/models"
_JSON = [(b"content-type", b"application/json")]
_POST_VERBS = frozenset(("predict", "classify", "regress"))
_STATUS_CODES = {400: errors.Code.INVALID_ARGUMENT, 404: errors.Code.NOT_FOUND,
                 413: errors.Code.RESOURCE_EXHAUSTED, 500: errors.Code.INTERNAL,
                 503: errors.Code.UNAVAILABLE}


class RestFront:
    def __init__(self, app: App, core: ServerCore, observer: RequestObserver, *,
                 metrics_path: str | None, max_body_bytes: int, read_length: bool) -> None:
        self._app = app
        self._read_length = read_length
        self._core = core
        self._observer = observer
        self._max_body_bytes = max_body_bytes
        self._routes: dict[str, Callable[[], tuple[int, bytes, list[tuple[bytes, bytes]]]]] = {
            LIVENESS_PATH: lambda: (200, b'{"status": "alive"}\n', _JSON),
            READINESS_PATH: self._readiness,
            LIST_MODELS_PATH: self._list_models,
        }
        if metrics_path:
            self._routes[metrics_path] = lambda: (200, exposition.render(
                observer.metrics.registry), [(b"content-type", exposition.CONTENT_TYPE)])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        route = self._routes.get(path)
        if route is not None:
            if scope["method"] not in ("GET", "HEAD"):
                await _respond(send, 405, json_body.encode_error(
                    f"Method {scope['method']} is not allowed on {path}"), _JSON)
                return
            await _respond(send, *route())
            return
        if path[:4].lower() != "/v1/":
            await self._app(scope, receive, send)
            return
        await self._recorded(scope, receive, send)

    async def _recorded(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = request_record.begin("REST")
        try:
            if self._read_length:
                length = record.request_bytes = _content_length(scope)
                if length > self._max_body_bytes:
                    record.code = errors.Code.RESOURCE_EXHAUSTED
                    await _respond(send, 413, json_body.encode_error(
                        f"Request body of {length} bytes exceeds the maximum of "
                        f"{self._max_body_bytes} bytes"), _JSON)
                    return
            await self._app(scope, receive, send)
        finally:
            if record.http_status != 200 and record.code == errors.Code.OK:
                record.code = _STATUS_CODES.get(record.http_status, errors.Code.UNKNOWN)
            # TF Serving's API label is "" for GETs; the access log keeps status/metadata.
            self._observer.finish(record, metric_api=record.api if record.api in _POST_VERBS
                                  else "")

    def _readiness(self) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        manager = self._core.manager
        models = {name: manager.available_versions(name) for name in self._core.model_names}
        ready = bool(models) and self._core.is_ready()
        body = json_body.dumps({"ready": ready, "models": {
            name: {"available_versions": [str(v) for v in versions]}
            for name, versions in sorted(models.items())}})
        return (200 if ready else 503), body, _JSON

    def _list_models(self) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        models = []
        for name in sorted(self._core.model_names):
            entry: dict[str, Any] = {"name": name, "model_version_status": []}
            try:
                status = rpc_services.model_status(self._core.manager.statuses,
                                               model_pb2.ModelSpec(name=name))
                entry.update(json_format.MessageToDict(
                    status, always_print_fields_with_no_presence=True,
                    preserving_proto_field_name=True))
            except errors.ServingError:
                pass  # configured, no version found yet
            entry["version_labels"] = {k: str(v) for k, v in self._core.labels(name).items()}
            models.append(entry)
        return 200, json_body.dumps({"models": models}), _JSON


def _content_length(scope: Scope) -> int:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def _respond(send: Send, status: int, body: bytes,
                   headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
