"""torchvision's semantic segmentation models (DeepLabV3, LR-ASPP, FCN) by name -> ``LoadedModel``.

Pre-processing comes from the weights enum's ``transforms()`` (``SemanticSegmentation``: the shorter
side resized to ``resize_size``, bilinear, ImageNet mean/std) and the labels from
``weights.meta["categories"]`` (the 21 Pascal VOC classes). torchvision evaluates at any aspect
ratio; the exported graph has a fixed square input of ``resize_size`` pixels, so the gateway
letterboxes the image into it (the longer side becomes ``resize_size``) with the ImageNet mean
as padding, which normalises to zero as the networks' own zero padding does.

The module answers the model's ``out`` (per-class logits at the input size); the auxiliary
classifier, a training-only head, is neither built nor loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..checkpoints import CheckpointError
from .base import LoadedModel, ModelCard

logger = logging.getLogger("visiongate.export")

#: the training-only auxiliary head of DeepLabV3/FCN checkpoints
AUX_PREFIX = "aux_classifier."
#: the ImageNet mean in pixels, as one grey value: the letterbox padding normalises to ~0
MEAN_PIXEL = 116


def _three(values: Any) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return a, b, c


def segmentation_names() -> list[str]:
    from torchvision import models

    return list(models.list_models(module=models.segmentation))


class OutLogits(nn.Module):
    """``model(x)["out"]``: the per-class logits ``[N, C, H, W]`` at the input size."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(x)["out"]
        return out


def _build(name: str, num_classes: int) -> nn.Module:
    from torchvision import models

    # without weights, the auxiliary head is not built (aux_loss defaults to off)
    module: nn.Module = models.get_model(name, weights=None, weights_backbone=None, num_classes=num_classes)
    return module


def _without_aux(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    kept = {k: v for k, v in state.items() if AUX_PREFIX not in k}
    if len(kept) != len(state):
        logger.info("dropped %d tensors of the auxiliary classifier (training only)", len(state) - len(kept))
    return kept


def _class_count(name: str, state: Mapping[str, torch.Tensor], default: int) -> int:
    from .library import head_key

    probe = _build(name, default)
    key = head_key(probe, default)
    for k, v in state.items():  # the checkpoint may carry a prefix (module., model.)
        if key is not None and k.endswith(key):
            return int(v.shape[0])
    return default


def torchvision_segmenter(name: str, state: Mapping[str, torch.Tensor] | None, num_classes: int | None,
                          labels: tuple[str, ...] | None, input_size: tuple[int, int] | None,
                          provenance: str) -> LoadedModel:
    """``name`` (one of ``segmentation_names()``) with ``state`` loaded, or randomly initialised.

    Raises:
        CheckpointError: labels that do not match the class count, or tensors that do not fit.
    """
    from torchvision import models

    from ..checkpoints import load_first_fitting

    weights = models.get_model_weights(name).DEFAULT
    transform: Any = weights.transforms()
    categories = tuple(str(c) for c in weights.meta["categories"])
    if state is not None:
        state = _without_aux(state)
    n = num_classes or (len(labels) if labels else None)
    if n is None:
        n = _class_count(name, state, len(categories)) if state is not None else len(categories)
    if labels is not None and len(labels) != n:
        raise CheckpointError(f"{len(labels)} labels for a {n}-class torchvision:{name}")
    if labels is None:
        labels = categories if len(categories) == n else tuple(f"class_{i}" for i in range(n))
        if len(categories) != n:
            logger.warning("no labels given for %d classes: naming them class_0 .. class_%d (pass --labels FILE)",
                           n, n - 1)
    what = f"torchvision:{name} with {n} classes"
    if state is None:
        net = _build(name, n)
    else:
        _, net = load_first_fitting([("torchvision", lambda: _build(name, n))], state, what=what)
    side = int(transform.resize_size[0])
    card = ModelCard(
        task="segment", input_size=input_size or (side, side), resize="letterbox",
        mean=_three(transform.mean), std=_three(transform.std),
        interpolation=str(transform.interpolation.value), labels=labels,
        extra={"segment_kind": "semantic", "output_activation": "softmax", "letterbox_pad": str(MEAN_PIXEL)},
        provenance=f"torchvision:{name} from {provenance}; pre-processing from torchvision {weights} "
                   f"transforms() (shorter side {side}; letterboxed to {side}x{side} here)",
    )
    return LoadedModel(OutLogits(net).eval(), card)
