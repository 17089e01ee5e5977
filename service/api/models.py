"""GET /v1/models, GET /v1/models/{name}"""

from __future__ import annotations

from fastapi import APIRouter

from ..errors import error_responses
from ..repository import ModelSpec
from ..schemas import ModelInfo, ModelList
from .deps import ServiceDep

router = APIRouter(tags=["models"])


def model_info(spec: ModelSpec, parity: dict[str, object] | None = None) -> ModelInfo:
    size = spec.preprocess.input_size
    return ModelInfo(
        name=spec.name, task=spec.task, platform=spec.platform, versions=list(spec.versions),
        input_size=list(size) if size else None, max_batch_size=spec.max_batch_size,
        labels=len(spec.labels) if spec.labels else None, parameters=spec.parameters, parity=parity,
    )


@router.get("/v1/models", response_model=ModelList, summary="Models being served")
async def list_models(service: ServiceDep) -> ModelList:
    specs = sorted(service.backend.models(), key=lambda s: s.name)
    return ModelList(backend=service.backend.name, models=[model_info(s) for s in specs])


@router.get("/v1/models/{name}", response_model=ModelInfo, summary="One model",
            responses=error_responses(404))
async def get_model(name: str, service: ServiceDep) -> ModelInfo:
    return model_info(service.backend.describe(name))
