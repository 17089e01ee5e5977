"""Detector outputs -> final detections: score threshold, class filter, per-class NMS, box formats.

The exported detectors return, per image, ``boxes [B, 4]`` (xyxy in network-input pixels) and
``scores [B, C]`` (per-class probabilities, objectness already multiplied in). Everything here is
vectorised numpy; the only Python loop is greedy NMS, one step per *kept* box (tens, not thousands).
``heads.py`` turns each detector family's raw outputs into the (boxes, scores) these functions take.

Multi-label: one box may yield several detections when more than one class clears the threshold
(darknet does the same). Per-class NMS uses the offset trick: each class's boxes are shifted by
``class_id * (max coordinate + 1)`` so boxes of different classes never overlap, and one NMS pass
suppresses within classes only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

BoxFormat = Literal["xyxy", "xywh", "normalized"]
BOX_FORMATS: tuple[BoxFormat, ...] = ("xyxy", "xywh", "normalized")

#: candidates kept (best scores first) before NMS: bounds its cost on images full of weak boxes
MAX_CANDIDATES = 4096


@dataclass(frozen=True)
class Detections:
    """``boxes float32 [K, 4]`` xyxy, ``scores float32 [K]``, ``class_ids int64 [K]``; best first."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def box_area(boxes: np.ndarray) -> np.ndarray:
    """``[N, 4]`` xyxy -> ``[N]`` areas (0 for degenerate boxes)."""
    area: np.ndarray = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    return area


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a [N, 4]``, ``b [M, 4]`` xyxy -> IoU ``[N, M]`` (0 where the union is empty)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int | None = None) -> np.ndarray:
    """Greedy NMS. ``boxes [N, 4]`` xyxy, ``scores [N]`` -> indices kept ``[K]``, best score first.

    A box is dropped when its IoU with a better kept box is *greater than* ``iou_threshold``.
    Stops after ``limit`` kept boxes. One vectorised step per *kept* box.
    """
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order].astype(np.float64)
    areas = box_area(boxes)
    limit = len(order) if limit is None else limit
    keep: list[int] = []
    remaining = np.arange(len(order))
    while remaining.size and len(keep) < limit:
        i = int(remaining[0])
        keep.append(i)
        rest = remaining[1:]
        lt = np.maximum(boxes[i, :2], boxes[rest, :2])
        rb = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        wh = np.clip(rb - lt, 0, None)
        inter = wh[:, 0] * wh[:, 1]
        union = areas[i] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        remaining = rest[iou <= iou_threshold]
    return order[np.asarray(keep, dtype=np.int64)]


def batched_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float,
                limit: int | None = None) -> np.ndarray:
    """Per-class NMS in one pass (offset trick). Shapes as ``nms`` plus ``class_ids [N]``."""
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    span = float(np.abs(boxes).max()) + 1.0
    shifted = boxes.astype(np.float64) + (class_ids.astype(np.float64) * 2 * span)[:, None]
    return nms(shifted, scores, iou_threshold, limit)


def finite_scores(scores: np.ndarray) -> np.ndarray:
    """``scores`` as float32 with NaN and +-Inf replaced by -Inf, so no threshold ever keeps them."""
    scores = scores.astype(np.float32, copy=False)
    finite = np.isfinite(scores)
    return scores if finite.all() else np.where(finite, scores, np.float32(-np.inf))


def _nms_top(boxes: np.ndarray, box_idx: np.ndarray, cls_idx: np.ndarray, cand_scores: np.ndarray,
             iou_threshold: float, max_detections: int, max_candidates: int) -> Detections:
    """Candidates (rows of ``boxes`` with their class and score) -> per-class NMS -> Detections."""
    if cand_scores.size > max_candidates:
        top = np.argpartition(-cand_scores, max_candidates - 1)[:max_candidates]
        box_idx, cls_idx, cand_scores = box_idx[top], cls_idx[top], cand_scores[top]
    cand_boxes = boxes[box_idx].astype(np.float32, copy=False)
    finite = np.isfinite(cand_boxes).all(axis=1)
    if not finite.all():
        cand_boxes, cls_idx, cand_scores = cand_boxes[finite], cls_idx[finite], cand_scores[finite]
    keep = batched_nms(cand_boxes, cand_scores, cls_idx, iou_threshold, limit=max_detections)
    return Detections(cand_boxes[keep].astype(np.float32), cand_scores[keep].astype(np.float32),
                      cls_idx[keep].astype(np.int64))


