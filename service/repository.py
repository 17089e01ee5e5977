"""Model specs: what the gateway knows about a model, read from the Triton model repository.

The repository is the single source of truth. ``read_model`` reads ``config.pbtxt`` with Triton's own
schema (or none at all: a folder holding only ``<version>/model.onnx`` is completed from the graph, as
Triton's auto-complete does), fills what the config leaves out from the graph's metadata and output
layout, validates every value, and checks the config against the graph. ``spec_from_config`` does
the same from Triton's JSON (the Triton backend asks its server), so both backends build one spec.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import dtypes
from .autocomplete import (
    YOLO_PREPROCESSING,
    GraphInfo,
    GraphTensor,
    check_against_graph,
    complete_config,
    layout_parameters,
    metadata_parameters,
    read_graph,
    ultralytics_end2end,
)
from .model_config import ConfigError, ModelConfig, config_from_dict, config_to_dict, read_config
from .model_params import (
    ACTIVATIONS,
    CHANNEL_ORDERS,
    HEADS,
    INPUT_RANGES,
    INTERPOLATIONS,
    KNOWN,
    LETTERBOX_ALIGNS,
    NORMALIZATIONS,
    PRECISIONS,
    RESIZES,
    SEGMENT_HEADS,
    SEGMENT_KINDS,
    TASKS,
    Params,
)
from .protocol.model_config_pb2 import DataType, ModelInput
from .vision.preprocess import InputDType, Interpolation, PreprocessConfig, Resize

__all__ = ["DTYPES", "ONNX_PLATFORMS", "TASKS", "ConfigError", "ModelSpec", "RepositoryModel", "Task", "TensorSpec",
           "label_file", "model_versions", "read_labels", "read_model", "scan", "select_versions",
           "spec_from_config"]

logger = logging.getLogger(__name__)

Task = Literal["classify", "detect", "super_resolve", "segment"]
Head = Literal["visiongate", "torchvision", "yolov5", "yolov8", "end2end", "detr"]

#: Triton data types <-> numpy (the full table, with v2 names, is ``service.dtypes``)
DTYPES: dict[str, np.dtype[Any]] = {d.triton: d.numpy for d in dtypes.TABLE if d.numpy is not None}

#: Triton's own default for auto-completed models with a batch axis (onnxruntime backend)
DEFAULT_MAX_BATCH_SIZE = 4
ONNX_PLATFORMS = ("onnxruntime_onnx", "onnxruntime")
_INPUT_DTYPES: dict[str, InputDType] = {"TYPE_UINT8": "uint8", "TYPE_FP32": "float32", "TYPE_FP16": "float16",
                                        "TYPE_FP64": "float64"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # Triton's TYPE_* name
    dims: tuple[int, ...]  # without the batch axis when max_batch_size > 0; -1 = dynamic

    @property
    def dtype(self) -> np.dtype[Any]:
        return dtypes.numpy_dtype(self.data_type)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: Task
    platform: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocess: PreprocessConfig
    #: effective parameters: the config's own, plus what was inferred (see ``inferred``)
    parameters: dict[str, str] = field(default_factory=dict)
    #: labels of the newest served version (``labels_for`` gives any version's)
    labels: tuple[str, ...] | None = None
    versions: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    #: detector output layout (None for other tasks)
    head: Head | None = None
    #: what the config did not say and where it came from: {"task": "onnx-metadata:ultralytics",
    #: "input": "graph", "head": "layout", ...}
    inferred: dict[str, str] = field(default_factory=dict)
    #: non-fatal findings (unknown parameters, label count mismatches); the caller logs them
    warnings: tuple[str, ...] = ()
    version_labels: Mapping[int, tuple[str, ...] | None] = field(default_factory=dict)
    #: the completed config (inferred parameters included): for /v2 config and gRPC ModelConfig
    config: ModelConfig | None = field(default=None, compare=False, repr=False)

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    def labels_for(self, version: int | None) -> tuple[str, ...] | None:
        """The labels ``version`` was exported with (its own labels file, else the model's)."""
        found = self.version_labels.get(version) if version is not None else None
        return found if found is not None else self.labels

    @property
    def batch_axis(self) -> bool:
        """Whether the model's tensors start with a batch axis. False only for ``max_batch_size: 0``
        with a 3-dim image input: then the backend feeds one image as ``[C,H,W]``/``[H,W,C]`` and
        the outputs come back without a batch axis (add it back for the callers)."""
        return self.max_batch_size > 0 or len(self.input.dims) == 4

    @property
    def images_per_call(self) -> int:
        """Most images one model call takes: ``max_batch_size``; with ``max_batch_size: 0`` the fixed
        first axis of a 4-dim input (0 = any number, the axis is dynamic), or 1 without a batch axis."""
        if self.max_batch_size > 0:
            return self.max_batch_size
        if len(self.input.dims) == 4:
            return max(self.input.dims[0], 0)
        return 1

    def param(self, key: str, default: str) -> str:
        return self.parameters.get(key, default)

    def float_param(self, key: str, default: float) -> float:
        return float(self.parameters.get(key, default))

    def int_param(self, key: str, default: int) -> int:
        return int(self.parameters.get(key, default))

    def check_graph(self, graph: GraphInfo) -> None:
        """ConfigError when this spec's tensors do not fit a graph (the backend calls it for every
        version it loads)."""
        check_against_graph(self.name, self.max_batch_size,
                            [(t.name, t.data_type, t.dims) for t in self.inputs],
                            [(t.name, t.data_type, t.dims) for t in self.outputs], graph)


# ---- building a spec ------------------------------------------------------------------------------

def _snippet(params: Mapping[str, str]) -> str:
    return "\n".join(f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}'
                     for k, v in params.items())


