"""Detector heads: one registry of decoders from a detector's raw outputs to per-image detections.

A model's config names its head (parameter ``head``); each head knows its output layout:

========== ===========================================================================================
visiongate ``boxes [N, A, 4]`` xyxy and ``scores [N, A, C]`` per-class scores (this project's exports:
           darknet YOLO, NanoDet, torchvision SSD/RetinaNet); every class over the threshold, NMS
torchvision the same two outputs (``export/sources/torchvision_detection.py``), or torchvision's own ONNX
           export with NMS inside: ``boxes [K, 4]``, ``labels [K]`` int, ``scores [K]`` (one image)
yolov5     one output ``[N, A, 5 + C]``: cx, cy, w, h, objectness, class probabilities; score =
           objectness x class; best class per box; NMS
yolov8     one output ``[N, 4 + C, A]`` (YOLOv8/YOLO11): cx, cy, w, h, class scores; best class; NMS
end2end    one output ``[N, K, 6]``: x1, y1, x2, y2, score, class id (YOLOv10/YOLO26, or any export
           with NMS inside); final already, no NMS; rows with score 0 are padding
detr       ``logits [N, Q, C + 1]`` (last class = no object) and ``pred_boxes [N, Q, 4]`` cx, cy, w, h
           normalised to the input; softmax, one label per query, no NMS
========== ===========================================================================================

Box coordinates are model-input pixels (``detr``: scaled by the input size); the caller maps them to
the original image through the preprocessing ``Placement``. Decoding is vectorised numpy; outputs
of the wrong shape raise ``OutputLayoutError`` naming the layout the head expects. A missing batch
axis is read as one image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .detection import MAX_CANDIDATES, Detections, finite_scores, select, select_best_class, select_ranked


class OutputLayoutError(ValueError):
    """The model's outputs do not have the layout its head expects (a model or config error)."""


@dataclass(frozen=True)
class HeadOptions:
    """What decides which detections are kept.

    ``score_threshold``: keep scores ``>=`` this; ``iou_threshold``: per-class NMS (heads with NMS);
    ``classes``: class ids to keep (``None``: all); ``multi_label``: a box may carry every class over
    the threshold (``None``: the head's default, see ``Head.multi_label``); ``num_classes``: class
    columns when the output carries extra ones after them (mask coefficients); ``max_candidates``:
    best candidates that go into NMS.
    """

    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 100
    classes: np.ndarray | None = None
    multi_label: bool | None = None
    num_classes: int | None = None
    max_candidates: int = MAX_CANDIDATES


Outputs = Mapping[str, np.ndarray]
Decoder = Callable[[Outputs, HeadOptions, tuple[int, int]], list[Detections]]


@dataclass(frozen=True)
class Head:
    name: str
    layout: str  # what the outputs must look like, for error messages and docs
    decode: Decoder
    nms: bool
    multi_label: bool


def _shapes(outputs: Mapping[str, np.ndarray]) -> str:
    return ", ".join(f"{k} {list(v.shape)}" for k, v in outputs.items()) or "no outputs"


def _fail(head: str, outputs: Outputs, why: str = "") -> OutputLayoutError:
    layout = HEADS[head].layout
    return OutputLayoutError(f"detector head {head!r} expects {layout}; got {_shapes(outputs)}"
                             + (f" ({why})" if why else ""))


def _batched(head: str, outputs: Outputs, arr: np.ndarray, rank: int) -> np.ndarray:
    """``arr`` with its batch axis (added when the model has none), checked to have ``rank`` dims."""
    if arr.ndim == rank - 1:
        arr = arr[None]
    if arr.ndim != rank:
        raise _fail(head, outputs, f"{rank} dims with the batch axis")
    return arr


def _one(head: str, outputs: Outputs, preferred: Sequence[str] = ("output0", "output")) -> np.ndarray:
    """The single detection tensor of a one-output head."""
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    for name in preferred:
        if name in outputs:
            return outputs[name]
    raise _fail(head, outputs, f"one output, or one named {' or '.join(preferred)}")


