"""Any timm or torchvision model by name (``timm:<name>``, ``torchvision:<name>``) -> ``LoadedModel``.

Pre-processing comes from the library's own record of how the weights were trained and evaluated,
never from a guess: timm's ``pretrained_cfg`` (through ``resolve_data_config``: input size,
interpolation, mean/std, ``crop_pct``) and torchvision's weights enum (``weights.transforms()``:
resize and crop sizes, interpolation, mean/std; ``weights.meta["categories"]`` for the labels).
Neither needs a download: the records ship inside the packages.

Weights: the user's checkpoint, or (asked for explicitly) the random initialisation, which is
useful to check a deployment end to end but predicts nothing.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..checkpoints import CheckpointError, read_checkpoint
from .base import LoadedModel, ModelCard, Task

logger = logging.getLogger("visiongate.export")

Library = Literal["timm", "torchvision"]
LIBRARIES: tuple[Library, ...] = ("timm", "torchvision")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LibraryConfig:
    """What the library says about a model: its task, pre-processing and (when it knows them) labels."""

    library: Library
    name: str
    task: Task
    #: (height, width) of the network input
    input_size: tuple[int, int]
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    #: input side / resize side for a centre crop (1.0: the shorter side is resized to the input side)
    crop_pct: float
    #: the shorter side is resized to this before the centre crop
    resize_size: int
    num_classes: int
    labels: tuple[str, ...] | None
    #: where the figures came from, for the provenance line
    source: str

    def resize_for(self, size: tuple[int, int]) -> int:
        """The resize side for another input size, keeping the crop fraction (timm rounds down)."""
        if size == self.input_size:
            return self.resize_size
        return math.floor(max(size) / self.crop_pct + 1e-9)


def parse_arch(arch: str) -> tuple[Library, str] | None:
    """``"timm:resnet18"`` -> ``("timm", "resnet18")``; ``None`` for the built-in ``--arch`` names."""
    library, sep, name = arch.partition(":")
    if not sep:
        return None
    if library not in LIBRARIES or not name:
        raise CheckpointError(f"--arch {arch!r}: expected timm:<model name> or torchvision:<model name>")
    return ("timm" if library == "timm" else "torchvision"), name


def _three(values: Any) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return a, b, c


def _suggest(name: str, known: list[str]) -> str:
    close = [k for k in known if k.startswith(name)][:5]
    close += [k for k in difflib.get_close_matches(name, known, n=5, cutoff=0.6) if k not in close][: 5 - len(close)]
    return f"; did you mean: {', '.join(close)}" if close else ""


# ---- timm ----------------------------------------------------------------------------------------

def _timm_labels(n: int, cfg: Mapping[str, Any]) -> tuple[str, ...] | None:
    if n == 1000:
        from .imagenet import imagenet_labels

        return imagenet_labels()
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset  # type: ignore[attr-defined]
    except ImportError:
        return None
    subset = infer_imagenet_subset(dict(cfg))
    if subset is None:
        return None
    info = ImageNetInfo(subset)
    if info.num_classes() != n:  # type: ignore[no-untyped-call]
        return None
    return tuple(info.index_to_description(i).split(",")[0].strip() for i in range(n))


def timm_config(name: str) -> LibraryConfig:
    import timm
    from timm.data import resolve_data_config  # type: ignore[attr-defined]
    from timm.models import get_pretrained_cfg

    base = name.split(".", 1)[0]
    if not timm.is_model(base):
        raise CheckpointError(f"timm has no model {base!r}{_suggest(base, timm.list_models())}")
    pretrained = get_pretrained_cfg(name)
    if pretrained is None:
        raise CheckpointError(f"timm knows {base!r} but not the pretrained tag in {name!r}; tags: "
                              f"{', '.join(timm.list_pretrained(base + '.*')[:8])}")
    cfg: dict[str, Any] = pretrained.to_dict()  # type: ignore[no-untyped-call]
    data: dict[str, Any] = resolve_data_config(pretrained_cfg=cfg)  # type: ignore[no-untyped-call]
    _, h, w = data["input_size"]
    n = int(cfg.get("num_classes") or 1000)
    if data.get("crop_mode", "center") != "center":
        logger.warning("timm %s evaluates with crop_mode=%s; the gateway centre-crops", name, data["crop_mode"])
    return LibraryConfig(
        library="timm", name=name, task="classify", input_size=(int(h), int(w)),
        interpolation=str(data["interpolation"]), mean=_three(data["mean"]), std=_three(data["std"]),
        crop_pct=float(data["crop_pct"]),
        resize_size=math.floor(max(h, w) / float(data["crop_pct"]) + 1e-9), num_classes=n,
        labels=_timm_labels(n, cfg), source=f"timm pretrained_cfg {pretrained.hf_hub_id or name}",
    )


def _timm_build(name: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False, num_classes=num_classes)

    return build


# ---- torchvision ---------------------------------------------------------------------------------

#: torchvision detectors whose decoding is exported in-graph (``torchvision_detection.DecodedDetector``)
TV_DETECTORS = ("retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "ssd300_vgg16", "ssdlite320_mobilenet_v3_large")


def _tv_names() -> tuple[list[str], list[str]]:
    from torchvision import models

    return models.list_models(module=models), models.list_models(module=models.detection)


def torchvision_config(name: str) -> LibraryConfig:
    from torchvision import models

    classifiers, detectors = _tv_names()
    from .torchvision_segmentation import segmentation_names

    segmenters = segmentation_names()
    if name in segmenters:
        weights = models.get_model_weights(name).DEFAULT
        transform = weights.transforms()
        side = int(transform.resize_size[0])
        categories = tuple(str(c) for c in weights.meta["categories"])
        return LibraryConfig(
            library="torchvision", name=name, task="segment", input_size=(side, side),
            interpolation=str(transform.interpolation.value), mean=_three(transform.mean),
            std=_three(transform.std), crop_pct=1.0, resize_size=side, num_classes=len(categories),
            labels=categories, source=f"torchvision {weights} transforms()")
    if name in detectors:
        if name not in TV_DETECTORS:
            raise CheckpointError(
                f"torchvision:{name} is a two-stage or anchor-free detector (region proposals and NMS inside "
                f"forward) that visiongate does not export yet; exportable detectors: {', '.join(TV_DETECTORS)}; "
                f"Mask R-CNN exports as an instance segmenter: --arch torchvision:maskrcnn_resnet50_fpn[_v2]")
        from .torchvision_detection import DETECTORS

        weights = models.get_model_weights(name).DEFAULT
        categories = tuple(weights.meta["categories"])
        return LibraryConfig(
            library="torchvision", name=name, task="detect", input_size=DETECTORS[name][1],
            interpolation="bilinear", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_pct=1.0,
            resize_size=max(DETECTORS[name][1]), num_classes=len(categories), labels=categories,
            source=f"torchvision {weights}")
    if name not in classifiers:
        raise CheckpointError(f"torchvision has no classification, detection or segmentation model {name!r}"
                              f"{_suggest(name, classifiers + detectors + segmenters)}")
    try:
        weights = models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        logger.warning("torchvision:%s has no weights enum: assuming ImageNet mean/std, 224 crop of 256", name)
        return LibraryConfig(library="torchvision", name=name, task="classify", input_size=(224, 224),
                             interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=0.875,
                             resize_size=256, num_classes=1000, labels=None,
                             source="ImageNet defaults (no weights enum)")
    transform = weights.transforms()
    crop = int(transform.crop_size[0])
    resize = int(transform.resize_size[0])
    found = tuple(str(c) for c in weights.meta.get("categories") or ())
    return LibraryConfig(
        library="torchvision", name=name, task="classify", input_size=(crop, crop),
        interpolation=str(transform.interpolation.value), mean=_three(transform.mean), std=_three(transform.std),
        crop_pct=crop / resize, resize_size=resize,
        num_classes=len(found) if found else 1000, labels=found or None,
        source=f"torchvision {weights} transforms()",
    )


def _tv_build(name: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        from torchvision import models

        kwargs: dict[str, Any] = {"weights": None, "num_classes": num_classes}
        if name in ("inception_v3", "googlenet"):
            kwargs["init_weights"] = False  # scipy-based truncated normal init: slow and irrelevant here
        module: nn.Module = models.get_model(name, **kwargs)
        return module

    return build


# ---- either --------------------------------------------------------------------------------------

def library_config(library: Library, name: str) -> LibraryConfig:
    """The library's pre-processing record for ``name`` (no model is built, nothing downloads).

    Raises:
        CheckpointError: unknown name (with close matches) or a kind of model not exported.
    """
    return timm_config(name) if library == "timm" else torchvision_config(name)


def head_key(module: nn.Module, num_classes: int) -> str | None:
    """The state-dict key of the classification head's weight: the last one with ``num_classes`` rows."""
    found = None
    for key, value in module.state_dict().items():
        if key.endswith(".weight") and value.ndim in (2, 4) and value.shape[0] == num_classes:
            found = key
    return found


