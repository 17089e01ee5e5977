"""What an ONNX graph says about itself, read with onnxruntime (the gateway never needs ``onnx``):
its inputs and outputs, and the metadata exporters leave in it.

- ``complete_config`` fills a config's missing inputs, outputs and ``max_batch_size`` from the
  graph, as Triton's auto-complete does (a dynamic first axis is the batch axis).
- ``metadata_parameters`` turns metadata into parameters: our own ``pretrained_cfg`` JSON key,
  then what Ultralytics writes (``task``, ``names``, ``imgsz``, ``stride``).
- ``layout_parameters`` recognises output layouts (YOLOv8 ``[N, 4+C, A]``, YOLOv5 ``[N, A, 5+C]``,
  end-to-end ``[N, K, 6]``, DETR ``logits``/``pred_boxes``, boxes+scores, ``[N, C]`` classifiers).
- ``check_against_graph`` refuses a config whose names, data types or dims do not fit the graph.
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import dtypes
from .model_config import ConfigError, ModelConfig
from .protocol.model_config_pb2 import DataType, ModelInput, ModelOutput

logger = logging.getLogger(__name__)

#: the ONNX metadata key our exports write (JSON; see docs/model-config.md)
PRETRAINED_CFG_KEY = "pretrained_cfg"

Dim = int | str | None  # onnxruntime: a number, a symbolic name, or None


@dataclass(frozen=True)
class GraphTensor:
    name: str
    data_type: str  # TYPE_*
    shape: tuple[Dim, ...]

    def dims(self) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in self.shape)


@dataclass(frozen=True)
class GraphInfo:
    inputs: tuple[GraphTensor, ...]
    outputs: tuple[GraphTensor, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)


def _tensor(arg: Any) -> GraphTensor:
    try:
        data_type = dtypes.from_onnx(str(arg.type)).triton
    except KeyError:
        data_type = "TYPE_INVALID"
    return GraphTensor(name=str(arg.name), data_type=data_type, shape=tuple(arg.shape))


def graph_info(session: Any) -> GraphInfo:
    """From an ``onnxruntime.InferenceSession`` (typed ``Any``: onnxruntime ships no type hints)."""
    return GraphInfo(inputs=tuple(_tensor(a) for a in session.get_inputs()),
                     outputs=tuple(_tensor(a) for a in session.get_outputs()),
                     metadata=dict(session.get_modelmeta().custom_metadata_map))


def read_graph(path: Path) -> GraphInfo:
    """Open the graph on the CPU with one thread, only to read its signature and metadata."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own classes for unreadable graphs
        raise ConfigError(f"{path}: onnxruntime cannot read this graph: {exc}") from None
    return graph_info(session)


# ---- completing a config -------------------------------------------------------------------------

def _has_batch_axis(tensors: Sequence[GraphTensor]) -> bool:
    return bool(tensors) and all(t.shape and not (isinstance(t.shape[0], int) and t.shape[0] >= 0)
                                 for t in tensors)


def complete_config(config: ModelConfig, graph: GraphInfo, *, default_max_batch_size: int) -> dict[str, str]:
    """Fill what the config leaves out from the graph (in place); returns ``{field: "graph"}`` for
    each field filled. A first axis that is dynamic on every input and output is the batch axis:
    ``max_batch_size`` becomes ``default_max_batch_size`` unless the config set it; no such axis,
    ``max_batch_size`` 0 and the dims are the full shapes."""
    filled: dict[str, str] = {}
    batched = _has_batch_axis(graph.inputs + graph.outputs)
    if not config.input and not config.output and config.max_batch_size == 0 and batched:
        config.max_batch_size = default_max_batch_size
        filled["max_batch_size"] = "graph"
    skip = 1 if config.max_batch_size > 0 else 0
    pairs = (("input", config.input, graph.inputs), ("output", config.output, graph.outputs))
    for kind, declared, found in pairs:
        if declared:
            for tensor in declared:  # partial declarations: fill types/dims left out
                match = next((g for g in found if g.name == tensor.name), None)
                if match is None:
                    continue
                if tensor.data_type == DataType.TYPE_INVALID and match.data_type != "TYPE_INVALID":
                    if isinstance(tensor, ModelInput):
                        tensor.MergeFrom(ModelInput(data_type=match.data_type))
                    else:
                        tensor.MergeFrom(ModelOutput(data_type=match.data_type))
                    filled[f"{kind}.{tensor.name}.data_type"] = "graph"
                if not tensor.dims:
                    tensor.dims.extend(match.dims()[skip:])
                    filled[f"{kind}.{tensor.name}.dims"] = "graph"
            continue
        for g in found:
            if g.data_type == "TYPE_INVALID":
                raise ConfigError(f"{kind} {g.name!r} of the graph has a type the gateway cannot carry")
            tensor = declared.add(name=g.name, data_type=g.data_type)
            tensor.dims.extend(g.dims()[skip:])
        filled[kind] = "graph"
    return filled


