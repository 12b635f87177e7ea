"""TF Serving's REST URL grammar (http_rest_api_handler.cc regexes), as parsed routes."""

from __future__ import annotations

import dataclasses
import re
from typing import Literal
from urllib.parse import unquote

from berth_server import errors

_INT64_MAX = 2**63 - 1
_PREDICT = re.compile(
    r"(?i)/v1/models/(?P<name>[^/:]+)(?:(?:/versions/(?P<version>\d+))|"
    r"(?:/labels/(?P<label>[^/:]+)))?:(?P<verb>classify|regress|predict)")
_MODEL = re.compile(
    r"(?i)/v1/models(?:/(?P<name>[^/:]+))?(?:(?:/versions/(?P<version>\d+))|"
    r"(?:/labels/(?P<label>[^/:]+)))?(?:/(?P<metadata>metadata))?")

Verb = Literal["predict", "classify", "regress", "status", "metadata"]


@dataclasses.dataclass(frozen=True)
class Route:
    verb: Verb
    model_name: str
    version: int | None
    label: str | None


def match(method: str, path: str) -> Route:
    """The route of a /v1 request; anything else is TF Serving's `Malformed request`."""
    if method == "POST" and (m := _PREDICT.fullmatch(path)):
        verb: Verb
        if m["verb"] == "predict":  # the dispatcher compares the verb exactly, in lowercase
            verb = "predict"
        elif m["verb"] == "classify":
            verb = "classify"
        elif m["verb"] == "regress":
            verb = "regress"
        else:
            raise _malformed(method, path)
        return Route(verb, unquote(m["name"]), _version(m["version"]), _label(m["label"]))
    if method == "GET" and (m := _MODEL.fullmatch(path)):
        if not m["name"]:
            raise errors.invalid_argument("Missing model name in request.")
        return Route("metadata" if m["metadata"] else "status", unquote(m["name"]),
                     _version(m["version"]), _label(m["label"]))
    raise _malformed(method, path)


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    value = int(text)
    if value > _INT64_MAX:
        raise errors.invalid_argument(f"Failed to convert version: {text} to numeric.")
    return value


def _label(text: str | None) -> str | None:
    return unquote(text) if text is not None else None


def _malformed(method: str, path: str) -> errors.ServingError:
    return errors.invalid_argument(f"Malformed request: {method} {path}")
