"""The segment task: decode -> preprocess -> infer -> masks in the caller's original pixels.

``Segmenter`` works on an ``InferenceService`` (its decode/prepare, backend and thread pool) the
way ``InferenceService.classify``/``detect`` do, so it can be mounted as ``service.segment``.
Model kinds (config parameter ``segment_kind``):

- ``semantic``: one output ``scores [N, C, h, w]`` over the network input (``output_activation``
  ``none`` for probabilities, ``softmax`` for logits). Answer: the class map at the original size
  as a base64 PNG (one byte per pixel = class id) and the classes present with their share.
- ``instance`` (``head`` = ``yolo_seg``): ``boxes [N, B, 4]``, ``scores [N, B, C]``,
  ``mask_coefficients [N, B, K]``, ``prototypes [N, K, h, w]``, or Ultralytics' two outputs
  (``vision/seg_heads.py``); ``head`` = ``pasted`` (Mask R-CNN
  style): ``boxes``, ``scores`` and ``masks [N, B, h, w]`` probabilities over the network input, or
  torchvision Mask R-CNN's ``boxes``/``labels``/``scores``/``masks [K, 1, H, W]``.
  Answer: per instance label, score, box and mask as COCO RLE, polygons or PNG.

A semantic model may be gated by a detector (``presence_model``): the pixels of its gated classes
are kept only inside that detector's boxes of the same label, so a person segmenter marks no
person where the detector sees none. Both models run on the request concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from .errors import BackendError, InvalidArgument, ModelNotReady, NotFound, OutputTooLarge, WrongTask
from .inference import MAX_DETECTIONS, DetectOptions, InferenceService, Prepared
from .repository import ModelSpec
from .request_log import note, unnoted
from .schemas import Detection, DetectResult, ImageSize
from .security.ratelimit import uncharged
from .vision import detection as vdet
from .vision import masks as vmask
from .vision import seg_heads as vseg
from .vision.encode import ImageFormat, encode

MaskFormat = Literal["rle", "polygon", "png"]
MASK_FORMATS: tuple[MaskFormat, ...] = ("rle", "polygon", "png")


class SegmentClass(BaseModel):
    label: str
    class_id: int
    fraction: float = Field(description="share of the image's pixels given this class")


class ProbabilityMap(BaseModel):
    label: str
    class_id: int
    png: str = Field(description="base64 PNG, one byte per pixel: probability x 255, original size")


class SegmentInstance(BaseModel):
    label: str
    class_id: int
    score: float
    box: list[float] = Field(description="x0, y0, x1, y1 in original (EXIF-upright) pixels")
    area: int = Field(description="mask pixels")
    mask: dict[str, Any] | list[list[float]] | str = Field(
        description="rle: COCO RLE {size: [h, w], counts: str} (pycocotools' compressed form); "
        "polygon: [[x1, y1, x2, y2, ...], ...] outer outlines in pixel corners; "
        "png: base64 single-channel PNG of the whole image (255 = instance)"
    )


class PresenceCheck(BaseModel):
    model: str = Field(description="the detector that gates the semantic classes (parameters.presence_model)")
    version: int
    score_threshold: float
    detections: list[Detection] = Field(
        description="its detections of the gated labels: pixels of those classes are kept only inside them"
    )


class SegmentResult(BaseModel):
    model: str
    version: int | None
    image: ImageSize = Field(description="size of the (EXIF-upright) image the masks cover")
    kind: Literal["semantic", "instance"]
    class_map: str | None = Field(None, description="semantic: base64 PNG, one byte per pixel = class_id")
    classes: list[SegmentClass] | None = Field(None, description="semantic: the classes present")
    probabilities: list[ProbabilityMap] | None = Field(None, description="semantic, when asked for")
    mask_format: MaskFormat | None = None
    instances: list[SegmentInstance] | None = None
    presence: PresenceCheck | None = Field(
        None, description="semantic models gated by a detector: what the detector found"
    )


@dataclass(frozen=True)
class PresenceGate:
    """``parameters.presence_model`` and friends of a semantic model (see the module docstring)."""

    model: str
    classes: dict[int, str]  # gated class id of the segmenter -> the detector's label
    background: int
    score_threshold: float
    margin: float

    @staticmethod
    def of(spec: ModelSpec) -> PresenceGate | None:
        model = spec.param("presence_model", "").strip()
        if not model or spec.param("segment_kind", "semantic") != "semantic":
            return None
        labels = list(spec.labels or ())
        background = _background(spec)
        if background is None:
            raise BackendError(f"model {spec.name!r}: parameters.presence_model needs a 'background' label "
                               f"for the pixels it takes away")
        items = [w.strip() for w in spec.param("presence_classes", "").split(",") if w.strip()]
        pairs = [(ours.strip(), theirs.strip()) for ours, _, theirs in (i.partition("=") for i in items)] \
            if items else [(label, "") for i, label in enumerate(labels) if i != background]
        classes = {}
        for ours, theirs in pairs:  # "person" gates our person by their person; "person=human" renames
            if ours not in labels:
                raise BackendError(f"model {spec.name!r}: parameters.presence_classes names {ours!r}, "
                                   f"which is not one of its labels ({', '.join(labels)})")
            classes[labels.index(ours)] = theirs or ours
        return PresenceGate(model, classes, background, spec.float_param("presence_score_threshold", 0.5),
                            spec.float_param("presence_margin", 0.1))


@dataclass(frozen=True)
class SegmentOptions:
    """What a caller may change; ``None`` takes the model's configured default."""

    mask_format: MaskFormat = "rle"
    probabilities: bool = False
    score_threshold: float | None = None
    iou_threshold: float | None = None
    max_detections: int | None = None
    classes: str | None = None  # instance models: comma-separated label names or ids
    polygon_tolerance: float = 1.0


