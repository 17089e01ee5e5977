"""The scoring tasks: how each one calls ``InferenceService`` and turns its answer into a record.

No postprocessing lives here: the service does it exactly as for the gateway's endpoints; this
module only picks the method and serialises the pydantic result (``model_dump``), so a classify or
detect record has the same JSON shape as the gateway's response body. Super-resolution records
hold what the gateway sends as ``X-*`` headers (model, scale, sizes); the pixels go to a PNG file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..inference import DetectOptions, InferenceService
from ..repository import Task
from ..vision.encode import encode

CliTask = Literal["classify", "detect", "super-resolve", "segment"]
CLI_TASKS: tuple[CliTask, ...] = ("classify", "detect", "super-resolve", "segment")


@dataclass(frozen=True)
class TaskOptions:
    task: CliTask
    model: str | None = None  # None: the service's default model for the task
    version: int | None = None
    top_k: int = 5  # classify
    score_threshold: float | None = None  # detect; None: the model's own threshold

    @property
    def service_task(self) -> Task:
        return "super_resolve" if self.task == "super-resolve" else self.task


@dataclass(frozen=True)
class Scored:
    """One image's result: the JSON object, plus the output image for super-resolution (PNG)."""

    result: dict[str, Any]
    image_png: bytes | None = None


def sr_result(model: str, version: int | None, scale: int, input_wh: tuple[int, int],
              output_wh: tuple[int, int]) -> dict[str, Any]:
    """The record of one super-resolved image (the pixels go to a PNG file beside it)."""
    return {"model": model, "version": version, "scale": scale, "input_size": list(input_wh),
            "output_size": list(output_wh)}


async def call_service(service: InferenceService, opts: TaskOptions, data: bytes) -> Scored:
    """One image through the service: decode, preprocess, infer, postprocess. Raises VisionGateError."""
    if opts.task == "classify":
        (res,) = await service.classify([data], opts.model, opts.top_k, opts.version)
        return Scored(res.model_dump(mode="json"))
    if opts.task == "detect":
        (det,) = await service.detect([data], opts.model, DetectOptions(score_threshold=opts.score_threshold),
                                      opts.version)
        return Scored(det.model_dump(mode="json"))
    if opts.task == "segment":
        return await _segment(service, opts, data)
    sr = await service.super_resolve(data, opts.model, opts.version)
    png = await service.run_blocking(encode, sr.pixels, "png")
    h, w = sr.pixels.shape[:2]
    return Scored(sr_result(sr.model, sr.version, sr.scale, sr.input_size, (w, h)), image_png=png)


async def _segment(service: InferenceService, opts: TaskOptions, data: bytes) -> Scored:
    """Segment records hold COCO RLE: per instance (as /v1/segment answers), or per class present
    for semantic models (``masks``: label -> RLE of that class in the class map)."""
    from ..segmentation import Segmenter, SegmentOptions
    from ..vision.masks import encode_rle

    options = SegmentOptions(score_threshold=opts.score_threshold)
    (seg,) = await Segmenter(service).segment_full([data], opts.model, options, opts.version)
    record = seg.result.model_dump(mode="json", exclude_none=True)
    if seg.class_ids is not None:
        record.pop("class_map", None)
        ids = seg.class_ids
        record["masks"] = {c["label"]: await service.run_blocking(encode_rle, ids == c["class_id"])
                           for c in record["classes"]}
    return Scored(record)