def _missing(model: str, what: str, params: Mapping[str, str], where: str) -> ConfigError:
    return ConfigError(
        f"model {model!r}: {what}; the gateway does not guess (a wrong guess gives wrong answers). "
        f"Add to {where}:\n{_snippet(params)}")


def _tensors(declared: Sequence[Any]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(t.name, DataType.Name(t.data_type), tuple(int(d) for d in t.dims))
                 for t in declared)


def _image_dims(model: str, tensor: TensorSpec, fmt: int, max_batch_size: int) -> tuple[str, int, int, int]:
    """(layout, channels, height, width) of the image input; -1 for a dynamic height/width."""
    dims = list(tensor.dims)
    if max_batch_size == 0 and len(dims) == 4:
        dims = dims[1:]
    if len(dims) != 3:
        raise ConfigError(f"model {model!r}: input {tensor.name!r} has dims {list(tensor.dims)}; an image "
                          f"input is [C,H,W] or [H,W,C]"
                          + (" after its batch axis" if max_batch_size == 0 else " (without the batch axis)"))
    if fmt == ModelInput.FORMAT_NHWC:
        layout = "NHWC"
    elif fmt == ModelInput.FORMAT_NCHW:
        layout = "NCHW"
    elif dims[-1] in (1, 3) and dims[0] not in (1, 3):
        layout = "NHWC"
    elif dims[0] in (1, 3) and dims[-1] not in (1, 3):
        layout = "NCHW"
    else:
        raise ConfigError(f"model {model!r}: cannot tell the layout of input {tensor.name!r} {dims}; "
                          f"add format: FORMAT_NHWC or format: FORMAT_NCHW to it")
    channels, h, w = (dims[2], dims[0], dims[1]) if layout == "NHWC" else (dims[0], dims[1], dims[2])
    if channels not in (1, 3):
        raise ConfigError(f"model {model!r}: input {tensor.name!r} ({layout} {dims}) has {channels} "
                          f"channels; "
                          f"images have 1 or 3")
    return layout, channels, h, w


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 1e-4 * max(1.0, abs(y)) for x, y in zip(a, b, strict=True))


def _merge(explicit: Mapping[str, str], layers: Sequence[tuple[str, Mapping[str, str]]]
           ) -> tuple[dict[str, str], dict[str, str]]:
    """Later layers win over earlier ones, explicit parameters over all; returns values and sources."""
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for source, params in layers:
        for k, v in params.items():
            values[k], sources[k] = v, source
    for k, v in explicit.items():
        values[k] = v
        sources.pop(k, None)
    return values, sources


