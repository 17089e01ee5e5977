"""POST /v1/detect"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request, Response

from ..errors import InvalidArgument, error_responses
from ..inference import MAX_DETECTIONS, DetectOptions
from ..schemas import DetectResult
from ..vision.encode import MEDIA_TYPES, ImageFormat, format_from_accept
from .deps import ServiceDep, SettingsDep
from .images import IMAGE_REQUEST_BODY, request_images
from .responses import json_result
from .routing import inference_route

router = APIRouter(tags=["tasks"])


@router.post(
    "/v1/detect",
    response_model=DetectResult | list[DetectResult],
    summary="Detect objects (raw image/* body or multipart 'file'; several files give a list)",
    description="Boxes are in the pixels of the EXIF-upright original image. With `annotated=true` "
                "(or `Accept: image/png` / `image/jpeg`) the answer is the image with the boxes drawn, "
                "at its original size, with the number of detections in `X-Detection-Count`.",
    openapi_extra={"requestBody": IMAGE_REQUEST_BODY},
    responses={**error_responses(400, 404, 413, 415, 503, 504),
               200: {"content": {"image/png": {}, "image/jpeg": {}}}},
)
@inference_route("detect")
async def detect(
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    model: str | None = Query(None, description="model name; default: the first detector"),
    version: int | None = Query(None, ge=1, description="model version; default: the newest"),
    score_threshold: float | None = Query(None, ge=0, le=1, description="default: the model's"),
    iou_threshold: float | None = Query(None, ge=0, le=1, description="NMS IoU; default: the model's"),
    max_detections: int | None = Query(None, ge=1, le=MAX_DETECTIONS, description="default: the model's"),
    classes: str | None = Query(None, description="keep only these: comma-separated label names or ids"),
    box_format: Literal["xyxy", "xywh", "normalized"] = Query("xyxy", alias="format"),
    annotated: bool = Query(False, description="return the image with boxes drawn instead of JSON"),
) -> Response | DetectResult | list[DetectResult]:
    images = await request_images(request, settings)
    options = DetectOptions(score_threshold, iou_threshold, max_detections, classes, box_format)
    image_format = format_from_accept(request.headers.get("accept"))
    if annotated or image_format is not None:
        if len(images) > 1:
            raise InvalidArgument("an annotated answer holds one image; send one image or ask for JSON")
        fmt: ImageFormat = "jpeg" if image_format == "jpeg" else "png"
        result, data = await service.detect_annotated(images[0], model, options, version, fmt)
        headers = {"X-Model": result.model, "X-Model-Version": str(result.version or ""),
                   "X-Detection-Count": str(len(result.detections))}
        return Response(data, media_type=MEDIA_TYPES[fmt], headers=headers)
    results = await service.detect(images, model, options, version)
    return json_result(images, results)