# ---- parameters from metadata ----------------------------------------------------------------------

def _csv(values: Any) -> str:
    return ",".join(f"{float(v):.6g}" for v in values)


_TIMM_CROP_MODES = {"center": "center_crop", "squash": "stretch"}


def _from_pretrained_cfg(raw: str) -> tuple[dict[str, str], tuple[str, ...] | None]:
    try:
        cfg = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"ONNX metadata {PRETRAINED_CFG_KEY!r} is not JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"ONNX metadata {PRETRAINED_CFG_KEY!r} must be a JSON object")
    params: dict[str, str] = {}
    for key in ("task", "interpolation", "normalization", "channel_order", "resize", "input_range", "head"):
        if cfg.get(key) is not None:
            params[key] = str(cfg[key])
    if params.get("interpolation") == "random":
        params["interpolation"] = "bilinear"
    for key in ("mean", "std"):
        if cfg.get(key) is not None:
            params[key] = _csv(cfg[key])
    if cfg.get("crop_pct") is not None:
        params["crop_pct"] = repr(float(cfg["crop_pct"]))  # exact: 224/236 must not round to 235
    mode = cfg.get("crop_mode")
    if "resize" not in params and mode is not None:
        if mode not in _TIMM_CROP_MODES:
            raise ConfigError(f"ONNX metadata {PRETRAINED_CFG_KEY!r}: crop_mode {mode!r} is not served; "
                              f"set parameters.resize in config.pbtxt")
        params["resize"] = _TIMM_CROP_MODES[mode]
    elif "resize" not in params and "crop_pct" in params:
        params["resize"] = "center_crop"
    extra = cfg.get("parameters") or {}
    if isinstance(extra, dict):
        for key, value in extra.items():
            params.setdefault(str(key), str(value))
    labels = cfg.get("labels")
    return params, tuple(str(x) for x in labels) if isinstance(labels, list) else None


ULTRALYTICS_TASKS = {"detect": "detect", "classify": "classify", "segment": "segment"}


def _ultralytics_names(raw: str) -> tuple[str, ...] | None:
    try:
        names = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    if isinstance(names, dict):
        try:
            return tuple(str(names[i]) for i in range(len(names)))
        except KeyError:
            return None
    if isinstance(names, list):
        return tuple(str(n) for n in names)
    return None


def _is_ultralytics(meta: Mapping[str, str]) -> bool:
    return "task" in meta and "names" in meta and ("stride" in meta or "imgsz" in meta)


def metadata_parameters(meta: Mapping[str, str], model: str
                        ) -> tuple[dict[str, str], str, tuple[str, ...] | None]:
    """Parameters from graph metadata, where they came from, and class names if any."""
    if PRETRAINED_CFG_KEY in meta:
        params, labels = _from_pretrained_cfg(meta[PRETRAINED_CFG_KEY])
        return params, f"onnx-metadata:{PRETRAINED_CFG_KEY}", labels
    if _is_ultralytics(meta):
        task = meta["task"]
        if task not in ULTRALYTICS_TASKS:
            raise ConfigError(f"model {model!r}: an Ultralytics {task!r} model; the gateway serves "
                              f"{sorted(ULTRALYTICS_TASKS)} from Ultralytics")
        params = {"task": ULTRALYTICS_TASKS[task], "channel_order": "RGB", "input_range": "0-1",
                  "normalization": "none", "interpolation": "bilinear"}
        if task == "detect":
            params.update(resize="letterbox", letterbox_pad="114", letterbox_align="center",
                          head="end2end" if ultralytics_end2end(meta) else "yolov8")
        elif task == "segment":
            if ultralytics_end2end(meta):
                raise ConfigError(f"model {model!r}: an end-to-end (NMS inside) Ultralytics segment export is "
                                  f"not served; export it with nms=False (YOLOv8/YOLO11-seg: [N, 4+C+32, A] "
                                  f"and the prototypes)")
            # the [N, 4+C+P, A] + prototypes layout is re-cut by vision/seg_heads.py
            params.update(resize="letterbox", letterbox_pad="114", letterbox_align="center",
                          segment_kind="instance", head="yolo_seg")
        else:
            # Ultralytics' classify transforms: shorter side to imgsz, centre crop, no mean/std;
            # the exported head already applies softmax
            params.update(resize="center_crop", crop_pct="1", output_activation="none")
        return params, "onnx-metadata:ultralytics", _ultralytics_names(meta["names"])
    return {}, "", None


def ultralytics_end2end(meta: Mapping[str, str]) -> bool:
    return meta.get("end2end", "").lower() == "true" or "'nms': True" in meta.get("args", "")


# ---- parameters from output layouts -----------------------------------------------------------------

