"""GET /v1/models, GET /v1/models/{name}"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from ..backends.base import resolve_version
from ..errors import error_responses
from ..proof_report import read_proof
from ..repository import ModelSpec
from ..schemas import ModelInfo, ModelList, UnavailableModel
from .deps import ServiceDep, SettingsDep

router = APIRouter(tags=["models"])


def model_info(spec: ModelSpec, parity: dict[str, object] | None = None, provider: str = "") -> ModelInfo:
    size = spec.preprocess.input_size
    return ModelInfo(
        name=spec.name, task=spec.task, platform=spec.platform, versions=list(spec.versions),
        input_size=list(size) if size else None, max_batch_size=spec.max_batch_size,
        labels=len(spec.labels) if spec.labels else None, parameters=spec.parameters, parity=parity,
        inferred=dict(spec.inferred), warnings=list(spec.warnings), provider=provider,
    )


def parity_report(repository: Path, spec: ModelSpec) -> dict[str, object] | None:
    """The export's proof of the newest version (fp32, fp16 or TensorRT report shapes alike), when
    the gateway can see the repository."""
    if not spec.versions:
        return None
    proof = read_proof(repository / spec.name / str(resolve_version(spec, None)))
    return proof.as_dict() if proof is not None else None


@router.get("/v1/models", response_model=ModelList, summary="Models being served")
async def list_models(service: ServiceDep, settings: SettingsDep) -> ModelList:
    specs = sorted(service.backend.models(), key=lambda s: s.name)
    ready = {s.name for s in specs}
    states = service.backend.states()
    providers = {s.name: s.provider for s in states}
    unavailable = [UnavailableModel(name=s.name, state=str(s.state), reason=s.reason)
                   for s in states if s.name not in ready]
    return ModelList(backend=service.backend.name, unavailable=unavailable,
                     models=[model_info(s, parity_report(settings.repository, s), providers.get(s.name, ""))
                             for s in specs])


@router.get("/v1/models/{name}", response_model=ModelInfo, summary="One model",
            responses=error_responses(404))
async def get_model(name: str, service: ServiceDep, settings: SettingsDep) -> ModelInfo:
    spec = service.backend.describe(name)
    provider = next((s.provider for s in service.backend.states() if s.name == name), "")
    return model_info(spec, parity_report(settings.repository, spec), provider)