@dataclass(frozen=True)
class Segmentation:
    """One image's result plus the masks themselves (for drawing and batch writers)."""

    result: SegmentResult
    class_ids: np.ndarray | None  # semantic: uint8 [H, W]
    instance_masks: list[vmask.InstanceMask]


def _label(spec: ModelSpec, c: int) -> str:
    labels = spec.labels or ()
    return labels[c] if c < len(labels) else str(c)


def _select_indices(
    boxes: np.ndarray,
    scores: np.ndarray,
    score_threshold: float,
    iou_threshold: float,
    limit: int,
    classes: np.ndarray | None,
    best_class: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like ``vision.detection.select`` but keeping which output row each detection came from:
    (rows ``[K]``, class ids ``[K]``, scores ``[K]``), best first. ``best_class``: each row
    competes only with its best class, before ``classes`` filters (Ultralytics' single-label NMS)."""
    if best_class and scores.shape[0] and scores.shape[1]:
        rows = np.arange(scores.shape[0])
        best = scores.argmax(axis=1)
        only = np.full_like(scores, -np.inf)  # not zeros: score_threshold=0 would keep every other class
        only[rows, best] = scores[rows, best]
        scores = only
    if classes is not None:
        masked = np.full_like(scores, -np.inf)
        masked[:, classes] = scores[:, classes]
        scores = masked
    rows, cls = np.nonzero(scores >= score_threshold)
    if rows.size == 0:
        return rows, cls, np.zeros(0, np.float32)
    cand = scores[rows, cls]
    if cand.size > vdet.MAX_CANDIDATES:
        top = np.argpartition(-cand, vdet.MAX_CANDIDATES - 1)[: vdet.MAX_CANDIDATES]
        rows, cls, cand = rows[top], cls[top], cand[top]
    keep = vdet.batched_nms(boxes[rows], cand, cls, iou_threshold, limit=limit)
    return rows[keep], cls[keep], cand[keep]


class Segmenter:
    """``segment``/``segment_annotated`` over an ``InferenceService``'s pieces."""

    def __init__(self, service: InferenceService) -> None:
        self.service = service
        self.settings = service.settings

    # --- checks before any pixel is decoded ------------------------------------------------

    def _check(self, spec: ModelSpec, options: SegmentOptions) -> None:
        kind = spec.param("segment_kind", "semantic")
        if kind not in ("semantic", "instance"):
            raise BackendError(
                f"model {spec.name!r}: parameters.segment_kind must be semantic or instance, got {kind!r}"
            )
        if options.mask_format not in MASK_FORMATS:
            raise InvalidArgument(
                f"mask_format must be one of {', '.join(MASK_FORMATS)}, got {options.mask_format!r}"
            )
        if options.max_detections is not None and not 1 <= options.max_detections <= MAX_DETECTIONS:
            raise InvalidArgument(f"max_detections must be between 1 and {MAX_DETECTIONS}")
        for name, value in (
            ("score_threshold", options.score_threshold),
            ("iou_threshold", options.iou_threshold),
        ):
            if value is not None and not 0.0 <= value <= 1.0:
                raise InvalidArgument(f"{name} must be between 0 and 1, got {value}")
        if options.polygon_tolerance < 0:
            raise InvalidArgument("polygon_tolerance must be >= 0")

    def _check_size(self, width: int, height: int, options: SegmentOptions, spec: ModelSpec) -> None:
        limit = self.settings.max_mask_pixels
        maps = len(spec.labels or ()) if options.probabilities else 0
        pixels = width * height * (1 + maps)
        if pixels > limit:
            what = f"{1 + maps} maps of " if maps else "a mask of "
            raise OutputTooLarge(
                f"a {width}x{height} image needs {what}{width * height} pixels = {pixels}; "
                f"the mask output limit "
                f"is {limit} pixels (VISIONGATE_MAX_MASK_PIXELS); send a smaller image"
                + (" or leave out probabilities" if maps else ""),
                limit=limit,
            )

    def _size_check(self, spec: ModelSpec, options: SegmentOptions) -> Callable[[Prepared], None]:
        """Refuses a decoded image whose answer would pass the mask limit, before the model runs."""

        def check(p: Prepared) -> None:
            self._check_size(*p.placement.original_size, options, spec)

        return check

    # --- postprocessing ----------------------------------------------------------------------

    def _semantic(
        self,
        spec: ModelSpec,
        p: Prepared,
        scores: np.ndarray,
        options: SegmentOptions,
        version: int | None,
        presence: tuple[PresenceGate, DetectResult] | None = None,
    ) -> Segmentation:
        if scores.ndim != 3:
            raise BackendError(
                f"model {spec.name!r}: semantic output must be [N, C, h, w], got "
                f"{list(scores.shape)} for one image"
            )
        input_hw = spec.preprocess.input_size or p.tensor.shape[:2]
        if spec.param("output_activation", "none") == "softmax" and options.probabilities:
            scores = vmask.softmax(scores.astype(np.float32))
        ids = vmask.class_map(scores, p.placement, input_hw)
        allowed = _allowed_pixels(presence, p.placement.original_size)
        background = presence[0].background if presence is not None else 0
        for c, keep in allowed.items():
            vmask.gate_class(ids, c, keep, background)
        num = scores.shape[0]
        fractions = vmask.class_fractions(ids, num)
        classes = [
            SegmentClass(label=_label(spec, c), class_id=c, fraction=round(float(f), 6))
            for c, f in enumerate(fractions.tolist())
            if f > 0
        ]
        probs = None
        if options.probabilities:
            full = vmask.to_original(scores, p.placement, input_hw)
            for c, keep in allowed.items():  # what the gate takes from a class goes to the background
                full[background][~keep] += full[c][~keep]
                full[c][~keep] = 0.0
            probs = [
                ProbabilityMap(
                    label=_label(spec, c),
                    class_id=c,
                    png=vmask.png_base64(np.clip(full[c] * 255 + 0.5, 0, 255).astype(np.uint8)),
                )
                for c in range(num)
            ]
        w, h = p.placement.original_size
        result = SegmentResult(
            model=spec.name,
            version=version,
            image=ImageSize(width=w, height=h),
            kind="semantic",
            class_map=vmask.png_base64(ids),
            classes=classes,
            probabilities=probs,
            presence=_presence_check(presence),
        )
        return Segmentation(result, ids, [])

    def _instances(
        self,
        spec: ModelSpec,
        p: Prepared,
        out: dict[str, np.ndarray],
        k: int,
        options: SegmentOptions,
        version: int | None,
    ) -> Segmentation:
        score_t = (
            spec.float_param("score_threshold", 0.25)
            if options.score_threshold is None
            else options.score_threshold
        )
        iou_t = (
            spec.float_param("iou_threshold", 0.45)
            if options.iou_threshold is None
            else options.iou_threshold
        )
        limit = (
            spec.int_param("max_detections", 100)
            if options.max_detections is None
            else options.max_detections
        )
        scores = out["scores"][k]
        classes = None
        if options.classes is not None and options.classes.strip():
            try:
                classes = vdet.parse_classes(options.classes, spec.labels, int(scores.shape[-1]))
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from exc
        yolo = spec.param("head", "yolo_seg") == "yolo_seg"
        rows, cls, conf = _select_indices(out["boxes"][k], scores, score_t, iou_t, limit, classes, best_class=yolo)
        boxes = p.placement.to_original(out["boxes"][k][rows].astype(np.float32).reshape(-1, 4))
        input_hw = spec.preprocess.input_size or p.tensor.shape[:2]
        threshold = spec.float_param("mask_threshold", 0.5)
        if spec.param("head", "yolo_seg") == "pasted":
            found = vmask.pasted_masks(out["masks"][k][rows], p.placement, input_hw, boxes, threshold)
        else:
            found = vmask.instance_masks(
                out["mask_coefficients"][k][rows],
                out["prototypes"][k],
                boxes,
                p.placement,
                input_hw,
                threshold,
            )
        instances = []
        for box, c, s, m in zip(boxes.tolist(), cls.tolist(), conf.tolist(), found, strict=True):
            mask: dict[str, Any] | list[list[float]] | str
            if options.mask_format == "rle":
                mask = vmask.encode_rle(m)
            elif options.mask_format == "polygon":
                mask = vmask.polygons(m, options.polygon_tolerance)
            else:
                mask = vmask.png_base64(m.full())
            instances.append(
                SegmentInstance(
                    label=_label(spec, c),
                    class_id=c,
                    score=round(float(s), 6),
                    box=[round(v, 2) for v in box],
                    area=m.area,
                    mask=mask,
                )
            )
        w, h = p.placement.original_size
        result = SegmentResult(
            model=spec.name,
            version=version,
            image=ImageSize(width=w, height=h),
            kind="instance",
            mask_format=options.mask_format,
            instances=instances,
        )
        return Segmentation(result, None, found)

    def postprocess(
        self,
        spec: ModelSpec,
        prepared: list[Prepared],
        outputs: dict[str, np.ndarray],
        options: SegmentOptions,
        version: int | None,
        presence: tuple[PresenceGate, list[DetectResult]] | None = None,
    ) -> list[Segmentation]:
        """Outputs with the batch axis, in image order -> one ``Segmentation`` per image (CPU work:
        run it off the event loop). ``presence``: the gate and its detector's results, per image."""
        if spec.param("segment_kind", "semantic") == "instance":
            try:
                if spec.param("head", "yolo_seg") == "yolo_seg":
                    outputs = vseg.yolo_seg_outputs(outputs)
                else:
                    outputs = vseg.pasted_outputs(outputs, len(spec.labels) if spec.labels else None)
            except ValueError as exc:  # OutputLayoutError: the model does not answer in its head's layout
                raise BackendError(f"model {spec.name!r}: {exc}") from exc
            return [self._instances(spec, p, outputs, k, options, version) for k, p in enumerate(prepared)]
        scores = outputs[spec.outputs[0].name]
        return [
            self._semantic(spec, p, scores[k], options, version,
                           None if presence is None else (presence[0], presence[1][k]))
            for k, p in enumerate(prepared)
        ]

    # --- the task --------------------------------------------------------------------------

    def model_for(self, model: str | None) -> ModelSpec:
        return self.service.model_for(model or self.service.default_model("segment"), "segment")

    async def segment_full(
        self,
        images: list[bytes],
        model: str | None = None,
        options: SegmentOptions = SegmentOptions(),
        version: int | None = None,
    ) -> list[Segmentation]:
        """Results plus the masks as arrays (batch scoring writes them out)."""
        spec = self.model_for(model)
        self._check(spec, options)
        gate = PresenceGate.of(spec)
        check = self._size_check(spec, options)
        (prepared, outputs, used), presence = await self._run(spec, images, version, gate, check, full=False)
        return await self.service.run_blocking(self.postprocess, spec, prepared, outputs, options, used, presence)

    async def _run(
        self,
        spec: ModelSpec,
        images: list[bytes],
        version: int | None,
        gate: PresenceGate | None,
        check: Callable[[Prepared], None],
        full: bool,
    ) -> tuple[tuple[list[Prepared], dict[str, np.ndarray], int], tuple[PresenceGate, list[DetectResult]] | None]:
        """The segmenter's run and, for a gated model, its detector's, concurrently (a failure of
        either cancels the other; both admit the images under their own model)."""
        if gate is None:
            return await self.service.prepare_and_run(spec, images, version, full=full, check=check), None
        try:
            self.service.model_for(gate.model, "detect")
        except (NotFound, WrongTask) as exc:
            raise ModelNotReady(
                f"model {spec.name!r} is gated by the detector {gate.model!r} (parameters.presence_model): "
                f"{exc}; load that detector, or set presence_model to \"\" to serve without the gate",
                retry_after_s=5
            ) from exc
        wanted = ",".join(sorted(set(gate.classes.values())))

        async def detect() -> list[DetectResult]:
            uncharged()  # the request's images were charged once, by the segmenter's run
            unnoted()
            try:
                return await self.service.detect(
                    images, gate.model, DetectOptions(score_threshold=gate.score_threshold, classes=wanted))
            except InvalidArgument as exc:  # the detector lacks a gated label: the config's fault
                raise BackendError(f"model {spec.name!r}: parameters.presence_classes: {exc}") from exc

        tasks = (asyncio.ensure_future(self.service.prepare_and_run(spec, images, version, full=full, check=check)),
                 asyncio.ensure_future(detect()))
        try:
            run, found = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        note(presence_model=gate.model, presence_boxes=sum(len(r.detections) for r in found))
        return run, (gate, found)

    async def segment(
        self,
        images: list[bytes],
        model: str | None = None,
        options: SegmentOptions = SegmentOptions(),
        version: int | None = None,
    ) -> list[SegmentResult]:
        """One ``SegmentResult`` per image, masks in the caller's original (upright) pixels."""
        return [s.result for s in await self.segment_full(images, model, options, version)]

    async def segment_annotated(
        self,
        image: bytes,
        model: str | None = None,
        options: SegmentOptions = SegmentOptions(),
        version: int | None = None,
        image_format: ImageFormat = "png",
    ) -> tuple[SegmentResult, bytes]:
        """Segment one image and paint its masks on it (semi-transparent, with a legend)."""
        spec = self.model_for(model)
        self._check(spec, options)
        gate = PresenceGate.of(spec)
        check = self._size_check(spec, options)
        loop = asyncio.get_running_loop()
        ((prepared,), outputs, used), presence = await self._run(spec, [image], version, gate, check, full=True)

        def render() -> tuple[SegmentResult, bytes]:
            (seg,) = self.postprocess(spec, [prepared], outputs, options, used, presence)
            drawn = vmask.overlay(prepared.decoded.rgb, *_layers(spec, seg))
            return seg.result, encode(drawn, image_format)

        return await loop.run_in_executor(self.service.executor, render)


def _allowed_pixels(
    presence: tuple[PresenceGate, DetectResult] | None, size: tuple[int, int]
) -> dict[int, np.ndarray]:
    """Gated class id -> ``bool [H, W]`` where its pixels may stay (inside its label's boxes)."""
    if presence is None:
        return {}
    gate, found = presence
    allowed = {}
    for c, label in gate.classes.items():
        boxes = np.array([d.box for d in found.detections if d.label == label], np.float32).reshape(-1, 4)
        allowed[c] = vmask.inside_boxes(size, boxes, gate.margin)
    return allowed


def _presence_check(presence: tuple[PresenceGate, DetectResult] | None) -> PresenceCheck | None:
    if presence is None:
        return None
    gate, found = presence
    return PresenceCheck(model=found.model, version=found.version, score_threshold=gate.score_threshold,
                         detections=found.detections)


def _background(spec: ModelSpec) -> int | None:
    labels = [s.lower() for s in spec.labels or ()]
    for name in ("background", "__background__", "_background_"):
        if name in labels:
            return labels.index(name)
    return None


def _layers(spec: ModelSpec, seg: Segmentation) -> tuple[list[tuple[Any, int]], list[tuple[str, int]]]:
    """What to paint and what the legend says."""
    result = seg.result
    if seg.class_ids is not None:
        skip = _background(spec)
        present = [c for c in result.classes or () if c.class_id != skip]
        layers: list[tuple[Any, int]] = [(seg.class_ids == c.class_id, c.class_id) for c in present]
        legend = [(f"{c.label} {c.fraction:.0%}", c.class_id) for c in present]
        return layers, legend
    instances = result.instances or []
    layers = [(m, i.class_id) for m, i in zip(seg.instance_masks, instances, strict=True)]
    legend = [(f"{i.label} {i.score:.2f}", i.class_id) for i in instances]
    return layers, legend