def build_spec(config: ModelConfig, *, graph: GraphInfo | None = None, labels: tuple[str, ...] | None = None,
               version_labels: Mapping[int, tuple[str, ...] | None] | None = None,
               versions: tuple[int, ...] = (), where: str = "config.pbtxt",
               default_max_batch_size: int = DEFAULT_MAX_BATCH_SIZE) -> ModelSpec:
    """Validate ``config`` (completed from ``graph`` when given; changed in place) into a spec."""
    name = config.name
    inferred: dict[str, str] = {}
    warnings: list[str] = []
    if graph is not None:
        inferred.update(complete_config(config, graph, default_max_batch_size=default_max_batch_size))
    if not config.input or not config.output:
        raise ConfigError(f"model {name!r}: the config declares no "
                          f"{'input' if not config.input else 'output'} and there is no graph to complete it "
                          f"from; declare input and output in {where}")
    required_inputs = [t for t in config.input if not t.optional]
    if len(required_inputs) != 1:
        raise ConfigError(f"model {name!r}: takes {len(required_inputs)} inputs "
                          f"({[t.name for t in required_inputs]}); the gateway feeds exactly one image input")
    inputs, outputs = _tensors(config.input), _tensors(config.output)
    image = next(t for t in inputs if t.name == required_inputs[0].name)
    inputs = (image, *(t for t in inputs if t is not image))
    mbs = int(config.max_batch_size)
    if mbs < 0:
        raise ConfigError(f"model {name!r}: max_batch_size is {mbs}; allowed: 0 (no batch axis) or more")

    explicit = {k: v.string_value for k, v in config.parameters.items()}
    meta, meta_source, meta_labels = metadata_parameters(graph.metadata, name) if graph else ({}, "", None)
    shaped = [GraphTensor(t.name, t.data_type, ((None, *t.dims) if mbs > 0 else t.dims)) for t in outputs]
    layout_guess = layout_parameters(shaped, batched=mbs > 0 or len(image.dims) == 4)
    if layout_guess.get("head") in ("yolov8", "yolov5") and not meta_source:
        layout_guess.update(YOLO_PREPROCESSING)
    if meta_source == "onnx-metadata:ultralytics" and meta.get("task") == "detect":
        if graph is not None and ultralytics_end2end(graph.metadata):
            layout_guess["head"] = "end2end"
        layout_guess.pop("task", None)
    imgsz = _meta_input_size(graph)
    layers = [("layout", layout_guess), (meta_source, meta)]
    if imgsz is not None:
        layers.insert(0, (imgsz[1], {"input_size": imgsz[0]}))
    values, sources = _merge(explicit, layers)
    inferred.update(sources)
    p = Params(name, values)

    task_value = p.choice("task", TASKS, None)
    if task_value is None:
        raise _missing(name, "nothing says what it does (no parameters.task, no task in the ONNX metadata, "
                       "no output layout the gateway recognises)",
                       {"task": "classify | detect | super_resolve"}, where)
    task: Task = "classify" if task_value == "classify" else \
        "detect" if task_value == "detect" else "segment" if task_value == "segment" else "super_resolve"

    data_type = image.data_type
    dtype = _INPUT_DTYPES.get(data_type)
    if dtype is None:
        raise ConfigError(f"model {name!r}: input {image.name!r} is {data_type}; an image input is one of "
                          f"{sorted(_INPUT_DTYPES)}")
    layout, channels, h, w = _image_dims(name, image, required_inputs[0].format, mbs)
    size_param = p.numbers("input_size", 2, positive=True)
    if h > 0 and w > 0:
        input_size: tuple[int, int] | None = (h, w)
        if size_param is not None and tuple(int(v) for v in size_param) != input_size:
            if "input_size" in explicit:
                raise ConfigError(f"model {name!r}: parameters.input_size {explicit['input_size']!r} is not "
                                  f"the input's fixed size {h},{w}")
            warnings.append(f"the graph's metadata says input size {values['input_size']} but its input is "
                            f"{h}x{w}; using {h}x{w}")
    elif size_param is not None:
        input_size = (int(size_param[0]), int(size_param[1]))
    else:
        input_size = None

    resize_default = "stretch" if input_size else "none"
    resize: Resize = _resize(p.choice("resize", RESIZES, resize_default))
    if input_size is None and resize != "none":
        raise _missing(name, f"input {image.name!r} has a dynamic size, so resize {resize!r} has no target "
                       f"size", {"input_size": "<height>,<width>"}, where)
    resize_size: int | None = None
    if resize == "center_crop":
        assert input_size is not None
        short = min(input_size)
        if "resize_size" in explicit and "crop_pct" in explicit:
            raise ConfigError(f"model {name!r}: give parameters.resize_size or parameters.crop_pct, not both")
        crop_pct = p.number("crop_pct", None, lo=0.0, hi=1.0, lo_open=True)
        resize_size = p.integer("resize_size", None, lo=short)
        # what the config says wins over what the graph's metadata suggests
        if crop_pct is not None and not ("resize_size" in explicit and "crop_pct" not in explicit):
            resize_size = int(short / crop_pct + 1e-9)  # timm: floor(size / crop_pct)
    interpolation: Interpolation = _interpolation(p.choice("interpolation", INTERPOLATIONS, "bilinear"))
    pad = 114
    align = "center"
    if resize == "letterbox":
        pad = int(p.integer("letterbox_pad", 114, lo=0, hi=255) or 0)
        align = p.choice("letterbox_align", LETTERBOX_ALIGNS, "center") or "center"
    channel_order = p.choice("channel_order", CHANNEL_ORDERS, "RGB") if channels == 3 else "RGB"
    mean = p.numbers("mean", channels)
    std = p.numbers("std", channels, positive=True)
    norm = p.choice("normalization", NORMALIZATIONS, None)
    input_range = p.choice("input_range", INPUT_RANGES, "0-1") if dtype != "uint8" else "0-1"
    if norm is None:
        if dtype == "uint8":
            norm = "in_graph"
        elif mean is not None or std is not None:
            norm = "gateway"
        elif task == "super_resolve":
            norm = "none"
        else:
            raise _missing(name, f"input {image.name!r} is {data_type}, so the gateway must know how the "
                           f"model "
                           f"was trained to see pixels (its mean/std), and nothing says",
                           {"normalization": "gateway", "mean": "0.485,0.456,0.406",
                            "std": "0.229,0.224,0.225",
                            "resize": values.get("resize", "center_crop")}, where)
        inferred.setdefault("normalization", "default")
    if dtype == "uint8" and norm == "gateway":
        raise ConfigError(f"model {name!r}: parameters.normalization is 'gateway' but input "
                          f"{image.name!r} is "
                          f"TYPE_UINT8, which cannot carry normalised values; allowed: in_graph (the graph "
                          f"normalises) or none (plain pixels)")
    if norm == "gateway" and (mean is None or std is None):
        raise _missing(name, "parameters.normalization is 'gateway' but "
                       f"{'mean' if mean is None else 'std'} is not given",
                       {"mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225"}, where)
    plain = (mean is None or not any(mean)) and (std is None or all(s == 1 for s in std))
    if norm == "none" and not plain:
        raise ConfigError(f"model {name!r}: parameters.normalization is 'none' (plain pixels) but mean/std "
                          f"are given and would be ignored; remove them or set normalization: gateway")
    if norm == "in_graph":
        _check_baked(name, explicit, meta, meta_source, mean, std)
    prep = PreprocessConfig(
        input_size=input_size, resize=resize, resize_size=resize_size,
        mean=mean or (0.0,) * channels, std=std or (1.0,) * channels,
        channel_order="BGR" if channel_order == "BGR" else "RGB",
        layout="NCHW" if layout == "NCHW" else "NHWC", pad_value=pad, interpolation=interpolation,
        letterbox_center=align == "center", dtype=dtype, channels=channels, normalize=norm == "gateway",
        pixel_scale=1.0 if input_range == "0-255" else 1.0 / 255.0,
    )

    head: Head | None = None
    if task == "classify":
        p.choice("output_activation", ACTIVATIONS, "softmax")
    elif task == "detect":
        head = _head(p.choice("head", HEADS, "visiongate"))
        p.number("score_threshold", 0.25, lo=0.0, hi=1.0)
        p.number("iou_threshold", 0.45, lo=0.0, hi=1.0)
        p.integer("max_detections", 100, lo=1)
    elif task == "segment":
        kind = p.choice("segment_kind", SEGMENT_KINDS, "semantic")
        p.choice("output_activation", ACTIVATIONS, "none")
        if kind == "semantic" and (p.raw("presence_model") or "").strip():
            p.raw("presence_classes")
            p.number("presence_score_threshold", 0.5, lo=0.0, hi=1.0)
            p.number("presence_margin", 0.1, lo=0.0, hi=1.0)
        if kind == "instance":
            p.choice("head", SEGMENT_HEADS, "yolo_seg")
            p.number("score_threshold", 0.25, lo=0.0, hi=1.0)
            p.number("iou_threshold", 0.45, lo=0.0, hi=1.0)
            p.integer("max_detections", 100, lo=1)
            p.number("mask_threshold", 0.5, lo=0.0, hi=1.0)
    else:
        _sr_parameters(name, p, values, explicit, inferred, inputs, outputs, layout, where)
    p.choice("precision", PRECISIONS, "fp32")

    for key in p.unread():
        what = "is not a visiongate parameter" if key not in KNOWN else f"is not used by this model " \
            f"(task {task}, resize {resize})"
        warnings.append(f"parameters.{key} {what}; see docs/model-config.md")
    if labels is None and meta_labels is not None:
        labels = meta_labels
        inferred.setdefault("labels", meta_source)
    warnings.extend(_label_warnings(task, labels, outputs))
    if graph is not None:
        check_against_graph(name, mbs, [(t.name, t.data_type, t.dims) for t in inputs],
                            [(t.name, t.data_type, t.dims) for t in outputs], graph)

    for key, value in values.items():  # the completed config shows what was inferred
        config.parameters[key].string_value = value
    batching = config.dynamic_batching if config.HasField("dynamic_batching") else None
    return ModelSpec(
        name=name, task=task, platform=config.platform or config.backend, max_batch_size=mbs,
        inputs=inputs, outputs=outputs, preprocess=prep, parameters=dict(values), labels=labels,
        versions=versions, max_queue_delay_us=int(batching.max_queue_delay_microseconds) if batching else 0,
        head=head, inferred=inferred, warnings=tuple(warnings), version_labels=dict(version_labels or {}),
        config=config,
    )


