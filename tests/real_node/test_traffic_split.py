"""A canary at 10 % and then 50 % through a real Gateway API implementation (Traefik): over 1,000
requests the canary's version answers within 4 points of its weight, for REST and for gRPC."""

from __future__ import annotations

import json
import pathlib

import node as real_node
import traefik
import traffic
import workloads
from kube_control_plane import ControlPlane

REQUESTS = 1000
TOLERANCE = 0.04
STABLE, CANARY = 1, 2


def canary_deployment(
    models: pathlib.Path, parent: dict[str, str], weight: int
) -> workloads.Manifest:
    return workloads.model_deployment(
        "affine",
        traffic.MODEL,
        models,
        stable={"version": STABLE},
        canary={"version": CANARY, "weight": weight},
        replicas=1,
        traffic={"provider": "gateway-api", "parentRef": parent, "grpcParentRef": parent},
    )


def test_canary_share_follows_its_weight_for_rest_and_grpc(
    control_plane: ControlPlane,
    node: real_node.RealNode,
    namespace: str,
    affine_models: pathlib.Path,
    gateway_controller: traefik.Traefik,
    gateway: dict[str, str],
) -> None:
    workloads.apply(control_plane, namespace, canary_deployment(affine_models, gateway, 10))
    grpc_versions = traffic.GrpcVersions()
    try:
        for weight in (10, 50):
            if weight != 10:
                patch = {"spec": {"canary": {"weight": weight}}}
                control_plane.kubectl(
                    "patch",
                    "md",
                    "affine",
                    "-n",
                    namespace,
                    "--type=merge",
                    "-p",
                    json.dumps(patch),
                )
            workloads.wait_condition(control_plane, namespace, "affine")
            traffic.wait_canary_weight(gateway_controller, namespace, weight)
            for kind, call in (("REST", traffic.rest_version), ("gRPC", grpc_versions)):
                shares = traffic.shares(call, REQUESTS)
                assert set(shares) <= {STABLE, CANARY}, (kind, shares)
                observed = shares.get(CANARY, 0.0)
                assert abs(observed - weight / 100) <= TOLERANCE, (kind, weight, shares)
    finally:
        grpc_versions.close()
