"""The rendered VirtualService, evaluated with Istio's documented matching rules.

Rules applied (istio.io, VirtualService reference): a VirtualService with `gateways` applies to
those gateways only, and to sidecars only when `mesh` is listed; without `gateways` it applies to
the mesh alone. The request's host must be one of `hosts`. `http` routes are tried in order and
the first whose match list holds wins (blocks in `match` are OR-ed, the fields of one block
AND-ed; no `match` matches everything). `uri.prefix` is a plain string prefix, `uri.exact` an
equal string, `uri.regex` an RE2 full match; `port` is the port the request was sent to, which
on a gateway is the gateway's own listener port.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from berth_operator import render, spec

OWNER = render.Owner(name="sentiment", namespace="ml", uid="uid")
GATEWAY = "istio-system/ml-gateway"
SERVICE_HOST = "sentiment.ml.svc.cluster.local"


@dataclass(frozen=True)
class Request:
    source: str  # a gateway as namespace/name, or "mesh" for a sidecar
    host: str
    port: int
    path: str


def virtual_service(**traffic: Any) -> dict[str, Any]:
    md = spec.parse(
        {
            "model": {"name": "sentiment", "storage": {"hostPath": {"path": "/m"}}},
            "stable": {"version": 7},
            "canary": {"version": 8, "weight": 20},
            "traffic": {"provider": "istio", **traffic},
        }
    )
    (vs,) = [
        o
        for o in render.children(md, OWNER, canary_on=True, weight=20)
        if o["kind"] == "VirtualService"
    ]
    vs_spec: dict[str, Any] = vs["spec"]
    return vs_spec


def _uri_holds(condition: dict[str, str], path: str) -> bool:
    if "prefix" in condition:
        return path.startswith(condition["prefix"])
    if "exact" in condition:
        return path == condition["exact"]
    return re.fullmatch(condition["regex"], path) is not None


def _block_holds(block: dict[str, Any], request: Request) -> bool:
    assert set(block) <= {"uri", "port"}, block  # the only fields evaluated here
    if "port" in block and block["port"] != request.port:
        return False
    return "uri" not in block or _uri_holds(block["uri"], request.path)


def route(vs: dict[str, Any], request: Request) -> list[tuple[str, int, int]] | None:
    """(destination host, port, weight) the request is sent to, or None when no route takes it."""
    if request.source not in vs.get("gateways", ["mesh"]) or request.host not in vs["hosts"]:
        return None
    for http in vs["http"]:
        blocks = http.get("match") or [{}]
        if any(_block_holds(block, request) for block in blocks):
            return [
                (r["destination"]["host"], r["destination"]["port"]["number"], r["weight"])
                for r in http["route"]
            ]
    return None


def to(port: int) -> list[tuple[str, int, int]]:
    return [
        ("sentiment-stable.ml.svc.cluster.local", port, 80),
        ("sentiment-canary.ml.svc.cluster.local", port, 20),
    ]


ON_GATEWAY = {"hostnames": ["sentiment.ml.example.com"], "gateways": [GATEWAY]}


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (
            Request(GATEWAY, "sentiment.ml.example.com", 80, "/v1/models/sentiment:predict"),
            to(8501),
        ),
        (
            Request(GATEWAY, "sentiment.ml.example.com", 443, "/v1/models/sentiment/metadata"),
            to(8501),
        ),
        (
            Request(
                GATEWAY,
                "sentiment.ml.example.com",
                443,
                "/tensorflow.serving.PredictionService/Predict",
            ),
            to(8500),
        ),
        (Request(GATEWAY, "sentiment.ml.example.com", 80, "/v1/models/sentimental:predict"), None),
        (Request("mesh", SERVICE_HOST, 8501, "/v1/models/sentiment/versions/8:predict"), to(8501)),
        (
            Request("mesh", SERVICE_HOST, 8500, "/tensorflow.serving.ModelService/GetModelStatus"),
            to(8500),
        ),
        (
            Request("istio-system/other", "sentiment.ml.example.com", 80, "/v1/models/sentiment"),
            None,
        ),
    ],
)
def test_gateway_and_mesh_requests_reach_the_split_of_their_protocol(
    request_: Request, expected: list[tuple[str, int, int]] | None
) -> None:
    assert route(virtual_service(**ON_GATEWAY), request_) == expected


def test_without_gateways_the_mesh_reaches_the_split_by_service_name() -> None:
    vs = virtual_service()
    assert "gateways" not in vs
    request = Request("mesh", SERVICE_HOST, 8501, "/v1/models/sentiment:regress")
    assert route(vs, request) == to(8501)


def test_hostnames_without_gateways_still_cover_mesh_callers_of_the_service() -> None:
    vs = virtual_service(hostnames=["sentiment.ml.example.com"])
    assert route(vs, Request("mesh", SERVICE_HOST, 8501, "/v1/models/sentiment")) == to(8501)