def _resize(value: str | None) -> Resize:
    for r in ("center_crop", "stretch", "letterbox", "none"):
        if value == r:
            return r
    return "stretch"


def _interpolation(value: str | None) -> Interpolation:
    for i in ("nearest", "bilinear", "bicubic", "area", "lanczos", "box", "hamming"):
        if value == i:
            return i
    return "bilinear"


def _head(value: str | None) -> Head:
    for h in ("visiongate", "torchvision", "yolov5", "yolov8", "end2end", "detr"):
        if value == h:
            return h
    return "visiongate"


def _meta_input_size(graph: GraphInfo | None) -> tuple[str, str] | None:
    """("H,W", source) from Ultralytics' ``imgsz`` or pretrained_cfg's ``input_size``."""
    if graph is None:
        return None
    import ast
    import json

    meta = graph.metadata
    try:
        if "pretrained_cfg" in meta:
            size = json.loads(meta["pretrained_cfg"]).get("input_size")
            if isinstance(size, list) and len(size) in (2, 3):
                return f"{int(size[-2])},{int(size[-1])}", "onnx-metadata:pretrained_cfg"
        elif "imgsz" in meta:
            size = ast.literal_eval(meta["imgsz"])
            if isinstance(size, int):
                size = [size, size]
            if isinstance(size, list | tuple) and len(size) == 2:
                return f"{int(size[0])},{int(size[1])}", "onnx-metadata:ultralytics"
    except (ValueError, SyntaxError, TypeError, AttributeError):
        return None
    return None


