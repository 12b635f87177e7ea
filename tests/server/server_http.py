"""Plain HTTP against a test server: raw paths, methods and bodies, exactly as sent.

`http.client` rather than a client library so that a test can send what a library would
refuse or normalise (an uppercase verb, `PUT`, a path with `-1` in it, bytes that are not UTF-8).
"""

from __future__ import annotations

import dataclasses
import http.client
import json
from typing import Any


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> str:
        """The `{"error": ...}` message of an error reply."""
        document = self.json()
        assert set(document) == {"error"}, document
        return str(document["error"])


def call(port: int, method: str, path: str, body: bytes | str | dict[str, Any] | None = None,
         headers: dict[str, str] | None = None, timeout_seconds: float = 60) -> Reply:
    """Send one request to 127.0.0.1:`port`; a dict body is sent as JSON."""
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_seconds)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                     response.read())
    finally:
        connection.close()


def post(port: int, path: str, body: bytes | str | dict[str, Any] | None = None,
         headers: dict[str, str] | None = None) -> Reply:
    return call(port, "POST", path, body, headers)


def get(port: int, path: str) -> Reply:
    return call(port, "GET", path)
