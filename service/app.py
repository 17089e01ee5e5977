"""``create_app(settings, backend=None)``: wiring and lifespan only."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__
from .api import classify, detect, health, models, super_resolve
from .api import ui
from .api import v2 as oip_v2
from .backends.base import Backend
from .errors import install_error_handlers
from .inference import InferenceService
from .metrics import Metrics
from .settings import Settings


def make_backend(settings: Settings, metrics: Metrics | None = None) -> Backend:
    if settings.backend == "triton":
        from .backends.triton import TritonBackend  # needs the `triton` extra

        return TritonBackend(settings)
    from .backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(settings, on_batch=metrics.observe_batch if metrics else None)


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
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        chosen = backend or make_backend(settings, metrics)
        await chosen.start()
        service = InferenceService(chosen, settings)
        app.state.service = service
        app.state.draining = False
        try:
            yield
        finally:
            app.state.draining = True
            await chosen.close()
            service.close()

    app = FastAPI(
        title="visiongate",
        version=__version__,
        summary="Classification, detection and super-resolution over one Triton model repository",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)
    app.include_router(classify.router)
    app.include_router(detect.router)
    app.include_router(super_resolve.router)
    app.include_router(models.router)
    app.include_router(health.router)
    app.include_router(oip_v2.router)
    app.include_router(ui.router)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
