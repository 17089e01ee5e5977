"""torch -> ONNX, with pixel normalisation folded into the graph.

Every exported graph takes ``image: uint8 [N, H, W, 3]`` RGB pixels (what the gateway decodes) and
does the cast, channel order, mean/std and NCHW transpose itself: onnxruntime fuses that for
free, the gateway sends 4x fewer bytes to Triton, and no client can get the normalisation wrong.
Outputs, by task: ``logits [N, C]``; ``boxes [N, B, 4]`` + ``scores [N, B, C]``; ``output [N, H', W', 3]``
float32 in 0..255 (super-resolution; the gateway clamps and rounds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .sources.base import LoadedModel, ModelCard

OPSET = 17
#: ONNX ``metadata_props`` key holding the pre-processing as JSON, so the file describes itself
#: (the shape of timm's pretrained config plus visiongate's fields: docs/model-config.md)
PREPROCESS_KEY = "pretrained_cfg"


class PixelInput(torch.nn.Module):
    """uint8 NHWC RGB -> the wrapped model's normalised float NCHW input; SR output back to NHWC."""

    scale: torch.Tensor  # buffers, registered in __init__
    shift: torch.Tensor

    def __init__(self, module: torch.nn.Module, card: ModelCard) -> None:
        super().__init__()
        self.module = module
        self.task = card.task
        self.bgr = card.channel_order == "BGR"
        mean = torch.tensor(card.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(card.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", mean / std)

    def forward(self, image: torch.Tensor):  # type: ignore[no-untyped-def]
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        if self.bgr:
            x = x[:, [2, 1, 0]]  # flip(1) would export a step -1 Slice (and a warning)
        x = x * self.scale - self.shift
        out = self.module(x)
        if self.task == "super_resolve":
            return out.permute(0, 2, 3, 1) * 255.0
        return out


#: output names of instance segmentation graphs (YOLOv8-seg style)
INSTANCE_OUTPUTS = ["boxes", "scores", "mask_coefficients", "prototypes"]


def output_names(card: ModelCard) -> list[str]:
    if card.task == "segment":
        return INSTANCE_OUTPUTS if card.extra.get("segment_kind") == "instance" else ["scores"]
    return {"classify": ["logits"], "detect": ["boxes", "scores"], "super_resolve": ["output"]}[card.task]


def preprocess_metadata(card: ModelCard) -> dict[str, Any]:
    """What a reader of the bare ONNX file needs to feed it (the graph takes uint8 NHWC and normalises itself).

    ``mean``/``std`` are the ones the graph applies (0..1 units, model channel order), recorded so the
    file says how the network was trained; ``parameters.resize_size`` is the shorter side before a centre crop.
    """
    meta: dict[str, Any] = {"task": card.task}
    if card.input_size is not None:
        meta["input_size"] = [3, card.input_size[0], card.input_size[1]]
    meta.update({
        "interpolation": card.interpolation or "bilinear",
        "mean": list(card.mean),
        "std": list(card.std),
        "resize": card.resize,
        "normalization": "in_graph",
        "channel_order": card.channel_order,
    })
    if card.labels:
        meta["labels"] = list(card.labels)
    parameters = dict(card.extra)
    if card.resize_size:
        # the exact side, not timm's crop_pct: a reader that rounds crop_pct can land one pixel off, and a
        # config that sets resize_size must not meet a crop_pct it did not write
        parameters["resize_size"] = str(card.resize_size)
    if card.task == "classify":
        parameters.setdefault("output_activation", "softmax")
    if parameters:
        meta["parameters"] = parameters
    return meta


def write_metadata(path: Path, entries: dict[str, str]) -> None:
    """Set ``metadata_props`` entries of the ONNX file at ``path`` (others are kept)."""
    import onnx

    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def read_metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def export_onnx(loaded: LoadedModel, path: Path, example: torch.Tensor) -> torch.nn.Module:
    """Write ``path`` and return the wrapped module (the parity reference).

    ``example``: uint8 ``[N, H, W, 3]``; batch (and, for SR, height/width) axes are dynamic.
    """
    wrapped = PixelInput(loaded.module, loaded.card).eval()
    card = loaded.card
    names = output_names(card)
    dynamic: dict[str, dict[int, str]] = {"image": {0: "batch"}}
    for n in names:
        dynamic[n] = {0: "batch"}
    if card.input_size is None:
        dynamic["image"] = {0: "batch", 1: "height", 2: "width"}
        for n in names:
            dynamic[n] = {0: "batch", 1: "out_height", 2: "out_width"}
    with torch.no_grad():
        torch.onnx.export(
            wrapped, (example,), str(path), input_names=["image"], output_names=names,
            dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )
    write_metadata(path, {PREPROCESS_KEY: json.dumps(preprocess_metadata(card))})
    return wrapped
