"""The ``parameters`` a visiongate model config may carry: names, allowed values, defaults, checks.

Every value is a string in ``config.pbtxt`` (Triton's ``ModelParameter.string_value``). ``Params``
reads one config's parameters, checks each value when it is read, and keeps the keys nobody read so
the loader can report them. Errors say which parameter, what it held, and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .model_config import ConfigError

TASKS = ("classify", "detect", "super_resolve", "segment")
SEGMENT_KINDS = ("semantic", "instance")
SEGMENT_HEADS = ("yolo_seg", "pasted")
RESIZES = ("stretch", "center_crop", "letterbox", "none")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area", "lanczos", "box", "hamming")
NORMALIZATIONS = ("in_graph", "gateway", "none")
HEADS = ("visiongate", "torchvision", "yolov5", "yolov8", "end2end", "detr")
CHANNEL_ORDERS = ("RGB", "BGR")
INPUT_RANGES = ("0-1", "0-255")
ACTIVATIONS = ("softmax", "none")
LETTERBOX_ALIGNS = ("center", "top_left")
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ParamDoc:
    name: str
    default: str
    allowed: str
    tasks: str
    meaning: str


#: every parameter the gateway reads (docs/model-config.md lists the same)
DOCS: tuple[ParamDoc, ...] = (
    ParamDoc("task", "(required)", " | ".join(TASKS), "all", "what the model does"),
    ParamDoc("input_size", "the input's fixed height and width", "two positive integers: height,width", "all",
             "the size to resize to when the graph's input size is dynamic"),
    ParamDoc("resize", "stretch (none when the input size is dynamic)", " | ".join(RESIZES), "all",
             "how a photo is brought to the input size"),
    ParamDoc("resize_size", "the input's shorter side", "integer >= the input's shorter side", "center_crop",
             "shorter side before the centre crop (256 for 224 crops)"),
    ParamDoc("crop_pct", "-", "number in (0, 1]", "center_crop",
             "timm's crop_pct: resize_size = floor(input / crop_pct); give this or resize_size"),
    ParamDoc("interpolation", "bilinear", " | ".join(INTERPOLATIONS), "all", "resampling filter"),
    ParamDoc("letterbox_pad", "114", "integer 0..255", "letterbox", "value of the padding pixels"),
    ParamDoc("letterbox_align", "center", " | ".join(LETTERBOX_ALIGNS), "letterbox",
             "where the picture sits in the padded input (Ultralytics centres it)"),
    ParamDoc("channel_order", "RGB", " | ".join(CHANNEL_ORDERS), "all", "channel order of a 3-channel input"),
    ParamDoc("normalization", "in_graph for uint8 inputs; gateway for float inputs with mean/std",
             " | ".join(NORMALIZATIONS), "all",
             "who applies mean/std: the graph (in_graph), the gateway, or nobody (none: plain pixels)"),
    ParamDoc("mean", "-", "one number per input channel, comma-separated", "all",
             "per-channel mean in input_range units, model channel order"),
    ParamDoc("std", "-", "one positive number per input channel", "all", "per-channel std, like mean"),
    ParamDoc("input_range", "0-1", " | ".join(INPUT_RANGES), "all",
             "float inputs: pixels scaled to [0, 1] or kept in [0, 255] before mean/std"),
    ParamDoc("output_activation", "softmax", " | ".join(ACTIVATIONS), "classify",
             "softmax over logits, or none when the graph already outputs probabilities"),
    ParamDoc("head", "visiongate (segment: yolo_seg)", " | ".join(HEADS) + "; segment: " + " | ".join(SEGMENT_HEADS),
             "detect, segment", "layout of the detector's (or instance segmenter's) outputs"),
    ParamDoc("segment_kind", "semantic", " | ".join(SEGMENT_KINDS), "segment",
             "semantic: scores [C, h, w]; instance: boxes, scores and masks per instance"),
    ParamDoc("mask_threshold", "0.5", "number in (0, 1)", "segment", "instance mask probability cut"),
    ParamDoc("presence_model", "-", "the name of a detect model in the repository", "segment (semantic)",
             "gate: pixels of the gated classes are kept only inside this detector's boxes of the same label"),
    ParamDoc("presence_classes", "every label but background", "comma-separated labels, or ours=theirs pairs",
             "segment (semantic)", "which classes the gate applies to, and the detector label of each"),
    ParamDoc("presence_score_threshold", "0.5", "number in [0, 1]", "segment (semantic)",
             "the detector's minimum score for a box to count"),
    ParamDoc("presence_margin", "0.1", "number in [0, 1]", "segment (semantic)",
             "how far past its box (share of the box's width/height) a gated class may reach"),
    ParamDoc("score_threshold", "0.25", "number in [0, 1]", "detect", "default minimum score"),
    ParamDoc("iou_threshold", "0.45", "number in [0, 1]", "detect", "default NMS IoU threshold"),
    ParamDoc("max_detections", "100", "integer >= 1", "detect", "default cap on boxes per image"),
    ParamDoc("scale", "(required)", "integer 1..16", "super_resolve", "upscaling factor"),
    ParamDoc("tile_size", "0 (no tiling)", "integer >= 0, more than twice tile_overlap", "super_resolve",
             "tile edge in input pixels for large images"),
    ParamDoc("tile_overlap", "0", "integer >= 0", "super_resolve", "overlap between tiles"),
    ParamDoc("precision", "fp32", " | ".join(PRECISIONS), "all", "informational: the graph's precision"),
)
KNOWN = frozenset(d.name for d in DOCS)


def is_backend_parameter(key: str) -> bool:
    """Triton backends' own parameters are upper case (EXECUTION_ENV_PATH, ...): not ours to check."""
    return key.upper() == key and any(c.isalpha() for c in key)