def _check_baked(model: str, explicit: Mapping[str, str], meta: Mapping[str, str], meta_source: str,
                 mean: tuple[float, ...] | None, std: tuple[float, ...] | None) -> None:
    """With normalisation in the graph, mean/std in the config only describe it: refuse an edit that
    disagrees with what the graph records it was built with."""
    for key, value in (("mean", mean), ("std", std)):
        if key not in explicit or key not in meta or value is None:
            continue
        baked = tuple(float(v) for v in meta[key].split(","))
        if not _same(value, baked):
            raise ConfigError(
                f"model {model!r}: parameters.{key} is {explicit[key]!r} but normalization is 'in_graph' "
                f"and the "
                f"graph was built with {key} {meta[key]} ({meta_source}); an edit here cannot take effect. "
                f"Restore it, or re-export the model with the new {key}")


def _sr_parameters(model: str, p: Params, values: dict[str, str], explicit: Mapping[str, str],
                   inferred: dict[str, str], inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                   layout: str, where: str) -> None:
    scale = p.integer("scale", None, lo=1, hi=16)
    if scale is None:
        derived = _derived_scale(inputs[0], outputs[0], layout)
        if derived is None:
            raise _missing(model, "a super-resolution model needs its upscaling factor and the dims are "
                           "dynamic", {"scale": "2"}, where)
        values["scale"], inferred["scale"] = str(derived), "layout"
    tile = p.integer("tile_size", 0, lo=0) or 0
    overlap = p.integer("tile_overlap", 0, lo=0) or 0
    if tile and tile <= 2 * overlap:
        raise ConfigError(f"model {model!r}: parameters.tile_size {tile} must exceed twice tile_overlap "
                          f"({overlap}); allowed: 0 (no tiling) or more than {2 * overlap}")


