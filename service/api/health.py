"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..schemas import Health
from .deps import MetricsDep, ServiceDep

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, summary="Readiness: models loaded and backend reachable",
            responses={503: {"description": "not ready (starting, draining, or backend down)",
                             "model": Health}})
async def readyz(request: Request, service: ServiceDep) -> Response:
    backend = service.backend
    if getattr(request.app.state, "draining", False):
        return JSONResponse(Health(status="draining", backend=backend.name).model_dump(),
                            status_code=503, headers={"Retry-After": "5"})
    if not backend.ready():
        detail = "no model is loaded" if backend.name == "onnxruntime" else "the backend is not reachable"
        return JSONResponse(Health(status="not ready", backend=backend.name, detail=detail).model_dump(),
                            status_code=503, headers={"Retry-After": "2"})
    names = sorted(m.name for m in backend.models())
    return JSONResponse(Health(status="ready", backend=backend.name, models=names).model_dump())


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
