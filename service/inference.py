"""The work behind every endpoint, with no HTTP in it: decode -> preprocess -> infer -> postprocess.

Routers, the OIP v2 layer and batch scoring all call ``InferenceService``. CPU work (decoding,
resizing) runs on a thread pool so the event loop only ever waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np

from .backends.base import Backend, Job, Tensors, batch_slices, concat_outputs
from .errors import (
    BackendError,
    BackendUnavailable,
    ImageTooLarge,
    InvalidArgument,
    InvalidImage,
    NonFiniteOutput,
    OutputTooLarge,
    VisionGateError,
    WrongTask,
)
from .repository import ModelSpec, Task
from .request_log import note
from .schemas import ClassifyResult, ClassScore, Detection, DetectResult, ImageSize
from .security.ratelimit import charge_images
from .settings import TASK_DEFAULTS, Settings
from .telemetry import span
from .tensors import check_inputs
from .vision import decode as vdecode
from .vision import detection as vdet
from .vision import heads as vheads
from .vision import tiles as vtiles
from .vision.draw import draw_detections
from .vision.encode import ImageFormat, encode
from .vision.postprocess import softmax, top_k
from .vision.preprocess import Placement, preprocess, shrink_limit

T = TypeVar("T")


@dataclass(frozen=True)
class Prepared:
    """One image ready for a model: the tensor (no batch axis) and where its pixels came from."""

    tensor: np.ndarray
    placement: Placement
    decoded: vdecode.DecodedImage


@contextlib.contextmanager
def output_errors(spec: ModelSpec) -> Iterator[None]:
    """Outputs the post-processing cannot read (an extra axis, a missing tensor) are the model's
    fault: a 502 naming the model, never a 500."""
    try:
        yield
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise BackendError(f"model {spec.name!r} answered outputs its {spec.task} post-processing cannot "
                           f"read: {exc}") from exc


@contextlib.contextmanager
def image_errors(settings: Settings) -> Iterator[None]:
    """Translate the vision layer's decode errors into the API's error tree."""
    try:
        yield
    except vdecode.TooManyPixels as exc:
        raise ImageTooLarge(f"{exc}; set VISIONGATE_MAX_IMAGE_PIXELS to allow more",
                            limit=settings.max_image_pixels) from exc
    except vdecode.DecodeError as exc:
        raise InvalidImage(str(exc)) from exc


def decode_image(data: bytes, settings: Settings, spec: ModelSpec | None = None,
                 keep_alpha: bool = False) -> vdecode.DecodedImage:
    """Decode with the gateway's limits, translating vision errors into the API's error tree."""
    limit = None
    if spec is not None:
        cfg = spec.preprocess
        limit = partial(shrink_limit, cfg)
    with image_errors(settings):
        return vdecode.decode(data, settings.max_image_pixels, shrink_limit=limit, keep_alpha=keep_alpha,
                              formats=settings.decode_formats)


def prepare(data: bytes, spec: ModelSpec, settings: Settings) -> Prepared:
    decoded = decode_image(data, settings, spec)
    tensor, placement = preprocess(decoded.pixels, spec.preprocess, decoded.original_size)
    return Prepared(tensor, placement, decoded)


def prepare_full(data: bytes, spec: ModelSpec, settings: Settings) -> Prepared:
    """Like ``prepare`` but always decodes at full size (the pixels are drawn on afterwards)."""
    decoded = decode_image(data, settings)
    tensor, placement = preprocess(decoded.rgb, spec.preprocess, decoded.original_size)
    return Prepared(tensor, placement, decoded)


def image_size(data: bytes, settings: Settings) -> tuple[int, int]:
    """(width, height) from the header alone, with the gateway's limits and errors."""
    with image_errors(settings):
        return vdecode.open_image(data, settings.max_image_pixels, formats=settings.decode_formats).size


def _head(spec: ModelSpec) -> str:
    return spec.head or "visiongate"