def _named(head: str, outputs: Outputs, names: Sequence[str]) -> list[np.ndarray]:
    """Outputs by name, else the first ``len(names)`` in the model's order."""
    if all(n in outputs for n in names):
        return [outputs[n] for n in names]
    if len(outputs) < len(names):
        raise _fail(head, outputs, f"outputs {', '.join(names)}")
    return list(outputs.values())[: len(names)]


def _xyxy(cxcywh: np.ndarray) -> np.ndarray:
    """``[..., 4]`` centre x, centre y, width, height -> corners, float32."""
    c = cxcywh.astype(np.float32, copy=False)
    half = c[..., 2:4] / 2
    return np.concatenate([c[..., :2] - half, c[..., :2] + half], axis=-1)


def _class_columns(head: str, outputs: Outputs, available: int, opts: HeadOptions) -> int:
    num = available if opts.num_classes is None else opts.num_classes
    if num < 1 or num > available:
        raise _fail(head, outputs, f"{available} class columns, num_classes {opts.num_classes}")
    return num


def _nms_select(boxes: np.ndarray, scores: np.ndarray, opts: HeadOptions, multi_label: bool) -> Detections:
    pick = select if multi_label else select_best_class
    return pick(boxes, scores, score_threshold=opts.score_threshold, iou_threshold=opts.iou_threshold,
                max_detections=opts.max_detections, classes=opts.classes, max_candidates=opts.max_candidates)


def _ranked(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, opts: HeadOptions) -> Detections:
    return select_ranked(boxes, scores, class_ids, score_threshold=opts.score_threshold,
                         max_detections=opts.max_detections, classes=opts.classes)


def _boxes_scores(head: str, outputs: Outputs, opts: HeadOptions) -> list[Detections]:
    boxes, scores = _named(head, outputs, ("boxes", "scores"))
    boxes = _batched(head, outputs, boxes, 3)
    scores = _batched(head, outputs, scores, 3)
    if boxes.shape[2] != 4 or boxes.shape[:2] != scores.shape[:2]:
        raise _fail(head, outputs, "boxes and scores must agree on N and A")
    multi = HEADS[head].multi_label if opts.multi_label is None else opts.multi_label
    return [_nms_select(b, s, opts, multi) for b, s in zip(boxes, scores, strict=True)]


def decode_visiongate(outputs: Outputs, opts: HeadOptions, input_size: tuple[int, int]) -> list[Detections]:
    return _boxes_scores("visiongate", outputs, opts)


def _torchvision_final(outputs: Outputs, opts: HeadOptions) -> list[Detections]:
    """torchvision's own export (NMS inside): boxes [K, 4], labels [K], scores [K] for one image."""
    boxes, labels, scores = (outputs[n] for n in ("boxes", "labels", "scores"))
    boxes = _batched("torchvision", outputs, boxes, 3)
    labels = _batched("torchvision", outputs, labels, 2)
    scores = _batched("torchvision", outputs, scores, 2)
    if boxes.shape[2] != 4 or boxes.shape[:2] != labels.shape or labels.shape != scores.shape:
        raise _fail("torchvision", outputs, "boxes, labels and scores must agree on K")
    if not np.issubdtype(labels.dtype, np.integer):
        raise _fail("torchvision", outputs, f"labels must be integers, not {labels.dtype}")
    return [_ranked(b, s, c, opts) for b, s, c in zip(boxes, scores, labels, strict=True)]


def decode_torchvision(outputs: Outputs, opts: HeadOptions, input_size: tuple[int, int]) -> list[Detections]:
    if {"boxes", "labels", "scores"} <= outputs.keys():
        return _torchvision_final(outputs, opts)
    return _boxes_scores("torchvision", outputs, opts)