def layout_parameters(outputs: Sequence[GraphTensor], batched: bool) -> dict[str, str]:
    """``task`` (and ``head`` for detectors) recognised from output names and shapes; {} if none fits.

    ``outputs`` shapes here include the batch axis when ``batched``."""
    shapes = [t.shape[1:] if batched else t.shape for t in outputs]
    names = {t.name for t in outputs}
    if {"logits", "pred_boxes"} <= names:
        return {"task": "detect", "head": "detr"}
    if {"boxes", "labels", "scores"} <= names:  # torchvision's detection models, NMS inside
        return {"task": "detect", "head": "torchvision"}
    if {"boxes", "scores"} <= names:
        return {"task": "detect", "head": "visiongate"}
    if len(outputs) != 1:
        return {}
    shape = shapes[0]
    fixed = [d if isinstance(d, int) and d >= 0 else None for d in shape]
    if len(fixed) == 2 and fixed[1] == 6:
        return {"task": "detect", "head": "end2end"}
    rows, cols = (fixed[0], fixed[1]) if len(fixed) == 2 else (None, None)
    if rows is not None and cols is not None:
        if 5 <= rows < cols:
            return {"task": "detect", "head": "yolov8"}
        if 6 <= cols < rows:
            return {"task": "detect", "head": "yolov5"}
    # exported with a dynamic input size, the anchor axis is dynamic: the fixed axis tells the head
    elif len(fixed) == 2 and rows is not None and rows >= 5 and cols is None:
        return {"task": "detect", "head": "yolov8"}
    elif len(fixed) == 2 and cols is not None and cols >= 6 and rows is None:
        return {"task": "detect", "head": "yolov5"}
    if len(fixed) == 1 and fixed[0] is not None and fixed[0] >= 2 and outputs[0].data_type in (
            "TYPE_FP32", "TYPE_FP16"):
        return {"task": "classify"}
    return {}


#: what a YOLO-style layout implies about its input (Ultralytics' own preprocessing)
YOLO_PREPROCESSING = {"resize": "letterbox", "letterbox_pad": "114", "letterbox_align": "center",
                      "channel_order": "RGB", "input_range": "0-1", "normalization": "none"}


# ---- config against graph ---------------------------------------------------------------------------

def _dims_fit(config_dims: Sequence[int], graph_shape: Sequence[Dim]) -> bool:
    if len(config_dims) != len(graph_shape):
        return False
    for want, have in zip(config_dims, graph_shape, strict=True):
        if isinstance(have, int) and have >= 0 and want >= 0 and want != have:
            return False
    return True


def check_against_graph(model: str, max_batch_size: int, inputs: Sequence[tuple[str, str, Sequence[int]]],
                        outputs: Sequence[tuple[str, str, Sequence[int]]], graph: GraphInfo) -> None:
    """Refuse a config whose tensors do not fit the graph: every config tensor must exist in it with
    the same data type and dims that fit (a -1 on either side fits anything); with
    ``max_batch_size > 0`` the graph's first axis must be dynamic, or fixed at 1 when
    ``max_batch_size`` is 1. Every graph input must be declared."""
    problems: list[str] = []
    for kind, declared, found in (("input", inputs, graph.inputs), ("output", outputs, graph.outputs)):
        by_name = {g.name: g for g in found}
        for name, data_type, dims in declared:
            g = by_name.get(name)
            if g is None:
                problems.append(f"{kind} {name!r} is not in the graph (it has {sorted(by_name)})")
                continue
            if g.data_type != data_type:
                problems.append(f"{kind} {name!r} is {data_type} in the config but {g.data_type} "
                                f"in the graph")
            shape = list(g.shape)
            if max_batch_size > 0:
                if not shape:
                    problems.append(f"{kind} {name!r}: max_batch_size is {max_batch_size} but the graph's "
                                    f"tensor has no batch axis (use max_batch_size: 0)")
                    continue
                first = shape.pop(0)
                if isinstance(first, int) and first >= 0 and not (first == 1 and max_batch_size == 1):
                    problems.append(f"{kind} {name!r}: the graph's batch axis is fixed at {first}, so "
                                    f"max_batch_size must be 0 (dims then include that axis)")
            if not _dims_fit(list(dims), shape):
                problems.append(f"{kind} {name!r}: dims {list(dims)} in the config do not fit the graph's "
                                f"{['?' if not isinstance(d, int) or d < 0 else d for d in shape]}"
                                + (" (without the batch axis)" if max_batch_size > 0 else ""))
        if kind == "input":
            missing = sorted(set(by_name) - {n for n, _, _ in declared})
            if missing:
                problems.append(f"graph inputs {missing} are not declared in the config")
    if problems:
        raise ConfigError(f"model {model!r}: the config does not match its graph: " + "; ".join(problems))
