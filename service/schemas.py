"""Response shapes of the task API (pydantic: validated, documented in OpenAPI), and the limits
the OpenAPI schema states."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from .settings import Settings


class ClassScore(BaseModel):
    label: str
    class_id: int
    score: float = Field(description="probability in [0, 1]")


class ClassifyResult(BaseModel):
    model: str
    version: int | None
    predictions: list[ClassScore]


class ModelInfo(BaseModel):
    name: str
    task: str
    platform: str
    versions: list[int]
    input_size: list[int] | None = Field(description="[height, width]; null when any size is accepted")
    max_batch_size: int
    labels: int | None = Field(description="number of class labels, if any")
    parameters: dict[str, str]
    parity: dict[str, object] | None = Field(None, description="export parity report of the newest version")
    state: str = Field("READY", description="READY, LOADING or UNAVAILABLE (see reason)")
    provider: str = Field("", description="where it runs: onnxruntime's execution provider "
                          "(CPUExecutionProvider, CUDAExecutionProvider); empty on the Triton backend")
    inferred: dict[str, str] = Field(default_factory=dict, description="what the gateway filled in itself, "
                                     "and from where (config, ONNX metadata, output layout, graph)")
    warnings: list[str] = Field(default_factory=list, description="e.g. unknown parameters the gateway ignores")


class UnavailableModel(BaseModel):
    name: str
    state: str
    reason: str = Field(description="why it is not served (the load error)")


class ModelList(BaseModel):
    backend: str
    models: list[ModelInfo]
    unavailable: list[UnavailableModel] = Field(default_factory=list, description="models in the repository "
                                                "that are not served, with the reason")


class Health(BaseModel):
    status: str
    backend: str | None = None
    models: list[str] | None = None
    detail: str | None = None


class ImageSize(BaseModel):
    width: int
    height: int


class Detection(BaseModel):
    label: str
    class_id: int
    score: float = Field(description="confidence in [0, 1]")
    box: list[float] = Field(description="4 numbers in the response's box_format, original image pixels "
                                         "(EXIF-upright) or 0..1 for 'normalized'")


class DetectResult(BaseModel):
    model: str
    version: int | None
    image: ImageSize = Field(description="size of the (EXIF-upright) image the boxes refer to")
    box_format: str = Field(description="xyxy: x0,y0,x1,y1 px; xywh: x,y,width,height px (COCO); "
                                        "normalized: x0,y0,x1,y1 in 0..1")
    detections: list[Detection]


#: the task routes, and how many images each takes in one request (None: the gateway's setting)
_TASK_ROUTES: dict[str, int | None] = {"/v1/classify": None, "/v1/detect": None, "/v1/super-resolve": 1}


def document_limits(app: FastAPI, settings: Settings) -> None:
    """Write the limits that come from ``settings`` into the app's OpenAPI schema.

    Routes are declared at import, before any settings exist; the schema is generated on first
    request, so the numbers are filled in then: ``top_k`` up to ``max_top_k``, lists of images up to
    ``max_images_per_request`` (one for super-resolution), every body and base64 string up to
    ``max_body_bytes``. Applying it twice changes nothing.
    """
    if getattr(app.state, "limits_documented", False):
        return
    app.state.limits_documented = True
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for path, max_images in _TASK_ROUTES.items():
                operation = schema.get("paths", {}).get(path, {}).get("post")
                if operation is not None:
                    _limit_operation(operation, settings, max_images or settings.max_images_per_request)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _limit_operation(operation: dict[str, Any], settings: Settings, max_images: int) -> None:
    for parameter in operation.get("parameters", []):
        if parameter.get("name") == "top_k":
            parameter["schema"] = {**parameter.get("schema", {}), "maximum": settings.max_top_k}
    if "requestBody" not in operation:
        return
    # FastAPI puts the route's openapi_extra into the schema by reference: copy before changing
    body = operation["requestBody"] = copy.deepcopy(operation["requestBody"])
    limit = settings.max_body_bytes
    body["description"] = (f"at most {limit} bytes (VISIONGATE_MAX_BODY_BYTES), {max_images} image(s) "
                           f"of at most {settings.max_image_pixels} pixels each")
    body["x-max-bytes"] = limit
    json_schema = body.get("content", {}).get("application/json", {}).get("schema", {})
    for variant in json_schema.get("oneOf", []):
        for prop in variant.get("properties", {}).values():
            if prop.get("type") == "array":
                prop["maxItems"] = max_images
                prop["items"] = {**prop["items"], "maxLength": limit}
            else:
                prop["maxLength"] = limit
