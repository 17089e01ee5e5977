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
    state: str = Field("READY", description="READY, LOADING or UNAVAILABLE (see reason)")
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