@dataclass(frozen=True)
class LibraryOptions:
    num_classes: int | None = None
    labels: tuple[str, ...] | None = None
    input_size: tuple[int, int] | None = None


def _classifier(cfg: LibraryConfig, state: Mapping[str, torch.Tensor] | None, opts: LibraryOptions,
                provenance: str) -> LoadedModel:
    from ..checkpoints import load_first_fitting

    build = _timm_build(cfg.name) if cfg.library == "timm" else _tv_build(cfg.name)
    n = opts.num_classes
    if n is None and state is not None:
        probe = build(cfg.num_classes)
        key = head_key(probe, cfg.num_classes)
        if key is not None and key in state:
            n = int(state[key].shape[0])
        del probe
    n = n or (len(opts.labels) if opts.labels else None) or cfg.num_classes
    labels = opts.labels
    if labels is not None and len(labels) != n:
        raise CheckpointError(f"{len(labels)} labels for a {n}-class {cfg.library}:{cfg.name}")
    if labels is None:
        labels = cfg.labels if cfg.labels and len(cfg.labels) == n else _generic(n)
    what = f"{cfg.library}:{cfg.name} with {n} classes"
    if state is None:
        module = build(n).eval()
    else:
        _, module = load_first_fitting([(cfg.library, lambda: build(n))], state, what=what)
    size = opts.input_size or cfg.input_size
    card = ModelCard(
        task="classify", input_size=size, resize="center_crop", resize_size=cfg.resize_for(size),
        mean=cfg.mean, std=cfg.std, labels=labels, interpolation=cfg.interpolation,
        provenance=f"{cfg.library}:{cfg.name} from {provenance}; pre-processing from {cfg.source}",
    )
    return LoadedModel(module, card)


