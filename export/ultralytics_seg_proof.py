"""The instance half of a YOLO-seg export's proof: Ultralytics' own ``predict`` against the gateway.

Both sides see the same input tensors (the proof photos letterboxed by the gateway's code):
Ultralytics runs its PyTorch model, its NMS and ``process_mask`` (``predict`` on a tensor skips its
own resize); the gateway's side is the ONNX output through ``vision/seg_heads.py``, its best-class
selection and ``vision/masks.py``. Every instance must pair by class and box (IoU >= 0.99, score
within 1e-3) and its mask must match (IoU >= 0.99) on the pixels wholly inside the box: Ultralytics
crops a mask to pixel indices in the box, the gateway to pixel centres, so the edge columns and
rows may differ by design.

An untrained checkpoint scores nothing above the served threshold; the comparison then runs at a
threshold that lets about 20 boxes per photo through, placed in the widest gap between
neighbouring scores (float rounding cannot move a score across it), and the report says so. A
freshly initialised head has too few distinct scores for that: no instance is compared, which only
``--allow-empty-detections`` accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .parity import mask_iou

#: boxes per photo the lowered proof threshold aims to let through
WANTED = 20
MIN_IOU = 0.99
SCORE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class SegComparison:
    passed: bool
    metrics: dict[str, float]
    thresholds: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


def proof_threshold(best: np.ndarray, served: float, wanted: int = WANTED, margin: float = 1e-4) -> float | None:
    """``served`` when some box clears it and none lies within ``margin`` of it; else a threshold in
    the widest gap between neighbouring scores near the ``wanted``-th best of every photo; ``None``
    when a photo's scores take too few distinct values for that (a freshly initialised head gives
    every anchor of a level the same score: ties that NMS may break either way).
    ``best``: each box's best class score, ``[N, A]``."""
    if (best >= served).any() and not (np.abs(best - served) <= margin).any():
        return served
    per_photo = []
    for image in best:
        s = np.unique(image[np.isfinite(image)])[::-1]
        if len(s) <= 2 * wanted:
            return None
        lo, hi = wanted // 2, 2 * wanted
        k = lo + int(np.argmax(s[lo - 1:hi - 1] - s[lo:hi]))
        per_photo.append((float(s[k - 1]) + float(s[k])) / 2)
    return min(per_photo, default=served)