def _derived_scale(inp: TensorSpec, out: TensorSpec, layout: str) -> int | None:
    if len(inp.dims) != len(out.dims) or len(inp.dims) < 3:
        return None
    hi, ho = (inp.dims[-3], out.dims[-3]) if layout == "NHWC" else (inp.dims[-2], out.dims[-2])
    if hi > 0 and ho > 0 and ho % hi == 0:
        return ho // hi
    return None


def _label_warnings(task: Task, labels: tuple[str, ...] | None, outputs: Sequence[TensorSpec]) -> list[str]:
    if labels is None or task == "super_resolve" or not outputs[-1].dims:
        return []
    classes = outputs[-1].dims[-1] if task == "classify" or len(outputs) > 1 else -1
    if classes > 0 and classes != len(labels):
        return [f"{len(labels)} labels for {classes} output classes; answers past the last label carry ids"]
    return []


# ---- Triton JSON and repository folders -----------------------------------------------------------

def spec_from_config(config: Mapping[str, Any] | ModelConfig, labels: tuple[str, ...] | None = None,
                     versions: tuple[int, ...] = (), *, graph: GraphInfo | None = None,
                     version_labels: Mapping[int, tuple[str, ...] | None] | None = None) -> ModelSpec:
    """A spec from a config: Triton's model-config JSON (what the Triton backend gets from its server),
    a dict in the same shape, or a ``ModelConfig``."""
    if isinstance(config, ModelConfig):
        message = ModelConfig()
        message.CopyFrom(config)
    else:
        message = config_from_dict(config)
    return build_spec(message, graph=graph, labels=labels, versions=versions, version_labels=version_labels,
                      where=f"the config of {message.name!r}")


def read_labels(path: Path) -> tuple[str, ...]:
    return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def label_file(config: Mapping[str, Any] | ModelConfig) -> str | None:
    if isinstance(config, ModelConfig):
        return next((o.label_filename for o in config.output if o.label_filename), None)
    for out in config.get("output", ()):
        if out.get("label_filename"):
            return str(out["label_filename"])
    return None


def model_versions(model_dir: Path) -> tuple[int, ...]:
    """Numeric version folders, ascending. Triton ignores non-numeric ones; so do we (staging dirs)."""
    return tuple(sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()))