def _generic(n: int) -> tuple[str, ...]:
    logger.warning("no labels given for %d classes: naming them class_0 .. class_%d (pass --labels FILE)", n, n - 1)
    return tuple(f"class_{i}" for i in range(n))


def _detector(cfg: LibraryConfig, state: Mapping[str, torch.Tensor] | None, opts: LibraryOptions,
              provenance: str) -> LoadedModel:
    from .architectures import ArchOptions, detector_loader
    from .torchvision_detection import build_torchvision_detector

    if state is None:
        n = opts.num_classes or (len(opts.labels) + cfg.name.startswith("ssd") if opts.labels else cfg.num_classes)
        state = build_torchvision_detector(cfg.name, n).state_dict()
    loaded = detector_loader(cfg.name)(state, ArchOptions(num_classes=opts.num_classes, labels=opts.labels,
                                                          input_size=opts.input_size), provenance)
    card = replace(loaded.card, provenance=f"torchvision:{loaded.card.provenance}")
    return LoadedModel(loaded.module, card)


def load_library_model(library: Library, name: str, checkpoint: Path | None,
                       opts: LibraryOptions | None = None) -> LoadedModel:
    """Build ``name`` from ``library`` and load ``checkpoint`` into it, or keep the random initialisation.

    Raises:
        CheckpointError: unknown name, unreadable checkpoint, or tensors that do not fit.
    """
    opts = opts or LibraryOptions()
    cfg = library_config(library, name)
    state = read_checkpoint(checkpoint) if checkpoint is not None else None
    provenance = f"checkpoint {checkpoint.name}" if checkpoint is not None else "RANDOM weights (no checkpoint)"
    torch.manual_seed(0)
    if cfg.task == "segment":
        from .torchvision_segmentation import torchvision_segmenter

        loaded = torchvision_segmenter(name, state, opts.num_classes, opts.labels, opts.input_size, provenance)
    else:
        loaded = (_detector if cfg.task == "detect" else _classifier)(cfg, state, opts, provenance)
    loaded.random_weights = state is None
    return loaded
