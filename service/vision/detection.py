"""Detector outputs -> final detections: score threshold, class filter, per-class NMS, box formats.

The exported detectors return, per image, ``boxes [B, 4]`` (xyxy in network-input pixels) and
``scores [B, C]`` (per-class probabilities, objectness already multiplied in). Everything here is
vectorised numpy; the only Python loop is greedy NMS over the *kept* boxes (tens, not thousands).

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
    Stops after ``limit`` kept boxes.
    """
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order].astype(np.float64)
    areas = box_area(boxes)
    alive = np.ones(len(order), dtype=bool)
    keep: list[int] = []
    limit = len(order) if limit is None else limit
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(i)
        if len(keep) >= limit:
            break
        rest = np.flatnonzero(alive[i + 1:]) + i + 1
        if rest.size == 0:
            break
        lt = np.maximum(boxes[i, :2], boxes[rest, :2])
        rb = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        wh = np.clip(rb - lt, 0, None)
        inter = wh[:, 0] * wh[:, 1]
        union = areas[i] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        alive[rest[iou > iou_threshold]] = False
    return order[np.asarray(keep, dtype=np.int64)]


def batched_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float,
                limit: int | None = None) -> np.ndarray:
    """Per-class NMS in one pass (offset trick). Shapes as ``nms`` plus ``class_ids [N]``."""
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    span = float(np.abs(boxes).max()) + 1.0
    shifted = boxes.astype(np.float64) + (class_ids.astype(np.float64) * 2 * span)[:, None]
    return nms(shifted, scores, iou_threshold, limit)


def select(boxes: np.ndarray, scores: np.ndarray, *, score_threshold: float, iou_threshold: float,
           max_detections: int, classes: np.ndarray | None = None) -> Detections:
    """One image's raw detector output -> final detections.

    Args:
        boxes: ``[B, 4]`` xyxy (any pixel frame; returned in the same frame).
        scores: ``[B, C]`` per-class scores.
        score_threshold: keep (box, class) pairs with score ``>=`` this.
        iou_threshold: per-class NMS threshold.
        max_detections: at most this many results, best first.
        classes: class ids ``[k]`` to keep; ``None`` keeps all.
    """
    if classes is not None:
        masked = np.zeros_like(scores)
        masked[:, classes] = scores[:, classes]
        scores = masked
    box_idx, cls_idx = np.nonzero(scores >= score_threshold)
    if box_idx.size == 0 or max_detections <= 0:
        return Detections.empty()
    cand_scores = scores[box_idx, cls_idx]
    if cand_scores.size > MAX_CANDIDATES:
        top = np.argpartition(-cand_scores, MAX_CANDIDATES - 1)[:MAX_CANDIDATES]
        box_idx, cls_idx, cand_scores = box_idx[top], cls_idx[top], cand_scores[top]
    cand_boxes = boxes[box_idx]
    keep = batched_nms(cand_boxes, cand_scores, cls_idx, iou_threshold, limit=max_detections)
    return Detections(cand_boxes[keep].astype(np.float32), cand_scores[keep].astype(np.float32),
                      cls_idx[keep].astype(np.int64))


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