def _interior(box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``bool [h, w]``: the pixels wholly inside ``box`` (xyxy)."""
    h, w = size
    inside = np.zeros((h, w), bool)
    x0, y0 = int(np.ceil(box[0])), int(np.ceil(box[1]))
    x1, y1 = int(np.floor(box[2])), int(np.floor(box[3]))
    inside[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return inside


def _gateway(got: list[np.ndarray], k: int, threshold: float, params: dict[str, str],
             size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The gateway's instances on image ``k`` of the ONNX outputs, in input pixels: boxes, scores,
    class ids, ``bool [K, h, w]`` masks."""
    from visiongate.service.vision.detection import select_best_class
    from visiongate.service.vision.masks import instance_masks
    from visiongate.service.vision.preprocess import Placement
    from visiongate.service.vision.seg_heads import yolo_seg_outputs

    h, w = size
    named = yolo_seg_outputs({"output0": got[0][k:k + 1], "output1": got[1][k:k + 1]})
    boxes = named["boxes"][0]
    found = select_best_class(boxes, named["scores"][0], score_threshold=threshold,
                              iou_threshold=float(params["iou_threshold"]),
                              max_detections=int(params["max_detections"]))
    rows = [int(np.flatnonzero((boxes == b).all(1))[0]) for b in found.boxes]
    placement = Placement(1.0, 1.0, 0.0, 0.0, (w, h))  # input pixels are the "original" here
    clipped = placement.to_original(found.boxes)
    masks = instance_masks(named["mask_coefficients"][0][rows], named["prototypes"][0], clipped, placement,
                           size, float(params.get("mask_threshold", "0.5")))
    full = np.stack([m.full() for m in masks]) if masks else np.zeros((0, h, w), bool)
    return clipped, found.scores, found.class_ids, full


def compare_instances(yolo: Any, x: np.ndarray, got: list[np.ndarray], params: dict[str, str],
                      classes: int) -> SegComparison:
    """``yolo``: an ``ultralytics.YOLO`` of the checkpoint; ``x``: ``float32 [N, 3, h, w]`` the proof
    inputs; ``got``: the ONNX outputs on them (``[N, 4+C+P, A]``, ``[N, P, h', w']``)."""
    import torch

    from visiongate.service.vision.detection import box_iou

    size = (int(x.shape[2]), int(x.shape[3]))
    served = float(params["score_threshold"])
    threshold = proof_threshold(got[0][:, 4:4 + classes, :].max(axis=1), served)
    if threshold is None:
        return SegComparison(False, {"instances": 0.0}, {"instances": 1.0}, {
            "no_instances": "instances not compared: nothing clears the served threshold and the scores take too "
                            "few distinct values to place a lower one (an untrained head)"})
    results = yolo.predict(source=torch.from_numpy(x), imgsz=list(size), conf=threshold,
                           iou=float(params["iou_threshold"]), max_det=int(params["max_detections"]),
                           device="cpu", verbose=False)
    box_ious: list[float] = []
    score_diffs: list[float] = []
    ious: list[float] = []
    unpaired = count = 0
    for k, result in enumerate(results):
        boxes, scores, class_ids, masks = _gateway(got, k, threshold, params, size)
        want_boxes = result.boxes.xyxy.numpy()
        want_classes = result.boxes.cls.numpy().astype(np.int64)
        want_scores = result.boxes.conf.numpy()
        want_masks = result.masks.data.numpy().astype(bool) if result.masks is not None \
            else np.zeros((0, *size), bool)
        count += len(want_boxes)
        overlap = box_iou(want_boxes, boxes) if len(want_boxes) and len(boxes) else np.zeros((len(want_boxes), 0))
        taken = np.zeros(len(boxes), bool)
        for i in range(len(want_boxes)):
            candidates = np.flatnonzero((class_ids == want_classes[i]) & ~taken)
            j = int(candidates[np.argmax(overlap[i, candidates])]) if candidates.size else -1
            if j < 0 or overlap[i, j] <= 0.5:
                unpaired += 1
                continue
            taken[j] = True
            box_ious.append(float(overlap[i, j]))
            score_diffs.append(abs(float(want_scores[i]) - float(scores[j])))
            inside = _interior(want_boxes[i], size)
            ious.append(mask_iou(want_masks[i] & inside, masks[j] & inside))
        unpaired += int((~taken).sum())
    metrics = {"proof_score_threshold": threshold, "instances": float(count), "unpaired_instances": float(unpaired),
               "min_instance_box_iou": min(box_ious, default=1.0),
               "max_instance_score_diff": max(score_diffs, default=0.0), "min_mask_iou": min(ious, default=1.0)}
    thresholds = {"unpaired_instances": 0.0, "min_instance_box_iou": MIN_IOU,
                  "max_instance_score_diff": SCORE_TOLERANCE, "min_mask_iou": MIN_IOU}
    passed = (unpaired == 0 and metrics["min_instance_box_iou"] >= MIN_IOU
              and metrics["max_instance_score_diff"] <= SCORE_TOLERANCE and metrics["min_mask_iou"] >= MIN_IOU)
    details: dict[str, Any] = {"instances_reference": "ultralytics YOLO.predict on the same input tensors"}
    if threshold != served:
        details["proof_threshold"] = (f"instances compared at score >= {threshold:.6g}, not the served {served}: "
                                      "nothing clears the served threshold (or a score sits on it)")
    if count == 0:
        passed = False
        thresholds["instances"] = 1.0
        details["no_instances"] = "Ultralytics found no instance even at the lowered threshold"
    return SegComparison(passed, metrics, thresholds, details)
