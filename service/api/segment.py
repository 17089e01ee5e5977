"""POST /v1/segment"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request, Response

from ..errors import InvalidArgument, error_responses
from ..inference import MAX_DETECTIONS
from ..segmentation import Segmenter, SegmentOptions, SegmentResult
from ..vision.encode import MEDIA_TYPES, ImageFormat, format_from_accept
from .deps import ServiceDep, SettingsDep
from .images import IMAGE_REQUEST_BODY, request_images
from .responses import json_result
from .routing import inference_route

router = APIRouter(tags=["tasks"])


@router.post(
    "/v1/segment",
    response_model=SegmentResult | list[SegmentResult],
    summary="Segment images (raw image/* body, multipart 'file', JSON base64 or URLs; several give a list)",
    description="Semantic models: the class map of the EXIF-upright original image as a base64 PNG (one "
    "byte per pixel = class id) and the classes present with their share of the pixels; "
    "`probabilities=true` adds one probability PNG per class. Instance models: per instance "
    "label, score, box in original pixels and the mask as COCO RLE (`mask_format=rle`, "
    "default), polygons or a PNG. With `annotated=true` (or `Accept: image/png` / "
    "`image/jpeg`) the answer is the photo with the masks painted on it and a legend.",
    openapi_extra={"requestBody": IMAGE_REQUEST_BODY},
    responses={
        **error_responses(400, 404, 413, 415, 503, 504),
        200: {"content": {"image/png": {}, "image/jpeg": {}}},
    },
)
@inference_route("segment")
async def segment(
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    model: str | None = Query(None, description="model name; default: the first segmentation model"),
    version: int | None = Query(None, ge=1, description="model version; default: the newest"),
    mask_format: Literal["rle", "polygon", "png"] = Query(
        "rle", description="instance masks: COCO RLE, polygons or PNG"
    ),
    probabilities: bool = Query(False, description="semantic models: add per-class probability maps"),
    score_threshold: float | None = Query(
        None, ge=0, le=1, description="instance models; default: the model's"
    ),
    iou_threshold: float | None = Query(None, ge=0, le=1, description="instance models: NMS IoU"),
    max_detections: int | None = Query(None, ge=1, le=MAX_DETECTIONS, description="instance models"),
    classes: str | None = Query(None, description="instance models: keep only these (names or ids)"),
    polygon_tolerance: float = Query(1.0, ge=0, le=100, description="polygon simplification, pixels"),
    annotated: bool = Query(False, description="return the image with the masks painted instead of JSON"),
) -> Response | SegmentResult | list[SegmentResult]:
    images = await request_images(request, settings)
    options = SegmentOptions(
        mask_format, probabilities, score_threshold, iou_threshold, max_detections, classes, polygon_tolerance
    )
    segmenter = Segmenter(service)
    image_format = format_from_accept(request.headers.get("accept"))
    if annotated or image_format is not None:
        if len(images) > 1:
            raise InvalidArgument("an annotated answer holds one image; send one image or ask for JSON")
        fmt: ImageFormat = "jpeg" if image_format == "jpeg" else "png"
        result, data = await segmenter.segment_annotated(images[0], model, options, version, fmt)
        count = len(result.instances) if result.instances is not None else len(result.classes or ())
        headers = {
            "X-Model": result.model,
            "X-Model-Version": str(result.version or ""),
            "X-Segment-Count": str(count),
        }
        return Response(data, media_type=MEDIA_TYPES[fmt], headers=headers)
    results = await segmenter.segment(images, model, options, version)
    return json_result(images, results)
