"""ASGI middleware: metrics per route, and cheap admission before a request body is read."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import Overloaded, VisionGateError, error_response
from .metrics import Metrics


class MetricsMiddleware:
    """Counts requests and latency per route template (not per raw path: bounded label sets)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        self.metrics.open_requests += 1
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.open_requests -= 1
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)


def _is_inference(path: str) -> bool:
    return (path.startswith("/v1/") and not path.startswith("/v1/models")) or path.endswith("/infer")


class AdmissionMiddleware:
    """Refuses an inference request with an immediate 503 + Retry-After when ``limit`` requests
    are open already (0 = no limit), or when ``early`` says its model's queue would refuse it.

    This runs before the body is read or decoded, so a flood costs almost nothing per refused
    request and memory stays bounded; the per-model queues (backends/batcher.py) still refuse on
    their time estimate what gets past. Health, metrics and model listing are never refused.
    """

    def __init__(self, app: ASGIApp, limit: int, metrics: Metrics | None = None,
                 early: Callable[[Scope], VisionGateError | None] | None = None,
                 drain_limit: int = 20 * 2**20) -> None:
        self.app = app
        self.drain_limit = drain_limit
        self.limit = limit
        self.metrics = metrics
        self.early = early  # e.g. shedding.early_refusal: the request's model is already overloaded
        self.open = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_inference(scope["path"]):
            await self.app(scope, receive, send)
            return
        refused: VisionGateError | None = None
        if self.limit and self.open >= self.limit:
            refused = Overloaded(f"{self.open} requests are being served; retry later", retry_after_s=1)
        elif self.early is not None:
            refused = self.early(scope)
            if refused is not None:
                # read the body (and drop it) so the client's keep-alive connection stays usable:
                # answering first makes uvicorn close it, and a pooled client then sees a
                # connection error instead of this 503. Routing, parsing and decoding are still saved.
                await _discard_body(receive, self.drain_limit)
        if refused is not None:
            if self.metrics is not None:
                self.metrics.rejected.labels(type(refused).__name__).inc()
            await error_response(refused)(scope, receive, send)
            return
        self.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open -= 1


async def _discard_body(receive: Receive, limit: int) -> None:
    """Receive the request body and drop it, up to ``limit`` bytes (past that the connection closes)."""
    seen = 0
    while seen <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
