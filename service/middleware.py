"""ASGI middleware: metrics per route, and cheap admission before a request body is read."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import Overloaded, error_response
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
    """Refuses inference requests past ``limit`` open at once with an immediate 503 + Retry-After.

    This runs before the body is read or decoded, so a flood costs almost nothing per refused
    request and memory stays bounded; the per-model queues (backends/batcher.py) then refuse on
    their time estimate. Health, metrics and model listing are never refused.
    """

    def __init__(self, app: ASGIApp, limit: int, metrics: Metrics | None = None) -> None:
        self.app = app
        self.limit = limit
        self.metrics = metrics
        self.open = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.limit or not _is_inference(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.open >= self.limit:
            if self.metrics is not None:
                self.metrics.rejected.labels("Overloaded").inc()
            refusal = error_response(Overloaded(f"{self.open} requests are being served; retry later",
                                                retry_after_s=1))
            await refusal(scope, receive, send)
            return
        self.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open -= 1
