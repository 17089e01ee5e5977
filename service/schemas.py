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
