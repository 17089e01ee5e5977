"""Response shapes of the task API (pydantic: validated, documented in OpenAPI)."""

from __future__ import annotations

from pydantic import BaseModel, Field


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


class ModelList(BaseModel):
    backend: str
    models: list[ModelInfo]


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