def decode_yolov5(outputs: Outputs, opts: HeadOptions, input_size: tuple[int, int]) -> list[Detections]:
    pred = _batched("yolov5", outputs, _one("yolov5", outputs), 3)
    if pred.shape[2] < 6:
        raise _fail("yolov5", outputs, "the last axis must hold 5 + C values")
    num = _class_columns("yolov5", outputs, pred.shape[2] - 5, opts)
    multi = HEADS["yolov5"].multi_label if opts.multi_label is None else opts.multi_label
    found = []
    for p in pred:
        # score = objectness x class probability <= objectness: rows below the threshold cannot pass
        objectness = finite_scores(p[:, 4])
        rows = p[objectness >= opts.score_threshold]
        scores = finite_scores(rows[:, 5:5 + num]) * objectness[objectness >= opts.score_threshold, None]
        found.append(_nms_select(_xyxy(rows[:, :4]), scores, opts, multi))
    return found


def decode_yolov8(outputs: Outputs, opts: HeadOptions, input_size: tuple[int, int]) -> list[Detections]:
    pred = _batched("yolov8", outputs, _one("yolov8", outputs), 3)
    if pred.shape[1] < 5:
        raise _fail("yolov8", outputs, "axis 1 must hold 4 + C values")
    num = _class_columns("yolov8", outputs, pred.shape[1] - 4, opts)
    multi = HEADS["yolov8"].multi_label if opts.multi_label is None else opts.multi_label
    found = []
    for p in pred:
        cls = finite_scores(p[4:4 + num])
        cols = np.flatnonzero(cls.max(axis=0) >= opts.score_threshold) if cls.shape[1] else np.zeros(0, np.int64)
        found.append(_nms_select(_xyxy(p[:4, cols].T), cls[:, cols].T, opts, multi))
    return found


def decode_end2end(outputs: Outputs, opts: HeadOptions, input_size: tuple[int, int]) -> list[Detections]:
    pred = _batched("end2end", outputs, _one("end2end", outputs), 3)
    if pred.shape[2] < 6:
        raise _fail("end2end", outputs, "the last axis must hold 6 values")
    found = []
    for p in pred:
        scores = finite_scores(p[:, 4])
        cls = p[:, 5].astype(np.float64)
        valid = np.isfinite(cls) & (cls >= 0) & (cls < 2**31) & (scores > 0)  # exports pad unused rows with zeros
        class_ids = np.where(valid, np.rint(np.where(valid, cls, 0)), 0).astype(np.int64)
        found.append(_ranked(p[:, :4], np.where(valid, scores, np.float32(-np.inf)), class_ids, opts))
    return found


