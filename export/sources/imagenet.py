"""ImageNet-1k class names (they ship inside torchvision)."""

from __future__ import annotations


def imagenet_labels() -> tuple[str, ...]:
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    assert len(_IMAGENET_CATEGORIES) == 1000
    return tuple(_IMAGENET_CATEGORIES)