def select_versions(config: Mapping[str, Any] | ModelConfig, available: tuple[int, ...]) -> tuple[int, ...]:
    """Apply the config's ``version_policy`` the way Triton does (default: latest 1)."""
    if isinstance(config, ModelConfig):
        policy = config_to_dict(config).get("version_policy") or {"latest": {"num_versions": 1}}
    else:
        policy = config.get("version_policy") or {"latest": {"num_versions": 1}}
    if "all" in policy:
        return available
    if "specific" in policy:
        wanted = {int(v) for v in policy["specific"].get("versions", ())}
        return tuple(v for v in available if v in wanted)
    n = int(policy.get("latest", {}).get("num_versions", 1))
    return available[-n:] if n > 0 else ()


@dataclass(frozen=True)
class RepositoryModel:
    spec: ModelSpec
    directory: Path
    #: the completed config in Triton's JSON shape (``config_to_dict``); the message is ``spec.config``
    config: dict[str, Any]


def _version_labels(model_dir: Path, versions: tuple[int, ...], filename: str | None,
                    model_labels: tuple[str, ...] | None) -> dict[int, tuple[str, ...] | None]:
    out: dict[int, tuple[str, ...] | None] = {}
    names = [n for n in dict.fromkeys((filename, "labels.txt")) if n]
    for v in versions:
        own = next((model_dir / str(v) / n for n in names if (model_dir / str(v) / n).is_file()), None)
        out[v] = read_labels(own) if own is not None else model_labels
    return out


def read_model(model_dir: Path, *, graph: bool = True,
               default_max_batch_size: int = DEFAULT_MAX_BATCH_SIZE) -> RepositoryModel:
    """Read, complete and validate one model folder; ConfigError says what is wrong and where.

    ``graph``: open the newest ONNX version with onnxruntime to complete the config, read its
    metadata and check the config against it (False: the config alone, as for Triton's configs)."""
    name = model_dir.name
    config_path = model_dir / "config.pbtxt"
    if config_path.is_file():
        config = read_config(config_path, name)
        where = str(config_path)
        if config.name and config.name != name:
            raise ConfigError(f"model {name!r} ({config_path}): name is {config.name!r}; Triton requires the "
                              f"directory name and the config's name to be equal")
    else:
        config = ModelConfig()
        where = f"a new {config_path}"
    config.name = name
    available = model_versions(model_dir)
    versions = select_versions(config, available)
    filename = config.default_model_filename or "model.onnx"
    onnx_versions = [v for v in versions if (model_dir / str(v) / filename).is_file()]
    if not config.platform and not config.backend:
        if not onnx_versions:
            raise ConfigError(f"model {name!r}: no config.pbtxt with a platform and no "
                              f"<version>/{filename} in {model_dir}; nothing to serve")
        config.platform = "onnxruntime_onnx"
    info: GraphInfo | None = None
    if graph and not onnx_versions and config.platform in ONNX_PLATFORMS:
        raise ConfigError(f"model {name!r}: no version folder to serve holds {filename} (versions on disk: "
                          f"{list(available)}, selected by version_policy: {list(versions)})")
    if graph and onnx_versions and (config.platform or config.backend) in (*ONNX_PLATFORMS, ""):
        info = read_graph(model_dir / str(onnx_versions[-1]) / filename)
    elif graph and not config_path.is_file():
        raise ConfigError(f"model {name!r}: no config.pbtxt and no ONNX graph to complete one from")
    lf = label_file(config)
    model_labels = read_labels(model_dir / lf) if lf and (model_dir / lf).is_file() else None
    per_version = _version_labels(model_dir, versions, lf, model_labels)
    newest = per_version.get(versions[-1]) if versions else model_labels
    spec = build_spec(config, graph=info, labels=newest, version_labels=per_version, versions=versions,
                      where=where, default_max_batch_size=default_max_batch_size)
    return RepositoryModel(spec, model_dir, config_to_dict(config))


def scan(repository: Path) -> list[Path]:
    """Model folders: those with a config.pbtxt or a version folder holding a model.onnx (Triton's
    auto-complete serves those too), skipping hidden ones (export staging)."""
    if not repository.is_dir():
        return []
    return sorted(p for p in repository.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (
                      (p / "config.pbtxt").is_file()
                      or any(v.is_dir() and v.name.isdigit() and (v / "model.onnx").is_file()
                             for v in p.iterdir())))