@dataclass(frozen=True)
class DetectOptions:
    """What a caller may change about detection; ``None`` takes the model's configured default."""

    score_threshold: float | None = None
    iou_threshold: float | None = None
    max_detections: int | None = None
    classes: str | None = None  # comma-separated label names or class ids
    box_format: vdet.BoxFormat = "xyxy"


@dataclass(frozen=True)
class _DetectParams:
    score_threshold: float
    iou_threshold: float
    max_detections: int
    classes: np.ndarray | None


#: the most detections one image may ask for
MAX_DETECTIONS = 1000


@dataclass(frozen=True)
class SuperResolved:
    """``pixels uint8 [H*scale, W*scale, 3]``, or ``[..., 4]`` when the input had alpha."""

    pixels: np.ndarray
    model: str
    version: int
    scale: int
    input_size: tuple[int, int]  # (width, height)
    tiles: int


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
        """The model a task uses when the caller names none: the setting's, else the task's built-in
        default when it is loaded, else the first by name."""
        names = sorted(m.name for m in self.backend.models() if m.task == task)
        chosen = self.settings.default_models.get(task)
        if chosen is not None:
            return chosen
        if TASK_DEFAULTS.get(task) in names:
            return TASK_DEFAULTS[task]
        if not names:
            if not self.backend.ready():
                raise BackendUnavailable("the backend is not ready; no model to choose yet", retry_after_s=2)
            raise WrongTask(f"no loaded model does {task}", models=[])
        return names[0]

    def _job(self, data: bytes, spec: ModelSpec, out: list[Prepared], full: bool = False,
             check: Callable[[Prepared], None] | None = None) -> Job:
        """One image's decode + preprocess, run where the backend chooses; keeps the placement.
        ``check`` may refuse the decoded image (raise) before the model runs."""

        def job() -> Tensors:
            p = (prepare_full if full else prepare)(data, spec, self.settings)
            if check is not None:
                check(p)
            out.append(p)
            return {spec.input.name: p.tensor[None]}

        return job

    async def prepare_and_run(self, spec: ModelSpec, images: list[bytes], version: int | None,
                              full: bool = False, check: Callable[[Prepared], None] | None = None,
                              ) -> tuple[list[Prepared], Tensors, int]:
        """Admit ``images`` as one request (all or none), decode, preprocess and run them; ``check``
        sees each decoded image and may refuse it before the model runs.

        Returns the prepared images, the outputs with the batch axis in image order, and the
        version that answered. Where decoding runs is the backend's choice (``infer_prepared``):
        the embedded runtime decodes on its inference threads, one decode+run sequence per core.
        """
        n = len(images)
        charge_images(n)  # the caller's key's own images-per-minute limit (429), before any work
        with span("admission", model=spec.name, images=n):
            ticket = self.backend.admit(spec.name, version, n)
        started = time.monotonic()
        with ticket, span("decode+infer", model=spec.name, version=ticket.version, images=n):
            if self.settings.decode_on_inference_threads or n == 1:
                holders: list[list[Prepared]] = [[] for _ in images]
                outs = await self.backend.infer_prepared(
                    ticket, [self._job(d, spec, holders[i], full, check) for i, d in enumerate(images)])
                prepared, outputs = [h[0] for h in holders], concat_outputs(outs)
            else:
                prepared = await self.prepare_many(images, spec)
                if check is not None:
                    for p in prepared:
                        check(p)
                batch = np.stack([p.tensor for p in prepared])
                outputs = await self.backend.infer(ticket, {spec.input.name: batch})
        note(model=spec.name, version=ticket.version, images=n,
             infer_ms=round((time.monotonic() - started) * 1000, 2))
        return prepared, outputs, ticket.version

    async def prepare_many(self, images: list[bytes], spec: ModelSpec) -> list[Prepared]:
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(
            loop.run_in_executor(self.executor, prepare, data, spec, self.settings) for data in images
        )))

    async def infer_tensors(self, model: str, version: int | None, inputs: Tensors) -> tuple[ModelSpec, int, Tensors]:
        """Caller-made tensors (the OIP's infer): checked against the model as Triton checks them,
        admitted as one request (its batch), run. Returns the spec, the version used and the outputs."""
        spec = self.backend.describe(model)
        items = check_inputs(spec, inputs)
        if spec.task == "super_resolve":
            self._check_sr_output(spec, inputs[spec.input.name])
        with self.backend.admit(spec.name, version, items) as ticket:
            return spec, ticket.version, await self.backend.infer(ticket, inputs)

    async def classify(self, images: list[bytes], model: str | None = None, top: int = 5,
                       version: int | None = None) -> list[ClassifyResult]:
        if not 1 <= top <= self.settings.max_top_k:
            raise InvalidArgument(f"top_k must be between 1 and {self.settings.max_top_k}, got {top}")
        spec = self.model_for(model or self.default_model("classify"), "classify")
        _, outputs, version_used = await self.prepare_and_run(spec, images, version)
        with output_errors(spec):
            logits = outputs[spec.outputs[0].name].reshape(len(images), -1)
        if not np.isfinite(logits).all():
            raise NonFiniteOutput(f"model {spec.name!r} answered NaN or infinite scores; it is broken or was "
                                  f"given input it was not trained for")
        probs = softmax(logits) if spec.param("output_activation", "softmax") == "softmax" else logits
        labels = spec.labels_for(version_used) or ()
        results = []
        for row in probs:
            preds = [ClassScore(label=labels[i] if i < len(labels) else str(i), class_id=i, score=s)
                     for i, s in top_k(row, top)]
            results.append(ClassifyResult(model=spec.name, version=version_used, predictions=preds))
        return results

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU work (encoding, drawing) on the decode pool, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, partial(fn, *args))

    # --- detection -------------------------------------------------------------------------

    def _detect_params(self, spec: ModelSpec, options: DetectOptions) -> _DetectParams:
        score = spec.float_param("score_threshold", 0.25) if options.score_threshold is None \
            else options.score_threshold
        iou = spec.float_param("iou_threshold", 0.45) if options.iou_threshold is None else options.iou_threshold
        limit = spec.int_param("max_detections", 100) if options.max_detections is None \
            else options.max_detections
        if not 0.0 <= score <= 1.0:
            raise InvalidArgument(f"score_threshold must be between 0 and 1, got {score}")
        if not 0.0 <= iou <= 1.0:
            raise InvalidArgument(f"iou_threshold must be between 0 and 1, got {iou}")
        if not 1 <= limit <= MAX_DETECTIONS:
            raise InvalidArgument(f"max_detections must be between 1 and {MAX_DETECTIONS}, got {limit}")
        if options.box_format not in vdet.BOX_FORMATS:
            raise InvalidArgument(f"format must be one of {', '.join(vdet.BOX_FORMATS)}, "
                                  f"got {options.box_format!r}")
        classes = None
        if options.classes is not None and options.classes.strip():
            num_classes = vheads.num_classes(_head(spec), {o.name: o.dims for o in spec.outputs}) \
                or len(spec.labels or ())
            try:
                classes = vdet.parse_classes(options.classes, spec.labels, int(num_classes))
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from exc
        return _DetectParams(score, iou, limit, classes)

    def _detections(self, spec: ModelSpec, prepared: list[Prepared], outputs: dict[str, np.ndarray],
                    params: _DetectParams) -> list[vdet.Detections]:
        """Detections per image, boxes xyxy in original (EXIF-upright) pixels, decoded by the
        model's head (``parameters.head``: visiongate, torchvision, yolov5, yolov8, end2end, detr)."""
        size = spec.preprocess.input_size
        h, w = size if size is not None else prepared[0].tensor.shape[:2]
        options = vheads.HeadOptions(score_threshold=params.score_threshold, iou_threshold=params.iou_threshold,
                                     max_detections=params.max_detections, classes=params.classes)
        ordered = {o.name: outputs[o.name] for o in spec.outputs if o.name in outputs}
        try:
            found = vheads.decode(_head(spec), ordered, options, input_size=(int(w), int(h)), images=len(prepared))
        except ValueError as exc:  # OutputLayoutError: the model does not answer in its head's layout
            raise BackendError(f"model {spec.name!r}: {exc}") from exc
        return [vdet.Detections(p.placement.to_original(d.boxes), d.scores, d.class_ids)
                for p, d in zip(prepared, found, strict=True)]

    def _detect_result(self, spec: ModelSpec, prepared: Prepared, found: vdet.Detections,
                       box_format: vdet.BoxFormat, version: int) -> DetectResult:
        size = prepared.placement.original_size
        boxes = vdet.convert_boxes(found.boxes, box_format, size)
        labels = spec.labels_for(version) or ()
        detections = [
            Detection(label=labels[c] if c < len(labels) else str(c), class_id=c, score=s,
                      box=[round(v, 6 if box_format == "normalized" else 2) for v in box])
            for box, c, s in zip(boxes.tolist(), found.class_ids.tolist(), found.scores.tolist(), strict=True)
        ]
        return DetectResult(model=spec.name, version=version,
                            image=ImageSize(width=size[0], height=size[1]), box_format=box_format,
                            detections=detections)

    async def detect(self, images: list[bytes], model: str | None = None,
                     options: DetectOptions = DetectOptions(), version: int | None = None) -> list[DetectResult]:
        """One ``DetectResult`` per image, boxes in the caller's original (upright) pixels."""
        spec = self.model_for(model or self.default_model("detect"), "detect")
        params = self._detect_params(spec, options)
        prepared, outputs, used = await self.prepare_and_run(spec, images, version)
        found = self._detections(spec, prepared, outputs, params)
        return [self._detect_result(spec, p, d, options.box_format, used)
                for p, d in zip(prepared, found, strict=True)]

    async def detect_annotated(self, image: bytes, model: str | None = None,
                               options: DetectOptions = DetectOptions(), version: int | None = None,
                               image_format: ImageFormat = "png") -> tuple[DetectResult, bytes]:
        """Detect on one image and draw the boxes on it: the result and the encoded image, at the
        original (upright) size."""
        spec = self.model_for(model or self.default_model("detect"), "detect")
        params = self._detect_params(spec, options)
        loop = asyncio.get_running_loop()
        (prepared,), outputs, used = await self.prepare_and_run(spec, [image], version, full=True)
        (found,) = self._detections(spec, [prepared], outputs, params)
        result = self._detect_result(spec, prepared, found, options.box_format, used)

        def render() -> bytes:
            drawn = draw_detections(prepared.decoded.rgb, found.boxes, found.class_ids, found.scores,
                                    spec.labels_for(used))
            return encode(drawn, image_format)

        return result, await loop.run_in_executor(self.executor, render)

    # --- super-resolution --------------------------------------------------------------------

    def _check_sr_output(self, spec: ModelSpec, batch: np.ndarray) -> None:
        """Caller-made SR tensors obey the same output limit as images (``[N,] H, W, C``)."""
        scale = spec.int_param("scale", 2)
        h, w = batch.shape[-3:-1] if batch.ndim >= 3 else (1, 1)
        n = batch.shape[0] if spec.max_batch_size > 0 and batch.ndim == 4 else 1
        pixels = int(n) * int(h) * int(w) * scale * scale
        limit = self.settings.max_output_pixels
        if pixels > limit:
            raise OutputTooLarge(f"{n} tensor(s) of {w}x{h} upscaled x{scale} would be {pixels} output pixels; "
                                 f"the limit is {limit} (VISIONGATE_MAX_OUTPUT_PIXELS)", limit=limit)

    def _tiling(self, spec: ModelSpec) -> tuple[int, int]:
        tile = self.settings.sr_tile_size or spec.int_param("tile_size", 0)
        overlap = self.settings.sr_tile_overlap if self.settings.sr_tile_overlap >= 0 \
            else spec.int_param("tile_overlap", 0)
        if tile and tile <= 2 * overlap:
            raise VisionGateError(f"model {spec.name!r}: tile size {tile} must exceed twice the overlap "
                                  f"{overlap}; fix VISIONGATE_SR_TILE_SIZE/OVERLAP or the model config")
        return tile, overlap

    async def super_resolve(self, image: bytes, model: str | None = None,
                            version: int | None = None) -> SuperResolved:
        """Upscale one image by the model's ``scale``: tiled and batched through the backend,
        stitched without seams; an alpha channel is upscaled with bicubic and re-attached."""
        spec = self.model_for(model or self.default_model("super_resolve"), "super_resolve")
        scale = spec.int_param("scale", 2)
        limit = self.settings.max_output_pixels
        loop = asyncio.get_running_loop()
        width, height = await loop.run_in_executor(self.executor, image_size, image, self.settings)
        if not vtiles.output_fits(width, height, scale, limit):
            largest = vtiles.max_input_pixels(limit, scale)
            raise OutputTooLarge(
                f"a {width}x{height} image upscaled x{scale} would be {width * scale}x{height * scale} = "
                f"{width * height * scale * scale} pixels; the output limit is {limit} pixels, so the "
                f"largest input allowed is {largest} pixels (about {int(largest ** 0.5)}x{int(largest ** 0.5)})",
                limit=limit, max_input_pixels=largest)
        tile, overlap = self._tiling(spec)
        # admitted by its cost: one item per tile (a large image waits for, or is refused by, the
        # same queue budget that a hundred classifications would use)
        tiles = vtiles.plan_tiles(height, width, tile, overlap).count
        with self.backend.admit(spec.name, version, tiles) as ticket:
            decoded = await loop.run_in_executor(self.executor, partial(decode_image, image, self.settings,
                                                                        keep_alpha=True))
            h, w = decoded.rgb.shape[:2]
            plan = vtiles.plan_tiles(h, w, tile, overlap)
            rgb = np.empty((h * scale, w * scale, 3), np.uint8)
            # Tiles go through the model a chunk at a time (one batch per inference thread) and are
            # pasted into the uint8 output as they come back: memory is the image, its output and one
            # chunk of float tiles, whatever the image's size; a request cancelled (deadline passed,
            # client gone) stops at the next chunk.
            chunk = max(1, spec.images_per_call or 1) * self.settings.inference_workers

            def paste(output: np.ndarray, tiles: range) -> None:
                vtiles.paste(rgb, vtiles.to_pixels(output), plan, scale, tiles)

            for part in batch_slices(plan.count, chunk):
                span_tiles = range(part.start, part.stop)
                batch = await loop.run_in_executor(self.executor, vtiles.cut_range, decoded.rgb, plan, span_tiles)
                outputs = await self.backend.infer(ticket, {spec.input.name: batch})
                out = outputs[spec.outputs[0].name]
                expected = (len(span_tiles), plan.tile_h * scale, plan.tile_w * scale, 3)
                if tuple(out.shape) != expected:
                    raise BackendError(f"model {spec.name!r} returned {list(out.shape)} for tiles "
                                       f"{list(batch.shape)}; expected {list(expected)} (scale {scale})")
                await loop.run_in_executor(self.executor, paste, out, span_tiles)

        def finish() -> np.ndarray:
            alpha = vtiles.upscale_alpha(decoded.alpha, scale) if decoded.alpha is not None else None
            return vtiles.attach_alpha(rgb, alpha)

        pixels = await loop.run_in_executor(self.executor, finish)
        return SuperResolved(pixels, spec.name, ticket.version, scale,
                             (decoded.rgb.shape[1], decoded.rgb.shape[0]), plan.count)