def select(boxes: np.ndarray, scores: np.ndarray, *, score_threshold: float, iou_threshold: float,
           max_detections: int, classes: np.ndarray | None = None,
           max_candidates: int = MAX_CANDIDATES) -> Detections:
    """One image's raw detector output -> final detections, every class that clears the threshold.

    Args:
        boxes: ``[B, 4]`` xyxy (any pixel frame; returned in the same frame).
        scores: ``[B, C]`` per-class scores; NaN/Inf never pass, nor do boxes with NaN/Inf corners.
        score_threshold: keep (box, class) pairs with score ``>=`` this.
        iou_threshold: per-class NMS threshold.
        max_detections: at most this many results, best first.
        classes: class ids ``[k]`` to keep; ``None`` keeps all.
        max_candidates: best (box, class) pairs that go into NMS.
    """
    scores = finite_scores(scores)
    if classes is not None:
        masked = np.full_like(scores, -np.inf)
        masked[:, classes] = scores[:, classes]
        scores = masked
    box_idx, cls_idx = np.nonzero(scores >= score_threshold)
    if box_idx.size == 0 or max_detections <= 0:
        return Detections.empty()
    return _nms_top(boxes, box_idx, cls_idx, scores[box_idx, cls_idx], iou_threshold, max_detections,
                    max_candidates)


def select_best_class(boxes: np.ndarray, scores: np.ndarray, *, score_threshold: float, iou_threshold: float,
                      max_detections: int, classes: np.ndarray | None = None,
                      max_candidates: int = MAX_CANDIDATES) -> Detections:
    """Like ``select`` but one class per box: its best one (Ultralytics' and YOLOv5's default).

    The class filter applies after the best class is chosen, as those libraries do: a box whose best
    class is filtered out is dropped, not relabelled with its second best.
    """
    scores = finite_scores(scores)
    if scores.shape[1] == 0 or max_detections <= 0:
        return Detections.empty()
    rows = np.flatnonzero(scores.max(axis=1) >= score_threshold)
    cls_idx = scores[rows].argmax(axis=1)
    if classes is not None:
        wanted = np.isin(cls_idx, classes)
        rows, cls_idx = rows[wanted], cls_idx[wanted]
    if rows.size == 0:
        return Detections.empty()
    return _nms_top(boxes, rows, cls_idx, scores[rows, cls_idx], iou_threshold, max_detections, max_candidates)


def select_ranked(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, *, score_threshold: float,
                  max_detections: int, classes: np.ndarray | None = None) -> Detections:
    """Detections already final (one class each, no NMS wanted): threshold, class filter, best first.

    ``boxes [K, 4]``, ``scores [K]``, ``class_ids [K]`` integers; rows with a non-finite score or
    corner are dropped.
    """
    scores = finite_scores(scores)
    boxes = boxes.astype(np.float32, copy=False)
    keep = (scores >= score_threshold) & np.isfinite(boxes).all(axis=1)
    if classes is not None:
        keep &= np.isin(class_ids, classes)
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(-scores[idx], kind="stable")][:max(max_detections, 0)]
    return Detections(boxes[idx].astype(np.float32), scores[idx].astype(np.float32),
                      class_ids[idx].astype(np.int64))


def convert_boxes(boxes: np.ndarray, fmt: BoxFormat, size: tuple[int, int]) -> np.ndarray:
    """``boxes [K, 4]`` xyxy in pixels of an image of ``size`` (width, height) -> ``fmt``.

    ``xyxy``: corners in pixels; ``xywh``: COCO's top-left corner + width/height in pixels;
    ``normalized``: xyxy divided by the image width/height (0..1).
    """
    out = boxes.astype(np.float32, copy=True)
    if fmt == "xyxy":
        return out
    if fmt == "xywh":
        out[:, 2:] = boxes[:, 2:] - boxes[:, :2]
        return out
    if fmt == "normalized":
        w, h = size
        out[:, 0::2] /= w
        out[:, 1::2] /= h
        return out
    raise ValueError(f"unknown box format {fmt!r}; use one of {BOX_FORMATS}")


def parse_classes(text: str, labels: tuple[str, ...] | None, num_classes: int) -> np.ndarray:
    """``"person, 2,car"`` -> class ids ``[k]``; names match labels case-insensitively.

    Raises:
        ValueError: an unknown name or an id out of range (the message lists what is wrong).
    """
    by_name = {name.lower(): i for i, name in enumerate(labels or ())}
    ids: list[int] = []
    unknown: list[str] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if item.lstrip("-").isdigit():
            value = int(item)
            if 0 <= value < num_classes:
                ids.append(value)
            else:
                unknown.append(item)
        elif item.lower() in by_name:
            ids.append(by_name[item.lower()])
        else:
            unknown.append(item)
    if unknown:
        raise ValueError(f"unknown classes {unknown}: give label names or ids 0..{num_classes - 1}")
    if not ids:
        raise ValueError("no classes given")
    return np.unique(np.asarray(ids, dtype=np.int64))
