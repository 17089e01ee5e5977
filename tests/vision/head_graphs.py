"""Detector graphs from the real exporters, with each library's own post-processing as the reference.

Test-time only. Every model is built offline with random weights: BatchNorm statistics are
calibrated on real photos, and the class-logit biases (whose initial priors make every score about
0.0001) are reset so that scores spread. Thresholds are then picked from the model's own score
distribution, between two neighbouring scores, so that a few hundred candidates pass and no score
sits on the threshold (the libraries keep ``> t``, the gateway ``>= t``).

- ultralytics (AGPL-3.0, never a gateway dependency): ``YOLO("*.yaml")`` + its ONNX exporter;
  reference ``ultralytics.utils.nms.non_max_suppression`` on the graph's own output.
- YOLOv5 (objectness layout): the PyPI ``yolov5`` package's ``export.export_onnx`` and its
  ``non_max_suppression``; it needs ``pkg_resources`` (setuptools < 81), so it runs in a side venv
  (``python -m tests.vision.head_graphs yolov5 DIR`` there; see deploy/install.sh).
- torchvision SSDlite/RetinaNet through this project's exporter (``export/onnx.py``); reference: the
  eager torchvision model's own ``postprocess_detections``.
- transformers DETR (``use_pretrained_backbone=False``) through ``torch.onnx.export`` with the output
  names ``optimum`` gives (``logits``, ``pred_boxes``); reference ``post_process_object_detection``.

Run as a script it writes one case: ``python -m tests.vision.head_graphs <case> <dir>``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import unittest.mock
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

PHOTOS = ("astronaut", "coffee", "chelsea", "motorcycle", "rocket")


@dataclass(frozen=True)
class Case:
    """A graph, the inputs it was run on, thresholds, and the library's own detections per image."""

    onnx: Path
    head: str
    inputs: np.ndarray  # what the graph takes, batch first
    input_size: tuple[int, int]  # (width, height)
    score_threshold: float
    iou_threshold: float
    max_detections: int
    reference: list[np.ndarray]  # per image [K, 6]: x1, y1, x2, y2, score, class; best first

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {f"ref{i}": r for i, r in enumerate(self.reference)}
        np.savez(path, onnx=str(self.onnx), head=self.head, inputs=self.inputs, input_size=self.input_size,
                 thresholds=[self.score_threshold, self.iou_threshold, self.max_detections],
                 n=len(self.reference), **arrays)

    @staticmethod
    def load(path: Path) -> Case:
        z = np.load(path)
        score, iou, limit = z["thresholds"].tolist()
        return Case(Path(str(z["onnx"])), str(z["head"]), z["inputs"], tuple(z["input_size"].tolist()),
                    score, iou, int(limit), [z[f"ref{i}"] for i in range(int(z["n"]))])


def photo_batch(size: int, count: int = 2) -> np.ndarray:
    """Real photos letterboxed (centred, pad 114, as Ultralytics) to ``size``: uint8 ``[N, size, size, 3]``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from support import photo

    out = np.full((count, size, size, 3), 114, np.uint8)
    for k, name in enumerate(PHOTOS[:count]):
        img = Image.fromarray(photo(name))
        scale = size / max(img.size)
        w, h = round(img.width * scale), round(img.height * scale)
        top, left = (size - h) // 2, (size - w) // 2
        out[k, top:top + h, left:left + w] = np.asarray(img.resize((w, h), Image.Resampling.BILINEAR))
    return out


def threshold_for(scores: np.ndarray, candidates: int) -> float:
    """A threshold that lets at least about ``candidates`` scores of *every* image pass, placed in the
    widest gap between neighbouring scores near there (float rounding cannot move a score across it).
    ``scores``: batch first."""
    per_image = []
    for image in scores.reshape(len(scores), -1):
        s = np.unique(image[np.isfinite(image)])[::-1]
        lo, hi = candidates // 2, min(2 * candidates, len(s) - 1)
        k = lo + int(np.argmax(s[lo - 1:hi - 1] - s[lo:hi]))
        per_image.append((float(s[k - 1]) + float(s[k])) / 2)
    return min(per_image)


def calibrate_batchnorm(module: Any, batch: Any) -> None:
    """Set every BatchNorm's running statistics from ``batch`` (a float NCHW tensor), then eval."""
    import torch

    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over this one pass
    module.train()
    with torch.no_grad():
        module(batch)
    module.eval()


