"""What a model source hands to the exporter.

A *source* turns some trained weights (a registry package, a user's checkpoint) into a
``LoadedModel``: a plain ``torch.nn.Module`` plus a ``ModelCard`` that says how the gateway must
pre- and post-process images for it. The exporter wraps the module so that the ONNX graph takes
``uint8`` NHWC pixels (normalisation runs inside the graph, where it is free) and writes the card
into ``config.pbtxt`` ``parameters``.

Module contracts, by task (input is float32 NCHW, already normalised as the card says):
- classify:       -> logits ``[N, num_classes]``
- detect:         -> ``(boxes [N, B, 4], scores [N, B, num_classes])``; boxes are ``xyxy`` in
                     pixels of the network input (after resize/letterbox), scores are per-class
                     probabilities (objectness already multiplied in). NMS runs outside the graph.
- super_resolve:  input in [0, 1] -> output in [0, 1] of shape ``[N, 3, H*scale, W*scale]``;
                     H and W are dynamic.
- segment:        ``extra["segment_kind"] == "semantic"``: -> per-class scores ``[N, C, h, w]``
                     (probabilities, or logits with ``extra["output_activation"] = "softmax"``) over
                     the network input, at its size or a fraction of it;
                     ``"instance"`` (YOLOv8-seg style): -> ``(boxes [N, B, 4], scores [N, B, C],
                     mask_coefficients [N, B, K], prototypes [N, K, h, w])``, boxes as for detect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

Task = Literal["classify", "detect", "super_resolve", "segment"]
Resize = Literal["center_crop", "stretch", "letterbox", "none"]


@dataclass(frozen=True)
class ModelCard:
    task: Task
    #: network input (height, width); ``None`` for fully convolutional models (super-resolution)
    input_size: tuple[int, int] | None
    resize: Resize = "stretch"
    #: for ``center_crop``: the shorter side is resized to this before the crop (e.g. 256 for 224)
    resize_size: int | None = None
    #: per-channel mean and std in [0, 1] units, in the *model's* channel order
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_order: Literal["RGB", "BGR"] = "RGB"
    #: resampling the model was evaluated with (``bilinear``, ``bicubic``, ...); ``None``: the gateway's default
    interpolation: str | None = None
    labels: tuple[str, ...] | None = None
    #: task specifics written verbatim as config parameters, e.g. {"score_threshold": "0.25",
    #: "iou_threshold": "0.45", "letterbox_pad": "127"} for detectors, {"scale": "2"} for SR
    extra: dict[str, str] = field(default_factory=dict)
    #: one line on where the weights came from (written to the parity report)
    provenance: str = ""


@dataclass
class LoadedModel:
    module: torch.nn.Module
    card: ModelCard
    #: no trained weights were loaded (``--random-weights``): the export proves the pipeline, not the model
    random_weights: bool = False
