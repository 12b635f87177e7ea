"""The standard grpc.health.v1 service, with the service names TF Serving marks SERVING."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVICE_NAMES = ("", "ModelService", "PredictionService")


async def add_service(server: grpc.aio.Server) -> health.aio.HealthServicer:
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in SERVICE_NAMES:
        await servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return servicer
