"""``grpc.health.v1.Health/Check`` (as Triton serves it): SERVING when the gateway is ready, so
Kubernetes ``grpc:`` probes and gRPC load balancers see the same readiness as ``/readyz``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..protocol import health_pb2 as pb
from ..protocol import health_pb2_grpc as pb_grpc

#: the services a Check may name ("" is the server as a whole)
SERVICES = ("", "inference.GRPCInferenceService")


class HealthServicer(pb_grpc.HealthServicer):
    def __init__(self, ready: Callable[[], bool]) -> None:
        self.ready = ready

    async def Check(self, request: pb.HealthCheckRequest, context: Any) -> pb.HealthCheckResponse:
        if request.service not in SERVICES:
            return pb.HealthCheckResponse(status=pb.HealthCheckResponse.SERVICE_UNKNOWN)
        status = pb.HealthCheckResponse.SERVING if self.ready() else pb.HealthCheckResponse.NOT_SERVING
        return pb.HealthCheckResponse(status=status)
