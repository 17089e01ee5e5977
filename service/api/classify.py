"""POST /v1/classify"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from ..errors import error_responses
from ..schemas import ClassifyResult
from .deps import ServiceDep, SettingsDep
from .images import IMAGE_REQUEST_BODY, request_images
from .responses import json_result
from .routing import inference_route

router = APIRouter(tags=["tasks"])


@router.post(
    "/v1/classify",
    response_model=ClassifyResult | list[ClassifyResult],
    summary="Classify an image (raw image/* body or multipart 'file'; several files give a list)",
    openapi_extra={"requestBody": IMAGE_REQUEST_BODY},
    responses=error_responses(400, 404, 413, 415, 503, 504),
)
@inference_route("classify")
async def classify(
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    model: str | None = Query(None, description="model name; default: the first classifier"),
    top_k: int = Query(5, ge=1, description="how many classes to return"),
    version: int | None = Query(None, ge=1, description="model version; default: the newest"),
) -> ClassifyResult | list[ClassifyResult]:
    images = await request_images(request, settings)
    results = await service.classify(images, model, top_k, version)
    return json_result(images, results)  # type: ignore[return-value]