def decode_detr(outputs: Outputs, opts: HeadOptions, input_size: tuple[int, int]) -> list[Detections]:
    logits, boxes = _named("detr", outputs, ("logits", "pred_boxes"))
    logits = _batched("detr", outputs, logits, 3)
    boxes = _batched("detr", outputs, boxes, 3)
    if boxes.shape[2] != 4 or logits.shape[2] < 2 or logits.shape[:2] != boxes.shape[:2]:
        raise _fail("detr", outputs, "logits and pred_boxes must agree on N and Q")
    z = logits.astype(np.float32, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        z = z - z.max(axis=-1, keepdims=True)
        probs = np.exp(z)
        probs /= probs.sum(axis=-1, keepdims=True)
    if opts.num_classes is not None:
        _class_columns("detr", outputs, logits.shape[2] - 1, opts)
    real = finite_scores(probs[..., :-1])
    labels = real.argmax(axis=-1)
    scores = np.take_along_axis(real, labels[..., None], axis=-1)[..., 0]
    width, height = input_size
    xyxy = _xyxy(boxes) * np.asarray([width, height, width, height], np.float32)
    return [_ranked(b, s, c, opts) for b, s, c in zip(xyxy, scores, labels, strict=True)]


HEADS: dict[str, Head] = {
    "visiongate": Head("visiongate", "outputs boxes [N,A,4] (xyxy, input pixels) and scores [N,A,C]",
                       decode_visiongate, nms=True, multi_label=True),
    "torchvision": Head("torchvision", "outputs boxes [N,A,4] (xyxy, input pixels) and scores [N,A,C], or "
                        "torchvision's post-NMS boxes [K,4], labels [K] and scores [K]",
                        decode_torchvision, nms=True, multi_label=True),
    "yolov5": Head("yolov5", "one output [N,A,5+C]: cx,cy,w,h (input pixels), objectness, C class scores",
                   decode_yolov5, nms=True, multi_label=False),
    "yolov8": Head("yolov8", "one output [N,4+C,A]: cx,cy,w,h (input pixels) then C class scores",
                   decode_yolov8, nms=True, multi_label=False),
    "end2end": Head("end2end", "one output [N,K,6]: x1,y1,x2,y2 (input pixels), score, class id",
                    decode_end2end, nms=False, multi_label=False),
    "detr": Head("detr", "outputs logits [N,Q,C+1] (last class = no object) and pred_boxes [N,Q,4] "
                 "(cx,cy,w,h normalised to the input)", decode_detr, nms=False, multi_label=False),
}


def get_head(name: str) -> Head:
    """The head called ``name``; ``ValueError`` listing the known ones otherwise."""
    try:
        return HEADS[name]
    except KeyError:
        raise ValueError(f"unknown detector head {name!r}; use one of {', '.join(HEADS)}") from None


def decode(head: str, outputs: Outputs, options: HeadOptions, input_size: tuple[int, int],
           images: int | None = None) -> list[Detections]:
    """A batch of raw detector outputs -> one ``Detections`` per image, boxes xyxy in input pixels.

    Args:
        head: a name in ``HEADS``.
        outputs: the model's outputs by name, in the model's output order, batch axis first.
        options: thresholds, class filter, limits.
        input_size: the model input's (width, height) in pixels.
        images: the batch size sent; a different count in the outputs is a layout error.

    Raises:
        OutputLayoutError: outputs of the wrong shape (a ``ValueError``).
        ValueError: an unknown head.
    """
    found = get_head(head).decode(outputs, options, input_size)
    if images is not None and len(found) != images:
        raise OutputLayoutError(f"detector head {head!r}: {images} images sent, outputs hold {len(found)} "
                                f"({_shapes(outputs)})")
    return found


def _dims(dims: Mapping[str, Sequence[int]], name: str, position: int) -> Sequence[int] | None:
    """Dims of output ``name``, else of the output at ``position`` in the model's order."""
    if name in dims:
        return dims[name]
    ordered = list(dims.values())
    return ordered[position] if len(dims) > position else None


def num_classes(head: str, dims: Mapping[str, Sequence[int]]) -> int | None:
    """Classes a model's outputs can name, from its output dims (config dims, with or without the batch
    axis; ``-1`` where dynamic); ``None`` when the layout does not say (end2end, torchvision post-NMS)."""
    get_head(head)
    if head in ("visiongate", "torchvision") and "labels" not in dims:
        shape, axis, minus = _dims(dims, "scores", 1), -1, 0
    elif head == "detr":
        shape, axis, minus = _dims(dims, "logits", 0), -1, 1
    elif head in ("yolov5", "yolov8") and len(dims) == 1:
        shape = next(iter(dims.values()))
        axis, minus = (-1, 5) if head == "yolov5" else (-2, 4)
    elif head in ("yolov5", "yolov8"):
        shape = _dims(dims, "output0", -1) if "output0" in dims else _dims(dims, "output", -1)
        axis, minus = (-1, 5) if head == "yolov5" else (-2, 4)
    else:
        return None
    if shape is None or len(shape) < -axis or shape[axis] < 0:
        return None
    return int(shape[axis]) - minus
