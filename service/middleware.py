"""ASGI middleware: metrics per route, and admission, the one owner of "how many are open".

Admission runs before a request body is read. It refuses an inference request with an immediate
503 + Retry-After when ``limit`` requests are open already, or when the model it is for (named
from the path and query by the application's own routes, see ``api/routing.py``) would refuse
it now (``Backend.refusal``). The model's own admission (``Backend.admit``, all of a request's
images or none) still decides later what gets past; this only answers earlier, so a flood costs
almost nothing per refused request. Health, metrics and model listing are never refused.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api.routing import RouteTable
from .disconnects import CLIENT_CLOSED_KEY
from .errors import Overloaded, VisionGateError, error_response, protocol_of
from .metrics import Metrics

#: the status counted for a request whose client went away before it was answered (as nginx does)
CLIENT_CLOSED = 499


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

        try:
            await self.app(scope, receive, send_wrapper)
        except (asyncio.CancelledError, OSError):
            status = CLIENT_CLOSED
            raise
        finally:
            if scope.get(CLIENT_CLOSED_KEY):
                status = CLIENT_CLOSED
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)


class OpenRequests:
    """The one count of inference requests being served, kept by ``AdmissionMiddleware`` and read
    by the metrics gauge and the memory releaser."""

    def __init__(self) -> None:
        self.count = 0


class AdmissionMiddleware:
    """Admission before the body is read."""

    def __init__(self, app: ASGIApp, limit: int, metrics: Metrics, open_requests: OpenRequests,
                 routes: RouteTable, drain_limit: int = 20 * 2**20) -> None:
        self.app = app
        self.limit = limit
        self.metrics = metrics
        self.drain_limit = drain_limit
        self.open = open_requests
        self.routes = routes

    def _early_refusal(self, scope: Scope, task: str | None, model: str | None) -> Exception | None:
        service: Any = getattr(scope["app"].state, "service", None)
        if service is None:
            return None
        if model is None:
            if task is None:
                return None
            try:
                model = service.default_model(task)
            except VisionGateError:
                return None  # the normal path answers why
        return service.backend.refusal(model)  # type: ignore[no-any-return]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        target = self.routes.target(scope)
        if target is None:
            await self.app(scope, receive, send)
            return
        refused: Exception | None = None
        if self.limit and self.open.count >= self.limit:
            refused = Overloaded(f"{self.open.count} requests are being served; retry later", retry_after_s=1)
        else:
            refused = self._early_refusal(scope, target.task, target.model)
        if refused is not None:
            # read the body (and drop it) so the client's keep-alive connection stays usable:
            # answering first makes uvicorn close it, and a pooled client then sees a
            # connection error instead of this 503. Routing, parsing and decoding are still saved.
            await discard_body(receive, self.drain_limit)
            assert isinstance(refused, VisionGateError)
            self.metrics.rejected.labels(refused.type).inc()
            await error_response(refused, protocol_of(scope["path"]))(scope, receive, send)
            return
        self.open.count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open.count -= 1


async def discard_body(receive: Receive, limit: int) -> None:
    """Receive the request body and drop it, up to ``limit`` bytes (past that the connection closes)."""
    seen = 0
    while seen <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
