"""POST /v1/super-resolve"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request, Response

from ..errors import InvalidArgument, error_responses
from ..vision.encode import MEDIA_TYPES, encode, format_from_accept
from .deps import ServiceDep, SettingsDep
from .images import IMAGE_REQUEST_BODY, request_images
from .routing import inference_route

router = APIRouter(tags=["tasks"])


@router.post(
    "/v1/super-resolve",
    response_class=Response,
    summary="Upscale an image (raw image/* body or multipart 'file'); answers with the image",
    description="The output format is `format`, else the first image type in `Accept`, else PNG. "
                "An alpha channel is kept (PNG, WebP). Headers: `X-Scale`, `X-Model`, `X-Model-Version`, "
                "`X-Input-Size`, `X-Output-Size` (WxH), `X-Tiles`.",
    openapi_extra={"requestBody": IMAGE_REQUEST_BODY},
    responses={**error_responses(400, 404, 413, 415, 503, 504),
               200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}},
)
@inference_route("super_resolve")
async def super_resolve(
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    model: str | None = Query(None, description="model name; default: the first super-resolution model"),
    version: int | None = Query(None, ge=1, description="model version; default: the newest"),
    image_format: Literal["png", "jpeg", "webp"] | None = Query(None, alias="format"),
    quality: int = Query(90, ge=1, le=100, description="JPEG/WebP quality"),
) -> Response:
    images = await request_images(request, settings)
    if len(images) > 1:
        raise InvalidArgument("super-resolution takes one image per request")
    fmt = image_format or format_from_accept(request.headers.get("accept"), "png") or "png"
    result = await service.super_resolve(images[0], model, version)
    data = await service.run_blocking(encode, result.pixels, fmt, quality)
    h, w = result.pixels.shape[:2]
    headers = {
        "X-Scale": str(result.scale), "X-Model": result.model, "X-Model-Version": str(result.version or ""),
        "X-Input-Size": f"{result.input_size[0]}x{result.input_size[1]}", "X-Output-Size": f"{w}x{h}",
        "X-Tiles": str(result.tiles),
    }
    return Response(data, media_type=MEDIA_TYPES[fmt], headers=headers)
