"""Known architectures for ``visiongate export --arch``: a user's checkpoint -> ``LoadedModel``.

Each architecture knows how to build the bare network (no weights downloaded), which state-dict
layouts it accepts (torchvision's and timm's key names for the same network), how many classes or
what scale a checkpoint was trained for (read from its tensor shapes when not given), and the
``ModelCard`` (pre-processing, labels) the gateway needs.

Classifiers use ImageNet mean/std and resize-then-center-crop (``resize_size = size / 0.875``).
Detectors use the normalisation of torchvision's own transform and a stretch resize to a fixed
size. Super-resolution takes RGB in [0, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..checkpoints import CheckpointError, load_first_fitting, read_checkpoint
from .base import LoadedModel, ModelCard, Task

logger = logging.getLogger("visiongate.export")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_FRACTION = 0.875


@dataclass(frozen=True)
class ArchOptions:
    """What the user told ``visiongate export`` (``None`` = take it from the checkpoint or the default)."""

    num_classes: int | None = None
    labels: tuple[str, ...] | None = None
    input_size: tuple[int, int] | None = None
    scale: int | None = None


@dataclass(frozen=True)
class Architecture:
    name: str
    task: Task
    summary: str
    load: Callable[[Mapping[str, torch.Tensor], ArchOptions, str], LoadedModel]


def read_labels_file(path: Path) -> tuple[str, ...]:
    """One label per line; blank lines are skipped."""
    labels = tuple(line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip())
    if not labels:
        raise CheckpointError(f"labels file {path} is empty")
    return labels


def _generic(n: int) -> tuple[str, ...]:
    logger.warning("no labels given for %d classes: naming them class_0 .. class_%d (pass --labels FILE)", n, n - 1)
    return tuple(f"class_{i}" for i in range(n))


# ---- classifiers ---------------------------------------------------------------------------------

def _torchvision(name: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        from torchvision import models

        model: nn.Module = getattr(models, name)(weights=None, num_classes=num_classes)
        return model

    return build


def _timm(name: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False, num_classes=num_classes)

    return build


@dataclass(frozen=True)
class _Layout:
    name: str  # "torchvision" / "timm"
    build: Callable[[int], nn.Module]
    head: str  # the classifier weight key: its first dimension is the number of classes


def _classifier(arch: str, layouts: tuple[_Layout, ...]) -> Callable[[Mapping[str, torch.Tensor], ArchOptions, str],
                                                                       LoadedModel]:
    def load(state: Mapping[str, torch.Tensor], opts: ArchOptions, provenance: str) -> LoadedModel:
        from_checkpoint = next((state[lay.head].shape[0] for lay in layouts if lay.head in state), None)
        n = opts.num_classes or from_checkpoint or (len(opts.labels) if opts.labels else None) or 1000
        labels = opts.labels
        if labels is not None and len(labels) != n:
            raise CheckpointError(f"{len(labels)} labels for a {n}-class {arch}")
        if labels is None:
            from .imagenet import imagenet_labels

            labels = imagenet_labels() if n == 1000 else _generic(n)
        candidates = [(lay.name, lambda lay=lay: lay.build(n)) for lay in layouts]
        layout, module = load_first_fitting(candidates, state, what=f"{arch} with {n} classes")
        size = opts.input_size or (224, 224)
        card = ModelCard(
            task="classify", input_size=size, resize="center_crop",
            resize_size=round(max(size) / CROP_FRACTION), mean=IMAGENET_MEAN, std=IMAGENET_STD, labels=labels,
            provenance=f"{arch} ({layout} layout) from {provenance}",
        )
        return LoadedModel(module, card)

    return load


def _tv_timm(arch: str, tv: str, tv_head: str, timm_name: str, timm_head: str = "classifier.weight") -> Architecture:
    return Architecture(arch, "classify", f"{arch} (torchvision or timm {timm_name} weights)",
                        _classifier(arch, (_Layout("torchvision", _torchvision(tv), tv_head),
                                           _Layout("timm", _timm(timm_name), timm_head))))


# ---- detectors -----------------------------------------------------------------------------------

def _coco_labels(columns: int) -> tuple[str, ...] | None:
    from torchvision.models._meta import _COCO_CATEGORIES

    if columns == 91:
        return tuple(_COCO_CATEGORIES)
    if columns == 90:
        return tuple(_COCO_CATEGORIES[1:])
    if columns == 80:
        return tuple(c for c in _COCO_CATEGORIES if c not in ("__background__", "N/A"))
    return None


def detector_loader(arch: str) -> Callable[[Mapping[str, torch.Tensor], ArchOptions, str], LoadedModel]:
    """The loader of a torchvision single-stage detector (the ``DETECTORS`` of ``torchvision_detection``)."""

    def load(state: Mapping[str, torch.Tensor], opts: ArchOptions, provenance: str) -> LoadedModel:
        from .torchvision_detection import (
            DETECTORS,
            DecodedDetector,
            build_torchvision_detector,
            classes_in_checkpoint,
            detector_normalisation,
        )

        softmax = arch.startswith("ssd")  # background column 0 is dropped from the outputs
        labels = opts.labels
        if softmax and labels and labels[0].lower() in ("__background__", "background"):
            labels = labels[1:]
        n = (opts.num_classes or classes_in_checkpoint(arch, dict(state))
             or (len(labels) + softmax if labels else None) or 91)
        columns = n - 1 if softmax else n
        if labels is not None and len(labels) != columns:
            raise CheckpointError(f"{len(labels)} labels for {arch} with num_classes={n}: expected {columns}"
                                  + (" (the background class 0 has no output column)" if softmax else ""))
        labels = labels or _coco_labels(columns) or _generic(columns)
        _, load_one = load_first_fitting(
            [("torchvision", lambda: build_torchvision_detector(arch, n))], state,
            what=f"{arch} with num_classes={n}")
        size = opts.input_size or DETECTORS[arch][1]
        mean, std = detector_normalisation(load_one)
        card = ModelCard(
            task="detect", input_size=size, resize="stretch", mean=mean, std=std, labels=labels,
            extra={"score_threshold": "0.3", "iou_threshold": "0.45" if softmax else "0.5",
                   "max_detections": "100"},
            provenance=f"{arch} (torchvision layout, decoded in-graph at {size[0]}x{size[1]}) from {provenance}",
        )
        return LoadedModel(DecodedDetector(load_one, size).eval(), card)

    return load


# ---- super-resolution ----------------------------------------------------------------------------

def _sr_card(arch: str, scale: int, margin: int, provenance: str) -> ModelCard:
    return ModelCard(
        task="super_resolve", input_size=None, resize="none", labels=None,
        extra={"scale": str(scale), "tile_size": "256", "tile_overlap": str(margin)},
        provenance=f"{arch} x{scale} from {provenance}",
    )


def _espcn(state: Mapping[str, torch.Tensor], opts: ArchOptions, provenance: str) -> LoadedModel:
    from .sr_layouts import espcn_layout, espcn_scale, load_espcn
    from .sr_nets import ESPCN

    layout = espcn_layout(state)
    if layout is None:
        raise CheckpointError(
            "this is not an ESPCN checkpoint in a known layout (expected keys body.0/2/4, first_part.*/last_part.0, "
            f"feature_maps.*/sub_pixel.0, or conv1..convK); its keys: {', '.join(list(state)[:8])}")
    scale = espcn_scale(state, layout)
    if opts.scale is not None and opts.scale != scale:
        raise CheckpointError(f"the checkpoint is ESPCN x{scale} (its last convolution has "
                              f"{int(state[layout.keys[-1] + '.weight'].shape[0])} outputs), not x{opts.scale}: "
                              f"drop --scale or pass --scale {scale}")
    module: nn.Module
    if layout.name == "visiongate":
        features = int(state["body.0.weight"].shape[0])
        _, module = load_first_fitting([("visiongate", lambda: ESPCN(scale, features))], state,
                                       what=f"ESPCN x{scale}")
        margin = ESPCN.margin
    else:
        sub_pixel = load_espcn(state, layout, scale)
        module, margin = sub_pixel, sub_pixel.margin
    return LoadedModel(module, _sr_card("espcn", scale, margin, f"{provenance}, {layout.source}"))


def _srresnet(state: Mapping[str, torch.Tensor], opts: ArchOptions, provenance: str) -> LoadedModel:
    from .sr_layouts import from_srgan_layout, is_srgan_layout
    from .sr_nets import SRResNet

    layout = "visiongate"
    if is_srgan_layout(state):
        state, layout = from_srgan_layout(state), "SRGAN-PyTorch generator layout"
    found_scale, found_blocks = SRResNet.shape_of(state)
    if opts.scale is not None and found_scale is not None and opts.scale != found_scale:
        raise CheckpointError(f"the checkpoint is SRResNet x{found_scale} ({found_scale.bit_length() - 1} "
                              f"upsampling stages), not x{opts.scale}: drop --scale or pass --scale {found_scale}")
    scale = opts.scale or found_scale or 4
    blocks = found_blocks or 16
    weight = state.get("head.0.weight")
    channels = int(weight.shape[0]) if weight is not None else 64
    _, module = load_first_fitting([(layout, lambda: SRResNet(scale, blocks, channels))], state,
                                   what=f"SRResNet x{scale} ({blocks} blocks)")
    return LoadedModel(module, _sr_card("srresnet", scale, module.margin, f"{provenance}, {layout}"))


ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (
    Architecture("resnet50", "classify", "ResNet-50 (torchvision or timm weights: same keys)",
                 _classifier("resnet50", (_Layout("torchvision", _torchvision("resnet50"), "fc.weight"),))),
    Architecture("resnetrs50", "classify", "ResNet-RS-50 (timm resnetrs50)",
                 _classifier("resnetrs50", (_Layout("timm", _timm("resnetrs50"), "fc.weight"),))),
    _tv_timm("efficientnet_b0", "efficientnet_b0", "classifier.1.weight", "efficientnet_b0"),
    _tv_timm("mobilenet_v2", "mobilenet_v2", "classifier.1.weight", "mobilenetv2_100"),
    _tv_timm("mobilenet_v3_small", "mobilenet_v3_small", "classifier.3.weight", "mobilenetv3_small_100"),
    _tv_timm("mobilenet_v3_large", "mobilenet_v3_large", "classifier.3.weight", "mobilenetv3_large_100"),
    Architecture("ssd300_vgg16", "detect", "SSD300 VGG16 (torchvision)", detector_loader("ssd300_vgg16")),
    Architecture("ssdlite320_mobilenet_v3_large", "detect", "SSDlite320 MobileNetV3-Large (torchvision)",
                 detector_loader("ssdlite320_mobilenet_v3_large")),
    Architecture("retinanet_resnet50_fpn", "detect", "RetinaNet ResNet-50 FPN (torchvision)",
                 detector_loader("retinanet_resnet50_fpn")),
    Architecture("srresnet", "super_resolve", "SRResNet (SRGAN generator), x2/x4/x8", _srresnet),
    Architecture("espcn", "super_resolve", "ESPCN (sub-pixel CNN), any integer scale", _espcn),
)}
ALIASES = {"resnet-rs": "resnetrs50", "resnet_rs50": "resnetrs50", "resnet-rs50": "resnetrs50"}


def resolve(arch: str) -> Architecture:
    name = ALIASES.get(arch.lower(), arch.lower())
    if name not in ARCHITECTURES:
        raise CheckpointError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[name]


def load_architecture(arch: str, checkpoint: Path, opts: ArchOptions = ArchOptions()) -> LoadedModel:
    """Read ``checkpoint`` safely and load it into ``arch``; the card carries its pre-processing and labels.

    Raises:
        CheckpointError: unknown arch, unreadable/unsafe checkpoint, or tensors that do not fit.
    """
    architecture = resolve(arch)
    state = read_checkpoint(checkpoint)
    return architecture.load(state, opts, f"checkpoint {Path(checkpoint).name}")
