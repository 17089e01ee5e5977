"""Instance segmentation outputs -> the named tensors ``Segmenter`` reads.

The ``yolo_seg`` head comes in two layouts:

- visiongate's own exports: ``boxes [N, B, 4]`` (xyxy, input pixels), ``scores [N, B, C]``,
  ``mask_coefficients [N, B, P]``, ``prototypes [N, P, h, w]``;
- Ultralytics' YOLOv8/YOLO11-seg ONNX: ``output0 [N, 4 + C + P, A]`` (cx, cy, w, h in input pixels,
  C class scores, P mask coefficients per anchor) and ``output1 [N, P, h, w]`` (the prototypes).
  The two are told apart by rank, whatever their names; P is the prototypes' channel count.

Pure numpy: the second layout is re-cut into the first.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .heads import OutputLayoutError

NAMED = ("boxes", "scores", "mask_coefficients", "prototypes")


def _shapes(outputs: Mapping[str, np.ndarray]) -> str:
    return ", ".join(f"{k} {list(v.shape)}" for k, v in outputs.items())


def yolo_seg_outputs(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``outputs`` in visiongate's named layout (returned as they are when already in it).

    Raises:
        OutputLayoutError: neither layout fits (names the shapes found).
    """
    if all(k in outputs for k in NAMED):
        return {k: outputs[k] for k in NAMED}
    by_rank = {v.ndim: v for v in outputs.values()}
    if len(outputs) != 2 or set(by_rank) != {3, 4}:
        raise OutputLayoutError(
            "instance head 'yolo_seg' expects boxes/scores/mask_coefficients/prototypes, or Ultralytics' "
            f"[N, 4+C+P, A] and [N, P, h, w]; got {_shapes(outputs)}")
    pred, prototypes = by_rank[3], by_rank[4]
    p = prototypes.shape[1]
    classes = pred.shape[1] - 4 - p
    if classes < 1 or pred.shape[0] != prototypes.shape[0]:
        raise OutputLayoutError(
            f"instance head 'yolo_seg': [N, 4+C+P, A] with P = {p} prototypes needs at least {5 + p} rows "
            f"and the same N; got {_shapes(outputs)}")
    rows = pred.transpose(0, 2, 1)  # [N, A, 4 + C + P]
    cx, cy, w, h = (rows[..., i] for i in range(4))
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1).astype(np.float32)
    return {
        "boxes": boxes,
        "scores": np.ascontiguousarray(rows[..., 4:4 + classes]),
        "mask_coefficients": np.ascontiguousarray(rows[..., 4 + classes:]),
        "prototypes": prototypes,
    }