class Params:
    """One model's parameters: typed getters that validate, and a record of what was read."""

    def __init__(self, model: str, values: Mapping[str, str]) -> None:
        self.model = model
        self.values = dict(values)
        self._read: set[str] = set()

    def _bad(self, key: str, value: str, allowed: str) -> ConfigError:
        return ConfigError(f"model {self.model!r}: parameters.{key} is {value!r}; allowed: {allowed}")

    def has(self, key: str) -> bool:
        return key in self.values

    def raw(self, key: str) -> str | None:
        self._read.add(key)
        return self.values.get(key)

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None) -> str | None:
        value = self.raw(key)
        if value is None:
            return default
        if value not in allowed:
            raise self._bad(key, value, " | ".join(allowed))
        return value

    def integer(self, key: str, default: int | None, lo: int | None = None,
                hi: int | None = None) -> int | None:
        value = self.raw(key)
        if value is None:
            return default
        allowed = "an integer" + (f" >= {lo}" if lo is not None else "") + \
            (f" <= {hi}" if hi is not None else "")
        try:
            number = int(value.strip())
        except ValueError:
            raise self._bad(key, value, allowed) from None
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            raise self._bad(key, value, allowed)
        return number

    def number(self, key: str, default: float | None, lo: float | None = None, hi: float | None = None,
               lo_open: bool = False) -> float | None:
        value = self.raw(key)
        if value is None:
            return default
        allowed = "a number" + (f" {'>' if lo_open else '>='} {lo}" if lo is not None else "") + \
            (f" <= {hi}" if hi is not None else "")
        try:
            number = float(value.strip())
        except ValueError:
            raise self._bad(key, value, allowed) from None
        if not math.isfinite(number) or (lo is not None and (number <= lo if lo_open else number < lo)) \
                or (hi is not None and number > hi):
            raise self._bad(key, value, allowed)
        return number

    def numbers(self, key: str, count: int, positive: bool = False) -> tuple[float, ...] | None:
        value = self.raw(key)
        if value is None:
            return None
        what = f"{count} comma-separated {'positive ' if positive else ''}number{'s' if count > 1 else ''} " \
               f"(one per input channel)"
        try:
            numbers = tuple(float(v) for v in value.replace(" ", "").split(","))
        except ValueError:
            raise self._bad(key, value, what) from None
        if len(numbers) != count or not all(math.isfinite(n) for n in numbers) \
                or (positive and min(numbers) <= 0):
            raise self._bad(key, value, what)
        return numbers

    def unread(self) -> list[str]:
        """Keys nobody asked for: unknown to the gateway (or not used by this model's task)."""
        return sorted(k for k in self.values if k not in self._read and not is_backend_parameter(k))
