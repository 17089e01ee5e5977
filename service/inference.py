"""The work behind every endpoint, with no HTTP in it: decode -> preprocess -> infer -> postprocess.

Routers, the OIP v2 layer and batch scoring all call ``InferenceService``. CPU work (decoding,
resizing) runs on a thread pool so the event loop only ever waits.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np

from .backends.base import Backend
from .errors import ImageTooLarge, InvalidArgument, InvalidImage, WrongTask
from .repository import ModelSpec, Task
from .schemas import ClassifyResult, ClassScore
from .settings import Settings
from .vision import decode as vdecode
from .vision.postprocess import softmax, top_k
from .vision.preprocess import Placement, preprocess, shrink_limit


@dataclass(frozen=True)
class Prepared:
    """One image ready for a model: the tensor (no batch axis) and where its pixels came from."""

    tensor: np.ndarray
    placement: Placement
    decoded: vdecode.DecodedImage


def decode_image(data: bytes, settings: Settings, spec: ModelSpec | None = None,
                 keep_alpha: bool = False) -> vdecode.DecodedImage:
    """Decode with the gateway's limits, translating vision errors into the API's error tree."""
    limit = None
    if spec is not None:
        cfg = spec.preprocess
        limit = partial(shrink_limit, cfg)
    try:
        return vdecode.decode(data, settings.max_image_pixels, shrink_limit=limit, keep_alpha=keep_alpha)
    except vdecode.TooManyPixels as exc:
        raise ImageTooLarge(f"{exc}; set VISIONGATE_MAX_IMAGE_PIXELS to allow more",
                            limit=settings.max_image_pixels) from exc
    except vdecode.DecodeError as exc:
        raise InvalidImage(str(exc)) from exc


def prepare(data: bytes, spec: ModelSpec, settings: Settings) -> Prepared:
    decoded = decode_image(data, settings, spec)
    tensor, placement = preprocess(decoded.rgb, spec.preprocess, decoded.original_size)
    return Prepared(tensor, placement, decoded)


class InferenceService:
    def __init__(self, backend: Backend, settings: Settings, executor: ThreadPoolExecutor | None = None):
        self.backend = backend
        self.settings = settings
        self._own_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(settings.decode_workers, thread_name_prefix="decode")

    def close(self) -> None:
        if self._own_executor:
            self.executor.shutdown(wait=False, cancel_futures=True)

    def model_for(self, model: str, task: Task) -> ModelSpec:
        spec = self.backend.describe(model)
        if spec.task != task:
            able = sorted(m.name for m in self.backend.models() if m.task == task)
            raise WrongTask(f"model {model!r} does a {spec.task} task, not {task}; "
                            f"models that can: {', '.join(able) or 'none loaded'}", models=able)
        return spec

    def default_model(self, task: Task) -> str:
        names = sorted(m.name for m in self.backend.models() if m.task == task)
        if not names:
            raise WrongTask(f"no loaded model does {task}", models=[])
        return names[0]

    async def prepare_many(self, images: list[bytes], spec: ModelSpec) -> list[Prepared]:
        loop = asyncio.get_running_loop()
        if len(images) == 1:
            return [await loop.run_in_executor(self.executor, prepare, images[0], spec, self.settings)]
        return list(await asyncio.gather(*(
            loop.run_in_executor(self.executor, prepare, data, spec, self.settings) for data in images
        )))

    async def run(self, spec: ModelSpec, tensors: list[np.ndarray],
                  version: int | None) -> dict[str, np.ndarray]:
        batch = tensors[0][None] if len(tensors) == 1 else np.stack(tensors)
        return await self.backend.infer(spec.name, {spec.input.name: batch}, version)

    async def classify(self, images: list[bytes], model: str | None = None, top: int = 5,
                       version: int | None = None) -> list[ClassifyResult]:
        if not 1 <= top <= self.settings.max_top_k:
            raise InvalidArgument(f"top_k must be between 1 and {self.settings.max_top_k}, got {top}")
        spec = self.model_for(model or self.default_model("classify"), "classify")
        prepared = await self.prepare_many(images, spec)
        outputs = await self.run(spec, [p.tensor for p in prepared], version)
        logits = outputs[spec.outputs[0].name]
        probs = softmax(logits) if spec.param("output_activation", "softmax") == "softmax" else logits
        labels = spec.labels or ()
        version_used = version if version is not None else (max(spec.versions) if spec.versions else None)
        results = []
        for row in probs:
            preds = [ClassScore(label=labels[i] if i < len(labels) else str(i), class_id=i, score=s)
                     for i, s in top_k(row, top)]
            results.append(ClassifyResult(model=spec.name, version=version_used, predictions=preds))
        return results
