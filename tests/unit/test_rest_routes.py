"""The /v1 URL grammar: which (method, path) is which route, and TF Serving's error texts."""

from __future__ import annotations

import pytest

from berth_server import errors
from berth_server.rest import routes
from berth_server.rest.routes import Route


@pytest.mark.parametrize("method, path, route", [
    ("POST", "/v1/models/m:predict", Route("predict", "m", None, None)),
    ("POST", "/v1/models/m:classify", Route("classify", "m", None, None)),
    ("POST", "/v1/models/m:regress", Route("regress", "m", None, None)),
    ("POST", "/v1/models/m/versions/3:predict", Route("predict", "m", 3, None)),
    ("POST", "/v1/models/m/versions/007:predict", Route("predict", "m", 7, None)),
    ("POST", "/v1/models/m/labels/stable:classify", Route("classify", "m", None, "stable")),
    ("POST", "/v1/models/m/versions/9223372036854775807:predict",
     Route("predict", "m", 2**63 - 1, None)),
    ("GET", "/v1/models/m", Route("status", "m", None, None)),
    ("GET", "/v1/models/m/versions/2", Route("status", "m", 2, None)),
    ("GET", "/v1/models/m/labels/canary", Route("status", "m", None, "canary")),
    ("GET", "/v1/models/m/metadata", Route("metadata", "m", None, None)),
    ("GET", "/v1/models/m/versions/2/metadata", Route("metadata", "m", 2, None)),
    ("GET", "/v1/models/m/labels/canary/metadata", Route("metadata", "m", None, "canary")),
    ("GET", "/v1/models/m.v2-final_x", Route("status", "m.v2-final_x", None, None)),
    ("GET", "/v1/models/metadata", Route("status", "metadata", None, None)),  # a model's name
    ("GET", "/v1/models/metadata/metadata", Route("metadata", "metadata", None, None)),
])
def test_a_v1_path_is_parsed_into_its_route(method: str, path: str, route: Route) -> None:
    assert routes.match(method, path) == route


@pytest.mark.parametrize("method, path, route", [
    ("POST", "/v1/models/my%20model:predict", Route("predict", "my model", None, None)),
    ("POST", "/v1/models/a%2Fb:predict", Route("predict", "a/b", None, None)),
    ("POST", "/v1/models/a%3Ab:predict", Route("predict", "a:b", None, None)),
    ("POST", "/v1/models/m/labels/can%2Fary:predict", Route("predict", "m", None, "can/ary")),
    ("GET", "/v1/models/caf%C3%A9/labels/%C3%BCber", Route("status", "café", None, "über")),
    ("GET", "/v1/models/100%25/metadata", Route("metadata", "100%", None, None)),
])
def test_url_escaped_names_and_labels_are_unescaped(method: str, path: str, route: Route) -> None:
    assert routes.match(method, path) == route


@pytest.mark.parametrize("method, path, route", [
    ("POST", "/V1/MODELS/m:predict", Route("predict", "m", None, None)),
    ("POST", "/v1/Models/m/Versions/2:regress", Route("regress", "m", 2, None)),
    ("POST", "/v1/models/m/LABELS/x:classify", Route("classify", "m", None, "x")),
    ("GET", "/V1/MODELS/M/METADATA", Route("metadata", "M", None, None)),  # names keep case
])
def test_the_path_words_match_in_any_case(method: str, path: str, route: Route) -> None:
    assert routes.match(method, path) == route


@pytest.mark.parametrize("method, path", [
    # the regex takes any case, but the verb is dispatched in lowercase only (as TF Serving)
    ("POST", "/v1/models/m:PREDICT"),
    ("POST", "/v1/models/m:Classify"),
    ("POST", "/v1/models/m/versions/2:Regress"),
    # methods are compared exactly
    ("post", "/v1/models/m:predict"),
    ("GET", "/v1/models/m:predict"),
    ("PUT", "/v1/models/m"),
    ("POST", "/v1/models/m"),
    ("DELETE", "/v1/models/m/metadata"),
    # paths outside the grammar
    ("POST", "/v1/models/m:explain"),
    ("POST", "/v1/models/:predict"),
    ("POST", "/v1/models/m/versions/:predict"),
    ("POST", "/v1/models/m/versions/-1:predict"),
    ("POST", "/v1/models/m/versions/1.5:predict"),
    ("POST", "/v1/models/m/versions/1/labels/x:predict"),
    ("POST", "/v1/models/m:predict/"),
    ("GET", "/v1/models/"),
    ("GET", "/v1/models/m/"),
    ("GET", "/v1/models/m/versions/two"),
    ("GET", "/v1/models/m/metadata/extra"),
    ("GET", "/v2/models/m"),
    ("GET", "/models/m"),
    ("GET", "/"),
])
def test_anything_else_is_a_malformed_request(method: str, path: str) -> None:
    with pytest.raises(errors.ServingError) as raised:
        routes.match(method, path)
    assert (raised.value.code, raised.value.message) == (
        errors.Code.INVALID_ARGUMENT, f"Malformed request: {method} {path}")


@pytest.mark.parametrize("path", ["/v1/models", "/V1/MODELS"])
def test_a_status_request_without_a_model_name_is_refused(path: str) -> None:
    with pytest.raises(errors.ServingError) as raised:
        routes.match("GET", path)
    assert (raised.value.code, raised.value.message) == (
        errors.Code.INVALID_ARGUMENT, "Missing model name in request.")


@pytest.mark.parametrize("method, path, text", [
    ("POST", "/v1/models/m/versions/9223372036854775808:predict", "9223372036854775808"),
    ("GET", "/v1/models/m/versions/99999999999999999999999", "99999999999999999999999"),
    ("GET", "/v1/models/m/versions/09223372036854775808/metadata", "09223372036854775808"),
])
def test_a_version_past_int64_cannot_be_converted(method: str, path: str, text: str) -> None:
    with pytest.raises(errors.ServingError) as raised:
        routes.match(method, path)
    assert (raised.value.code, raised.value.message) == (
        errors.Code.INVALID_ARGUMENT, f"Failed to convert version: {text} to numeric.")
