"""Instance segmentation outputs -> the named tensors ``Segmenter`` reads.

The ``yolo_seg`` head comes in two layouts:

- visiongate's own exports: ``boxes [N, B, 4]`` (xyxy, input pixels), ``scores [N, B, C]``,
  ``mask_coefficients [N, B, P]``, ``prototypes [N, P, h, w]``;
- Ultralytics' YOLOv8/YOLO11-seg ONNX: ``output0 [N, 4 + C + P, A]`` (cx, cy, w, h in input pixels,
  C class scores, P mask coefficients per anchor) and ``output1 [N, P, h, w]`` (the prototypes).
  The two are told apart by rank, whatever their names; P is the prototypes' channel count.

The ``pasted`` head (masks already pasted over the network input) also comes in two:

- ``boxes [N, B, 4]``, ``scores [N, B, C]``, ``masks [N, B, h, w]`` probabilities;
- torchvision's Mask R-CNN (``export/sources/torchvision_instance.py``): ``boxes [K, 4]``,
  ``labels [K]``, ``scores [K]``, ``masks [K, 1, H, W]`` for one image, NMS already done.

Pure numpy: the second layout of each is re-cut into the first.
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


def _one_image(outputs: Mapping[str, np.ndarray], name: str, rank: int) -> np.ndarray:
    """``outputs[name]`` with its batch axis (added when the model answered one image without one)."""
    arr = outputs[name]
    if arr.ndim == rank - 1:
        arr = arr[None]
    if arr.ndim != rank:
        raise OutputLayoutError(
            f"instance head 'pasted': {name} must have {rank - 1} dims (or {rank} with the batch axis); "
            f"got {_shapes(outputs)}")
    return arr


def pasted_outputs(outputs: Mapping[str, np.ndarray], num_classes: int | None = None) -> dict[str, np.ndarray]:
    """The ``pasted`` head's outputs in its named layout: ``boxes [N, B, 4]`` xyxy input pixels,
    ``scores [N, B, C]`` and ``masks [N, B, h, w]`` probabilities over the network input.

    Also read: torchvision's Mask R-CNN (NMS inside), ``boxes [K, 4]``, ``labels [K]`` integers,
    ``scores [K]``, ``masks [K, 1, H, W]``, with or without a batch axis: each row's score goes to its
    label's column (other columns -inf, so no threshold keeps them), ``C`` = ``num_classes`` (the
    model's labels) or the largest label + 1.

    Raises:
        OutputLayoutError: neither layout fits (names the shapes found).
    """
    if "labels" not in outputs:
        if not {"boxes", "scores", "masks"} <= outputs.keys():
            raise OutputLayoutError(
                "instance head 'pasted' expects boxes/scores/masks, or torchvision Mask R-CNN's "
                f"boxes/labels/scores/masks; got {_shapes(outputs)}")
        return {k: outputs[k] for k in ("boxes", "scores", "masks")}
    if not {"boxes", "scores", "masks"} <= outputs.keys():
        raise OutputLayoutError(
            f"instance head 'pasted' (torchvision Mask R-CNN) expects boxes, labels, scores and masks; "
            f"got {_shapes(outputs)}")
    boxes = _one_image(outputs, "boxes", 3)
    labels = _one_image(outputs, "labels", 2)
    scores = _one_image(outputs, "scores", 2)
    masks = _one_image(outputs, "masks", 5)
    if masks.shape[2] != 1:
        raise OutputLayoutError(f"instance head 'pasted': masks [K, 1, H, W] has one channel; got {_shapes(outputs)}")
    masks = masks[:, :, 0]
    n, k = labels.shape
    if boxes.shape != (n, k, 4) or scores.shape != (n, k) or masks.shape[:2] != (n, k):
        raise OutputLayoutError(
            f"instance head 'pasted': boxes, labels, scores and masks must agree on K; got {_shapes(outputs)}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise OutputLayoutError(f"instance head 'pasted': labels must be integers, not {labels.dtype}")
    if k and (labels.min() < 0 or (num_classes is not None and labels.max() >= num_classes)):
        raise OutputLayoutError(
            f"instance head 'pasted': labels {int(labels.min())}..{int(labels.max())} outside the model's "
            f"{num_classes} classes")
    columns = num_classes if num_classes is not None else (int(labels.max()) + 1 if k else 1)
    table = np.full((n, k, columns), -np.inf, np.float32)
    np.put_along_axis(table, labels[..., None].astype(np.int64), scores[..., None].astype(np.float32), axis=-1)
    return {"boxes": boxes, "scores": table, "masks": masks}