@contextlib.contextmanager
def _exporting(path: Path) -> Iterator[None]:
    """In ``path``, with the exporters' own warnings (tracer, deprecations) left as warnings: pytest's
    ``error`` filter would turn one raised inside torch's tracer into a failed export."""
    old = Path.cwd()
    os.chdir(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        os.chdir(old)


def _run(onnx: Path, inputs: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    return list(session.run(None, {session.get_inputs()[0].name: inputs}))


# ---- ultralytics --------------------------------------------------------------------------------

def yolov8_seg_graph(out: Path, size: int) -> tuple[Path, np.ndarray, list[np.ndarray]]:
    """A YOLOv8n-seg with random weights whose scores spread (BatchNorm calibrated on photos, class
    biases reset), exported by Ultralytics with dynamic axes: (the ONNX file, the letterboxed photos it
    was run on ``[N, size, size, 3]``, its raw outputs on them)."""
    import torch
    from ultralytics.models import YOLO

    torch.manual_seed(0)
    yolo: Any = YOLO("yolov8n-seg.yaml")
    pixels = photo_batch(size)
    calibrate_batchnorm(yolo.model, torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255)
    for branch in yolo.model.model[-1].cv3:
        last: Any = [m for m in branch.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        torch.nn.init.normal_(last.weight, std=0.05)
        torch.nn.init.constant_(last.bias, -2.0)
    with _exporting(out):
        path = Path(yolo.export(format="onnx", imgsz=size, dynamic=True, simplify=False, opset=17,
                                verbose=False)).resolve()
    return path, pixels, _run(path, (pixels.transpose(0, 3, 1, 2) / 255).astype(np.float32))


def ultralytics_case(yaml: str, out: Path, head: str, size: int = 320, **export: Any) -> Case:
    """``YOLO(yaml)`` exported by Ultralytics (``nms=False``: the NMS-free head, [N, 300, 6]; ``nms=True``:
    NMS inside the graph at the ``conf``/``iou`` given, also [N, 300, 6])."""
    import torch
    from ultralytics.models import YOLO
    from ultralytics.utils.nms import non_max_suppression

    torch.manual_seed(0)
    yolo: Any = YOLO(yaml)
    pixels = photo_batch(size)
    batch = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    calibrate_batchnorm(yolo.model, batch)
    detect = yolo.model.model[-1]
    for name in ("cv3", "one2one_cv3"):
        for branch in getattr(detect, name, None) or ():
            last: Any = [m for m in branch.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            torch.nn.init.normal_(last.weight, std=0.05)
            torch.nn.init.constant_(last.bias, -2.0)
    with _exporting(out):
        path = Path(yolo.export(format="onnx", imgsz=size, dynamic=True, simplify=False, opset=17,
                                verbose=False, **export)).resolve()
    inputs = (pixels.transpose(0, 3, 1, 2) / 255).astype(np.float32)
    raw = _run(path, inputs)[0]
    iou = float(export.get("iou", 0.7))  # Ultralytics' predict default
    if "conf" in export:
        score = float(export["conf"])
        ref = non_max_suppression(torch.from_numpy(raw), score, iou, max_det=300, end2end=True)
    elif head == "end2end":
        score = threshold_for(raw[..., 4], 150)
        ref = non_max_suppression(torch.from_numpy(raw), score, iou, max_det=300, end2end=True)
    else:
        score = threshold_for(raw[:, 4:].max(axis=1), 300)
        ref = non_max_suppression(torch.from_numpy(raw), score, iou, max_det=300)
    return Case(path, head, inputs, (size, size), score, iou, 300, [r.numpy() for r in ref])


# ---- YOLOv5 (PyPI yolov5, run in its side venv) ----------------------------------------------------

def yolov5_case(out: Path, size: int = 320) -> Case:
    import torch
    import yolov5
    from yolov5 import export
    from yolov5.models.yolo import Model
    from yolov5.utils.general import non_max_suppression

    torch.manual_seed(0)
    model = Model(str(Path(yolov5.__file__).parent / "models" / "yolov5n.yaml"), nc=80)
    pixels = photo_batch(size)
    batch = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    calibrate_batchnorm(model, batch)
    detect = model.model[-1]
    for conv in detect.m:  # per level: anchors x (5 + C) channels; reset the objectness and class biases
        torch.nn.init.normal_(conv.weight, std=0.05)
        bias = conv.bias.data.view(detect.na, -1)
        bias[:, 4:] = -1.0
    model.names = [str(i) for i in range(80)]
    # what export.run does after loading a checkpoint (its loader always asks the hub first)
    model = model.fuse().eval()
    detect = model.model[-1]
    detect.inplace, detect.dynamic, detect.export = False, True, True
    example = torch.zeros(1, 3, size, size)
    # yolov5 was written for the TorchScript exporter, torch.onnx.export's default before torch 2.9
    legacy = functools.partial(torch.onnx.export, dynamo=False)
    with _exporting(out), torch.no_grad(), unittest.mock.patch.object(torch.onnx, "export", legacy):
        model(example)
        export.export_onnx(model, example, out / "yolov5n.pt", 17, True, False)
    if not (out / "yolov5n.onnx").is_file():
        raise RuntimeError("yolov5's ONNX export failed (its log above says why)")
    path = (out / "yolov5n.onnx").resolve()
    inputs = (pixels.transpose(0, 3, 1, 2) / 255).astype(np.float32)
    raw = _run(path, inputs)[0]
    score = threshold_for(raw[..., 4:5] * raw[..., 5:], 300)
    iou = 0.45  # YOLOv5's detect.py default
    ref = non_max_suppression(torch.from_numpy(raw), score, iou, max_det=300)
    return Case(path, "yolov5", inputs, (size, size), score, iou, 300, [r.numpy() for r in ref])


# ---- torchvision (this project's exporter) ------------------------------------------------------

def torchvision_case(arch: str, out: Path, size: int = 320) -> Case:
    import torch
    from torchvision.models import detection

    from visiongate.export.onnx import export_onnx
    from visiongate.export.sources.base import LoadedModel, ModelCard
    from visiongate.export.sources.torchvision_detection import DecodedDetector, detector_normalisation

    torch.manual_seed(0)
    # RetinaNet resizes to min_size inside forward; at the input's own size that resize is the identity
    fit = {} if arch.startswith("ssd") else {"min_size": size, "max_size": size}
    model = getattr(detection, arch)(weights=None, weights_backbone=None, num_classes=21, **fit)
    pixels = photo_batch(size)
    floats = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    mean, std = detector_normalisation(model)
    calibrate_batchnorm(model.backbone, (floats - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None])
    head = model.head.classification_head
    for m in head.modules():  # spread the scores: the init prior makes them all ~0.01 (RetinaNet)
        if isinstance(m, torch.nn.Conv2d) and m.groups == 1 and m.bias is not None and m.out_channels % 21 == 0:
            torch.nn.init.normal_(m.weight, std=0.03)
            torch.nn.init.constant_(m.bias, -1.0)
    model.eval()
    card = ModelCard(task="detect", input_size=(size, size), mean=tuple(mean), std=tuple(std))  # type: ignore[arg-type]
    path = out / f"{arch}.onnx"
    with _exporting(out):
        export_onnx(LoadedModel(DecodedDetector(model, (size, size)).eval(), card), path, torch.from_numpy(pixels))
    _, scores = _run(path, pixels)
    score = threshold_for(scores, 100)
    iou = 0.5
    model.score_thresh, model.nms_thresh, model.detections_per_img = score, iou, 300
    model.topk_candidates = 10**6  # torchvision caps candidates per level (RetinaNet) or class (SSD)
    with torch.no_grad():
        found = model(list(floats))
    softmax = arch.startswith("ssd")  # the export drops SSD's background column 0
    ref = [np.concatenate([d["boxes"].numpy(), d["scores"].numpy()[:, None],
                           d["labels"].numpy()[:, None] - softmax], axis=1) for d in found]
    return Case(path, "torchvision", pixels, (size, size), score, iou, 300, ref)


# ---- transformers DETR --------------------------------------------------------------------------

def detr_case(out: Path, size: int = 320) -> Case:
    import torch
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor
    from transformers.models.detr.modeling_detr import DetrObjectDetectionOutput

    torch.manual_seed(0)
    small: dict[str, Any] = {  # a small DETR: no download, quick to export
        "use_pretrained_backbone": False, "use_timm_backbone": True, "backbone": "resnet18", "num_labels": 20,
        "num_queries": 100, "d_model": 64, "encoder_layers": 1, "decoder_layers": 2, "encoder_ffn_dim": 128,
        "decoder_ffn_dim": 128, "encoder_attention_heads": 4, "decoder_attention_heads": 4}
    config = DetrConfig(**small)
    model = DetrForObjectDetection(config)
    pixels = photo_batch(size)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    inputs_t = ((torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255 - mean[:, None, None])
                / std[:, None, None])
    calibrate_batchnorm(model, inputs_t)
    torch.nn.init.normal_(model.class_labels_classifier.weight, std=0.05)
    torch.nn.init.normal_(model.class_labels_classifier.bias, std=1.0)
    path = out / "detr.onnx"

    class Outputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            o = self.model(pixel_values=pixel_values)
            return o.logits, o.pred_boxes

    with torch.no_grad(), _exporting(out):
        torch.onnx.export(Outputs().eval(), (inputs_t,), str(path), input_names=["pixel_values"],
                          output_names=["logits", "pred_boxes"], opset_version=17, dynamo=False,
                          dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"},
                                        "pred_boxes": {0: "batch"}})
    inputs = inputs_t.numpy()
    logits, boxes = _run(path, inputs)
    probs = torch.softmax(torch.from_numpy(logits), -1)[..., :-1].max(-1).values.numpy()
    score = threshold_for(probs, 40)
    processed = DetrImageProcessor().post_process_object_detection(
        DetrObjectDetectionOutput(logits=torch.from_numpy(logits), pred_boxes=torch.from_numpy(boxes)),
        threshold=score, target_sizes=[(size, size)] * len(inputs))
    ref = []
    for d in processed:
        order = torch.argsort(d["scores"], descending=True, stable=True)
        ref.append(np.concatenate([d["boxes"][order].numpy(), d["scores"][order].numpy()[:, None],
                                   d["labels"][order].numpy()[:, None]], axis=1))
    return Case(path, "detr", inputs, (size, size), score, 0.0, 300, ref)


if __name__ == "__main__":
    case_name, folder = sys.argv[1], Path(sys.argv[2])
    if case_name != "yolov5":
        raise SystemExit("only the yolov5 case runs as a script (it needs its own venv)")
    yolov5_case(folder).save(folder / "yolov5.npz")
