"""torchvision's Mask R-CNN (``maskrcnn_resnet50_fpn``, ``maskrcnn_resnet50_fpn_v2``) as one graph per image.

Mask R-CNN is two-stage: region proposals, per-class NMS and the mask head all run inside
``forward``, and torchvision's own ONNX export keeps them there. ``MaskRCNNGraph`` exports that
``forward`` minus ``GeneralizedRCNNTransform``'s resize (the gateway letterboxes into a fixed input
instead) and with the masks pasted by ``paste_masks``, a loop-free equivalent of torchvision's
``paste_masks_in_image`` (its traced form is an ONNX ``Loop`` whose growing output makes ONNX
Runtime log a shape warning per instance).

Graph: ``image uint8 [H, W, 3]`` RGB (one image, no batch axis: ``max_batch_size: 0``), normalised
in the graph with the model's own mean/std -> ``boxes float32 [K, 4]`` xyxy input pixels,
``labels int64 [K]``, ``scores float32 [K]``, ``masks float32 [K, 1, H, W]`` probabilities pasted
over the input (torchvision's output contract). The gateway's ``pasted`` segment head reads it.

Pre-processing: torchvision resizes the shorter side to 800 keeping the aspect ratio and pads the
bottom/right with zeros after normalisation; here the image is letterboxed into ``H x W`` (longer
side fitted, top-left aligned) with the ImageNet mean as padding, which normalises to about zero.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import MaskRCNN

from ..checkpoints import CheckpointError
from .base import LoadedModel, ModelCard

logger = logging.getLogger("visiongate.export")

#: the ImageNet mean in pixels as one grey value: the letterbox padding normalises to about 0
MEAN_PIXEL = 116
DEFAULT_SIZE = (800, 800)
#: what the gateway keeps by default (the graph itself keeps torchvision's score > 0.05, NMS 0.5, 100 per image)
SERVING = {"score_threshold": "0.5", "iou_threshold": "0.5", "max_detections": "100", "mask_threshold": "0.5"}
CLASS_KEY = "roi_heads.box_predictor.cls_score.weight"


def _builders() -> dict[str, Callable[..., nn.Module]]:
    from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2

    return {"maskrcnn_resnet50_fpn": maskrcnn_resnet50_fpn, "maskrcnn_resnet50_fpn_v2": maskrcnn_resnet50_fpn_v2}


INSTANCE_SEGMENTERS = ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2")


def is_instance_arch(arch: str) -> bool:
    """``torchvision:maskrcnn_resnet50_fpn[_v2]`` (or the bare name)."""
    library, _, name = arch.rpartition(":")
    return library in ("", "torchvision") and name in INSTANCE_SEGMENTERS


def build_maskrcnn(arch: str, num_classes: int) -> MaskRCNN:
    """The bare torchvision model, nothing downloaded (its state-dict keys are what users save)."""
    model: MaskRCNN = _builders()[arch](weights=None, weights_backbone=None, num_classes=num_classes)
    return model.eval()


def coco_categories(arch: str) -> tuple[str, ...]:
    """The weights enum's categories (91 COCO entries, ``__background__`` and ``N/A`` included)."""
    from torchvision import models

    return tuple(str(c) for c in models.get_model_weights(arch).DEFAULT.meta["categories"])


def _interpolation(src_side: int, boxes_lo: torch.Tensor, box_len: torch.Tensor, out: int) -> torch.Tensor:
    """``[K, out, src_side]`` bilinear weights (align_corners=False, as ``F.interpolate``) that resize a
    ``src_side`` mask to ``box_len`` pixels placed at ``boxes_lo``, sampled at image pixels ``0..out-1``."""
    pixels = torch.arange(out, dtype=torch.float32)
    src = (pixels[None] - boxes_lo[:, None].to(torch.float32) + 0.5) * (src_side / box_len.to(torch.float32))[:, None]
    src = (src - 0.5).clamp(min=0)
    low = src.floor().clamp(max=src_side - 1)
    frac = src - low
    low_i = low.to(torch.int64)
    high_i = (low_i + 1).clamp(max=src_side - 1)
    idx = torch.arange(src_side)
    return ((idx == low_i[..., None]).to(torch.float32) * (1 - frac)[..., None]
            + (idx == high_i[..., None]).to(torch.float32) * frac[..., None])


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], padding: int = 1) -> torch.Tensor:
    """torchvision's ``paste_masks_in_image`` without a per-instance loop.

    ``masks [K, 1, M, M]`` probabilities, ``boxes [K, 4]`` xyxy input pixels -> ``[K, 1, H, W]``: each
    mask padded by ``padding``, its box grown by the same factor and truncated to integers, resized
    bilinearly to the box and written into a zero image, exactly as torchvision does it one by one.
    """
    h, w = size
    side = masks.shape[-1]
    padded = F.pad(masks[:, 0], (padding,) * 4)
    x0, y0, x1, y1 = grid_boxes(boxes, side, padding).unbind(1)
    box_w = (x1 - x0 + 1).clamp(min=1)
    box_h = (y1 - y0 + 1).clamp(min=1)
    p = side + 2 * padding
    rows = _interpolation(p, y0, box_h, h)  # [K, H, P]
    cols = _interpolation(p, x0, box_w, w)  # [K, W, P]
    pasted = rows @ padded @ cols.transpose(1, 2)
    ys, xs = torch.arange(h)[None], torch.arange(w)[None]
    inside_y = (ys >= y0[:, None]) & (ys <= y1[:, None])
    inside_x = (xs >= x0[:, None]) & (xs <= x1[:, None])
    inside = inside_y[:, :, None] & inside_x[:, None, :]
    return (pasted * inside.to(pasted.dtype))[:, None]


