"""The gRPC server (``grpc.aio``) on the app's own event loop, started and stopped by the app's lifespan.

It shares everything with REST: the ``InferenceService`` (backend, admission, deadlines), the metrics
registry, the open-request count and the draining flag. ``stop`` refuses new calls at once and lets
calls in flight finish within the drain timeout, as uvicorn does for HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from ..inference import InferenceService
from ..metrics import Metrics
from ..middleware import OpenRequests
from ..protocol import grpc_service_pb2_grpc as pb_grpc
from ..protocol import health_pb2_grpc as health_grpc
from ..settings import Settings
from .health import HealthServicer
from .servicer import InferenceServicer

logger = logging.getLogger("visiongate")


class GrpcServer:
    def __init__(self, server: grpc.aio.Server, port: int) -> None:
        self._server = server
        self.port = port

    async def stop(self, grace_s: float) -> None:
        await self._server.stop(grace_s)


def _bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def start_grpc(service: InferenceService, settings: Settings, metrics: Metrics,
                     open_requests: OpenRequests, draining: Callable[[], bool]) -> GrpcServer | None:
    """Serve ``inference.GRPCInferenceService`` on ``settings.host:grpc_port`` (None when the port is 0).

    Raises ``RuntimeError`` when the port cannot be bound. grpc's default ``SO_REUSEPORT`` is kept, so
    several HTTP worker processes each serve the port (the kernel spreads connections among them).
    """
    if not settings.grpc_port:
        return None
    limit = settings.grpc_max_message_bytes
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
    ])
    servicer = InferenceServicer(service, settings, metrics, open_requests, draining)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    health = HealthServicer(lambda: not draining() and service.backend.ready())
    health_grpc.add_HealthServicer_to_server(health, server)  # type: ignore[no-untyped-call]
    address = _bind_address(settings.host, settings.grpc_port)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise RuntimeError(f"cannot serve gRPC on {address} ({exc}); set VISIONGATE_GRPC_PORT to a free port, "
                           "or 0 to turn gRPC off") from exc
    if port == 0:  # older grpcio answers 0 instead of raising
        raise RuntimeError(f"cannot serve gRPC on {address}; set VISIONGATE_GRPC_PORT to a free port, "
                           "or 0 to turn gRPC off")
    await server.start()
    logger.info("gRPC (KServe v2 / Triton) on %s", address)
    return GrpcServer(server, port)
