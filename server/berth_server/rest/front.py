"""The REST port as an ASGI app: HTTP around TF Serving's /v1 handler, and Berth's extra routes.

Everything HTTP lives here: the body and its size limit (`rest.body`), CORS, error bodies and
status codes (TF Serving's table, `errors.http_status`), and recording every /v1 request for
metrics and the access log. `rest.api.RestApi` sees only method, raw path and body.

Berth's extra routes live outside `/v1/`, where TF Serving answers a plain 404, so no TF Serving
route changes meaning:

* `<monitoring path>` (default `/monitoring/prometheus/metrics`): Prometheus text, when enabled.
* `/healthz`: liveness, 200 while the process serves HTTP.
* `/readyz`: readiness, 200 only when every configured model has an AVAILABLE version (in every
  worker process), else 503 (TF Serving's status URL says 200 even when nothing is loaded,
  issue #671).
* `/berth/v1/models`: every configured model with its version statuses (issue #795); GET
  `/v1/models` keeps TF Serving's 400 `Missing model name in request.`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from google.protobuf import json_format

from berth_server import errors
from berth_server.core.server_core import ServerCore
from berth_server.observability import exposition, request_record
from berth_server.observability.request_record import RequestObserver
from berth_server.rest import body, json_body
from berth_server.rest.api import RestApi
from berth_server.service.server_view import ServerView

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
LIST_MODELS_PATH = "/berth/v1/models"
_JSON: Headers = [(b"content-type", b"application/json")]
_CORS: Headers = [(b"access-control-allow-origin", b"*"),
                  (b"access-control-allow-methods", b"POST, GET"),
                  (b"access-control-allow-headers", b"Content-Type")]
_NOT_FOUND_PAGE = (b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n"
                   b"<H1>Not Found</H1>\n</BODY></HTML>\n")
_POST_VERBS = frozenset(("predict", "classify", "regress"))


class RestFront:
    def __init__(self, api: RestApi, view: ServerView, core: ServerCore,
                 observer: RequestObserver, *, metrics_path: str | None, max_body_bytes: int,
                 body_budget: body.BodyBudget, read_length: bool, enable_cors: bool) -> None:
        """`read_length`: check `Content-Length` before reading (a limit or the access log is
        on); otherwise only the body's actual size is checked, as it arrives."""
        self._api = api
        self._view = view
        self._core = core
        self._observer = observer
        self._max_body_bytes = max_body_bytes
        self._body_budget = body_budget
        self._read_length = read_length
        self._cors = _CORS if enable_cors else []
        self._routes: dict[str, Callable[[], Awaitable[tuple[int, bytes, Headers]]]] = {
            LIVENESS_PATH: _alive,
            READINESS_PATH: self._readiness,
            LIST_MODELS_PATH: self._list_models,
        }
        if metrics_path:
            self._routes[metrics_path] = self._metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        route = self._routes.get(scope["path"])
        if route is not None:
            if scope["method"] not in ("GET", "HEAD"):
                await _respond(send, 405, json_body.encode_error(
                    f"Method {scope['method']} is not allowed on {scope['path']}"), _JSON)
                return
            await _respond(send, *await route())
            return
        # TF Serving matches its URL grammar on the path as sent, before any unescaping.
        path = scope.get("raw_path", scope["path"].encode()).decode("latin-1").split("?", 1)[0]
        if path[:4].lower() != "/v1/":
            await _respond(send, 404, _NOT_FOUND_PAGE, [(b"content-type", b"text/html")])
            return
        record = request_record.begin("REST")
        try:
            status, payload, headers = await self._v1(scope, receive, path, record)
            record.http_status, record.response_bytes = status, len(payload)
            await _respond(send, status, payload, headers)
        finally:
            # TF Serving's API label is "" for GETs; the access log keeps status/metadata.
            self._observer.finish(record, metric_api=record.api if record.api in _POST_VERBS
                                  else "")

    async def _v1(self, scope: Scope, receive: Receive, path: str,
                  record: request_record.RequestRecord) -> tuple[int, bytes, Headers]:
        method: str = scope["method"]
        if method == "OPTIONS" and self._cors:
            return self._preflight(scope, record)
        try:
            if self._read_length:
                record.request_bytes = body.content_length(scope)
                body.check_declared_length(record.request_bytes, self._max_body_bytes)
            with self._body_budget.holding() as share:
                content = await body.read(scope, receive, self._max_body_bytes, share)
                return 200, await self._api.handle(method, path, content), [*_JSON, *self._cors]
        except errors.ServingError as error:
            record.code = error.code
            status = 413 if isinstance(error, body.BodyTooLarge) else errors.http_status(error.code)
            return status, json_body.encode_error(error.message), [*_JSON, *self._cors]
        except Exception:  # a bug must cost one request, never the server
            log.exception("Unexpected error handling %s %s", method, path)
            record.code = errors.Code.INTERNAL
            return 500, json_body.encode_error(errors.INTERNAL_MESSAGE), [*_JSON, *self._cors]

    def _preflight(self, scope: Scope,
                   record: request_record.RequestRecord) -> tuple[int, bytes, Headers]:
        origin = dict(scope["headers"]).get(b"origin", b"")
        if b"http://" in origin or b"https://" in origin:
            return 200, b"", self._cors
        record.code = errors.Code.INVALID_ARGUMENT
        return 400, json_body.encode_error("Origin header is missing in CORS preflight"), [
            *_JSON, *self._cors]

    async def _readiness(self) -> tuple[int, bytes, Headers]:
        readiness = await self._view.readiness()
        payload = json_body.dumps({"ready": readiness.ready, "models": {
            name: {"available_versions": [str(v) for v in versions]}
            for name, versions in sorted(readiness.available.items())}})
        return (200 if readiness.ready else 503), payload, _JSON

    async def _metrics(self) -> tuple[int, bytes, Headers]:
        try:
            families = await self._view.metric_families()
        except errors.ServingError as error:  # a worker did not answer: no partial sums
            return errors.http_status(error.code), json_body.encode_error(error.message), _JSON
        return 200, exposition.render_families(families), [
            (b"content-type", exposition.CONTENT_TYPE)]

    async def _list_models(self) -> tuple[int, bytes, Headers]:
        models = []
        for name in sorted(self._core.model_names):
            entry: dict[str, Any] = {"name": name, "model_version_status": []}
            try:
                entry.update(json_format.MessageToDict(
                    await self._view.status(name, None),
                    always_print_fields_with_no_presence=True, preserving_proto_field_name=True))
            except errors.ServingError as error:
                if error.code != errors.Code.NOT_FOUND:
                    return errors.http_status(error.code), json_body.encode_error(
                        error.message), _JSON
                # configured, no version found yet
            entry["version_labels"] = {k: str(v) for k, v in self._core.labels(name).items()}
            models.append(entry)
        return 200, json_body.dumps({"models": models}), _JSON


async def _alive() -> tuple[int, bytes, Headers]:
    return 200, b'{"status": "alive"}\n', _JSON


async def _respond(send: Send, status: int, payload: bytes, headers: Headers) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
