"""torchvision single-stage detectors (SSD300-VGG16, SSDlite320-MobileNetV3, RetinaNet-R50-FPN) as graphs.

torchvision's detection models normalise and resize inside ``forward`` (``GeneralizedRCNNTransform``)
and run NMS there too; neither belongs in a serving graph. ``DecodedDetector`` skips both: it feeds
the already-normalised, fixed-size input straight to ``backbone`` and ``head`` and decodes the
head's box regressions against the anchors (computed once for the fixed input size and stored as
a constant) with the model's own box-coder weights. NMS is left to the gateway.

Output (the detect contract): ``boxes [N, A, 4]`` xyxy in network-input pixels, clipped to the
image, and ``scores [N, A, C]``:
- SSD / SSDlite: softmax over the classes, background column 0 dropped (C = num_classes - 1);
- RetinaNet: per-class sigmoid (C = num_classes; torchvision's COCO layout keeps index 0 as an
  unused "__background__" column).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torchvision.models.detection import (
    RetinaNet,
    retinanet_resnet50_fpn,
    retinanet_resnet50_fpn_v2,
    ssd300_vgg16,
    ssdlite320_mobilenet_v3_large,
)
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD

#: (builder, default input size (H, W)) of each supported model
DETECTORS: dict[str, tuple[Callable[..., nn.Module], tuple[int, int]]] = {
    "ssd300_vgg16": (ssd300_vgg16, (300, 300)),
    "ssdlite320_mobilenet_v3_large": (ssdlite320_mobilenet_v3_large, (320, 320)),
    # trained with the shorter side at 800; stretched to a square here (must be a multiple of 32: FPN)
    "retinanet_resnet50_fpn": (retinanet_resnet50_fpn, (800, 800)),
    "retinanet_resnet50_fpn_v2": (retinanet_resnet50_fpn_v2, (800, 800)),
}


def build_torchvision_detector(arch: str, num_classes: int) -> nn.Module:
    """The bare torchvision model, no weights downloaded (its state-dict keys are what users save)."""
    builder, _ = DETECTORS[arch]
    return builder(weights=None, weights_backbone=None, num_classes=num_classes)


def has_background_column(model: nn.Module) -> bool:
    """SSD scores are a softmax whose class 0 is background; RetinaNet's are independent sigmoids."""
    return isinstance(model, SSD)


class DecodedDetector(nn.Module):
    """Backbone + head + box decoding of a torchvision SSD/RetinaNet, for a fixed input size.

    Input ``[N, 3, H, W]`` normalised as the model was trained (``model.transform.image_mean/std``).
    """

    coder_weights: torch.Tensor  # buffers, registered in __init__
    anchors: torch.Tensor

    def __init__(self, model: nn.Module, input_size: tuple[int, int]) -> None:
        super().__init__()
        if not isinstance(model, SSD | RetinaNet):
            raise TypeError(f"expected a torchvision SSD or RetinaNet, got {type(model).__name__}")
        if isinstance(model, RetinaNet) and (input_size[0] % 32 or input_size[1] % 32):
            raise ValueError(f"RetinaNet input size must be a multiple of 32 (FPN strides), got {input_size}")
        self.backbone = model.backbone
        self.head = model.head
        self.softmax = has_background_column(model)
        self.input_size = input_size
        weights = torch.tensor(model.box_coder.weights, dtype=torch.float32)
        self.register_buffer("coder_weights", weights, persistent=False)
        self.clip = float(model.box_coder.bbox_xform_clip)
        self.register_buffer("anchors", self._anchors(model, input_size), persistent=False)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.backbone(x)
        if isinstance(features, torch.Tensor):
            return [features]
        return list(features.values())

    def _anchors(self, model: SSD | RetinaNet, input_size: tuple[int, int]) -> torch.Tensor:
        """Anchor boxes ``[A, 4]`` xyxy pixels: they depend only on the feature-map and image sizes."""
        with torch.no_grad():
            dummy = torch.zeros(1, 3, *input_size)
            features = self._features(dummy)
            anchors = model.anchor_generator(ImageList(dummy, [input_size]), features)
        first: torch.Tensor = anchors[0]
        return first.detach().clone()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Box regressions ``[N, A, 4]`` -> xyxy pixels ``[N, A, 4]`` (torchvision's BoxCoder, batched)."""
        a = self.anchors
        widths = a[:, 2] - a[:, 0]
        heights = a[:, 3] - a[:, 1]
        cx = a[:, 0] + 0.5 * widths
        cy = a[:, 1] + 0.5 * heights
        rel = codes / self.coder_weights
        dx, dy = rel[..., 0], rel[..., 1]
        dw = rel[..., 2].clamp(max=self.clip)
        dh = rel[..., 3].clamp(max=self.clip)
        px = dx * widths + cx
        py = dy * heights + cy
        half_w = 0.5 * torch.exp(dw) * widths
        half_h = 0.5 * torch.exp(dh) * heights
        h, w = self.input_size
        return torch.stack([(px - half_w).clamp(0, w), (py - half_h).clamp(0, h),
                            (px + half_w).clamp(0, w), (py + half_h).clamp(0, h)], dim=-1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self._features(x))
        boxes = self.decode(out["bbox_regression"])
        logits = out["cls_logits"]
        scores = torch.softmax(logits, dim=-1)[..., 1:] if self.softmax else torch.sigmoid(logits)
        return boxes, scores


def detector_normalisation(model: SSD | RetinaNet) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """(mean, std) in [0, 1] units that the model's own transform would apply."""
    return _rgb(model.transform.image_mean), _rgb(model.transform.image_std)


def _rgb(values: Iterable[float]) -> tuple[float, float, float]:
    r, g, b = (float(v) for v in values)
    return r, g, b


def classes_in_checkpoint(arch: str, state: dict[str, torch.Tensor]) -> int | None:
    """``num_classes`` a checkpoint was trained with, from its classification head's shape."""
    if arch.startswith("retinanet_"):
        w = state.get("head.classification_head.cls_logits.weight")
        return w.shape[0] // 9 if w is not None else None  # 9 anchors per location
    # SSD heads: one conv per level with num_classes * anchors outputs; the first level has 4 anchors
    for key in ("head.classification_head.module_list.0.weight", "head.classification_head.module_list.0.1.weight"):
        w = state.get(key)
        if w is not None:
            per_location = 4 if arch == "ssd300_vgg16" else 6
            n = w.shape[0] / per_location
            return int(n) if math.isclose(n, round(n)) else None
    return None