def grid_boxes(boxes: torch.Tensor, side: int, padding: int = 1) -> torch.Tensor:
    """``int64 [K, 4]``: the pixel rectangles (inclusive) that ``paste_masks`` fills for ``boxes [K, 4]``
    and ``side x side`` masks: each box grown by ``(side + 2 padding) / side`` and truncated."""
    scale = (side + 2 * padding) / side
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    cx = (boxes[:, 2] + boxes[:, 0]) * 0.5
    cy = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=1).to(torch.int64)


def mask_side(model: MaskRCNN) -> int:
    """Side of the masks the mask head predicts (torchvision: RoI pooled 14, upsampled x2 = 28)."""
    pooled: Any = model.roi_heads.mask_roi_pool.output_size
    return 2 * int(pooled[0] if isinstance(pooled, list | tuple) else pooled)


class MaskRCNNGraph(nn.Module):
    """A torchvision ``MaskRCNN`` for one fixed-size ``uint8 [H, W, 3]`` image (see the module docstring)."""

    scale: torch.Tensor  # buffers, registered in __init__
    shift: torch.Tensor

    def __init__(self, model: MaskRCNN, input_size: tuple[int, int]) -> None:
        super().__init__()
        if not isinstance(model, MaskRCNN):
            raise TypeError(f"expected a torchvision MaskRCNN, got {type(model).__name__}")
        self.backbone = model.backbone
        self.rpn = model.rpn
        self.roi_heads = model.roi_heads
        self.input_size = input_size
        mean = torch.tensor(model.transform.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(model.transform.image_std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", mean / std)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        from torchvision.models.detection.image_list import ImageList

        x = image.permute(2, 0, 1)[None].to(torch.float32) * self.scale - self.shift
        sizes = [self.input_size]
        features = self.backbone(x)
        proposals, _ = self.rpn(ImageList(x, sizes), features)
        found, _ = self.roi_heads(features, proposals, sizes)
        one: dict[str, torch.Tensor] = found[0]
        boxes = one["boxes"]
        return boxes, one["labels"], one["scores"], paste_masks(one["masks"], boxes, self.input_size)


def torchvision_reference(model: MaskRCNN, input_size: tuple[int, int]) -> MaskRCNN:
    """The same model as torchvision runs it (its own transform, NMS and mask pasting), set so that an
    ``input_size`` image is not resized: the proof's reference for ``MaskRCNNGraph``."""
    h, w = input_size
    model.transform.min_size = (min(h, w),)
    model.transform.max_size = max(h, w)
    model.eval()
    return model


def _class_count(state: Mapping[str, torch.Tensor]) -> int | None:
    for key, value in state.items():  # the checkpoint may carry a prefix (module., model.)
        if key.endswith(CLASS_KEY):
            return int(value.shape[0])
    return None


def load_instance_segmenter(arch: str, state: Mapping[str, torch.Tensor] | None, num_classes: int | None,
                            labels: tuple[str, ...] | None, input_size: tuple[int, int] | None,
                            provenance: str) -> tuple[LoadedModel, MaskRCNN]:
    """(the graph module and its card, the loaded torchvision model for the proof).

    Raises:
        CheckpointError: labels that do not match the class count, a size that FPN cannot take, or
            tensors that do not fit.
    """
    from ..checkpoints import load_first_fitting

    if arch not in INSTANCE_SEGMENTERS:
        raise CheckpointError(f"unknown instance segmenter {arch!r}; known: {', '.join(INSTANCE_SEGMENTERS)}")
    size = input_size or DEFAULT_SIZE
    if size[0] % 32 or size[1] % 32:
        raise CheckpointError(f"Mask R-CNN input size must be a multiple of 32 (FPN strides), got {size[0]}x{size[1]}")
    categories = coco_categories(arch)
    n = num_classes or (_class_count(state) if state is not None else None) \
        or (len(labels) if labels else None) or len(categories)
    if labels is not None and len(labels) != n:
        raise CheckpointError(f"{len(labels)} labels for torchvision:{arch} with num_classes={n} "
                              f"(class 0 is the background and is never answered, but it has a label)")
    if labels is None:
        if len(categories) == n:
            labels = categories
        else:
            logger.warning("no labels given for %d classes: naming them class_0 .. class_%d (pass --labels FILE)",
                           n, n - 1)
            labels = tuple(f"class_{i}" for i in range(n))
    what = f"torchvision:{arch} with num_classes={n}"
    if state is None:
        model = build_maskrcnn(arch, n)
    else:
        _, model = load_first_fitting([("torchvision", lambda: build_maskrcnn(arch, n))], state, what=what)
    model.eval()
    mean, std = _three(model.transform.image_mean), _three(model.transform.image_std)
    card = ModelCard(
        task="segment", input_size=size, resize="letterbox", mean=mean, std=std,
        interpolation="bilinear", labels=labels,
        extra={"segment_kind": "instance", "head": "pasted", "letterbox_pad": str(MEAN_PIXEL),
               "letterbox_align": "top_left", **SERVING},
        provenance=f"torchvision:{arch} from {provenance}; one image of {size[0]}x{size[1]} per call "
                   f"(letterboxed; torchvision resizes the shorter side to 800)",
    )
    return LoadedModel(MaskRCNNGraph(model, size).eval(), card), model


def _three(values: Any) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return a, b, c
