"""``create_app(settings, backend=None)``: wiring and lifespan only."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from . import __version__
from .api import classify, detect, health, models, segment, super_resolve, ui
from .api import v2 as oip_v2
from .api.routing import RouteTable
from .backends.base import Backend
from .deadlines import DeadlineMiddleware
from .disconnects import CancelOnDisconnect
from .errors import CatchAllMiddleware, install_error_handlers
from .grpc import start_grpc
from .inference import InferenceService
from .memory import release_when_quiet
from .metrics import Metrics
from .middleware import AdmissionMiddleware, MetricsMiddleware, OpenRequests
from .schemas import document_limits
from .security import install_security
from .settings import Settings


def make_backend(settings: Settings, metrics: Metrics | None = None) -> Backend:
    if settings.backend == "triton":
        from .backends.triton import TritonBackend  # needs the `triton` extra

        return TritonBackend(settings)
    if settings.backend == "fake":
        from .backends.fake import FakeBackend

        return FakeBackend(settings, item_delay_s=settings.fake_item_delay_s,
                           on_batch=metrics.observe_batch if metrics else None)
    from .backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(settings, on_batch=metrics.observe_batch if metrics else None)


def _poller(settings: Settings, backend: Backend) -> asyncio.Task[None] | None:
    if settings.model_control != "poll":
        return None
    from .backends.model_control import poll_repository
    from .backends.onnxruntime import OnnxRuntimeBackend

    if not isinstance(backend, OnnxRuntimeBackend):  # Triton polls its own repository
        return None
    return asyncio.create_task(poll_repository(backend, settings.model_poll_interval_s), name="model-poll")


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    open_requests = OpenRequests()
    metrics.in_flight.set_function(lambda: open_requests.count)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        chosen = backend or make_backend(settings, metrics)
        await chosen.start()
        service = InferenceService(chosen, settings)
        app.state.service = service
        app.state.draining = False
        # Everything loaded so far (FastAPI, pydantic, onnxruntime, models: ~80k objects) lives as
        # long as the process. Frozen, the collector stops re-scanning it: a full collection took
        # ~47 ms with the GIL held, a pause every request in flight felt (the p99 at load).
        gc.collect()
        gc.freeze()
        releaser = asyncio.create_task(release_when_quiet(
            settings.memory_release_interval_s, lambda: open_requests.count, quiet_at=settings.inference_workers))
        poller = _poller(settings, chosen)
        grpc_server = await start_grpc(service, settings, metrics, open_requests, lambda: app.state.draining,
                                       app.state.gate)
        try:
            yield
        finally:
            app.state.draining = True
            if grpc_server is not None:
                await grpc_server.stop(settings.drain_timeout_s)
            releaser.cancel()
            if poller is not None:
                poller.cancel()
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
    app.include_router(segment.router)
    app.include_router(models.router)
    app.include_router(health.router)
    app.include_router(oip_v2.router)
    app.include_router(ui.router)
    document_limits(app, settings)  # the OpenAPI schema states every limit the server enforces
    # Starlette wraps each added middleware around the ones added before it: the LAST added runs
    # first. So a request meets Metrics (sees every answer), then Admission (refuses before
    # anything is read), then CancelOnDisconnect (a client that leaves stops its work), then
    # Deadline, then CatchAll (a bug's 500 keeps the connection usable).
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(DeadlineMiddleware, default_s=settings.request_timeout_s)
    app.add_middleware(CancelOnDisconnect)
    # which routes run models, from the app's own routes: read by admission and the request log
    app.state.inference_routes = RouteTable(lambda: app.router.routes)
    app.add_middleware(AdmissionMiddleware, limit=settings.max_open_requests, metrics=metrics,
                       routes=app.state.inference_routes,
                       open_requests=open_requests, drain_limit=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    # keys, rate limits, request logs and tracing, placed around Metrics/Admission by themselves:
    # [CORS] -> RequestLog -> Tracing -> Metrics -> Auth -> Admission -> ...
    install_security(app, settings)
    if settings.cors_origins:  # browsers on other origins (a separately hosted UI) may call the API
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["*"], expose_headers=["Retry-After", "X-Scale", "X-Model",
                                                                "X-Model-Version", "X-Detection-Count"])
    return app
