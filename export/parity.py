"""Proof that an exported graph computes what the PyTorch model computes, on real photos.

Both sides get exactly the gateway's input: JPEG bytes decoded and resized by ``service.vision``
using the parameters of the config that is about to be written. Each task has its own measure:
- classify: max |logit difference| and top-1 agreement
- detect / super_resolve: added by their own checks (see ``CHECKS``)
A failed proof raises ``ParityError`` and no version is written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from service.repository import ModelSpec
from service.vision.decode import decode
from service.vision.preprocess import preprocess, shrink_limit

from .photos import PHOTO_NAMES, photo_jpeg

MAX_PIXELS = 100_000_000


class ParityError(RuntimeError):
    pass


@dataclass
class ParityReport:
    task: str
    passed: bool
    photos: list[str]
    metrics: dict[str, float]
    thresholds: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    onnxruntime: str = ort.__version__
    torch: str = torch.__version__
    seconds: float = 0.0

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


def model_inputs(spec: ModelSpec, names: tuple[str, ...]) -> np.ndarray:
    """The photos as the gateway would feed them: uint8 ``[N, H, W, 3]``."""
    batch = []
    for name in names:
        decoded = decode(photo_jpeg(name), MAX_PIXELS, shrink_limit=partial(shrink_limit, spec.preprocess))
        tensor, _ = preprocess(decoded.rgb, spec.preprocess, decoded.original_size)
        batch.append(tensor)
    return np.stack(batch)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def check_classifier(reference: torch.nn.Module, onnx_path: Path, spec: ModelSpec,
                     photos: tuple[str, ...] = PHOTO_NAMES, tolerance: float = 1e-3) -> ParityReport:
    x = model_inputs(spec, photos)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    got = _session(onnx_path).run(None, {"image": x})[0]
    diff = float(np.abs(expected - got).max())
    scale = float(np.abs(expected).max())
    agree = float(np.mean(expected.argmax(1) == got.argmax(1)))
    labels = spec.labels or ()
    top1 = {p: labels[int(i)] if labels else int(i) for p, i in zip(photos, got.argmax(1), strict=True)}
    passed = diff <= tolerance * max(1.0, scale) and agree == 1.0
    return ParityReport(
        task="classify", passed=passed, photos=list(photos),
        metrics={"max_abs_logit_diff": diff, "max_abs_logit": scale, "top1_agreement": agree},
        thresholds={"max_abs_logit_diff": tolerance * max(1.0, scale), "top1_agreement": 1.0},
        details={"onnx_top1": top1},
    )


Check = Callable[[torch.nn.Module, Path, ModelSpec], ParityReport]
CHECKS: dict[str, Check] = {"classify": check_classifier}


def prove(task: str, reference: torch.nn.Module, onnx_path: Path, spec: ModelSpec) -> ParityReport:
    if task not in CHECKS:
        raise ParityError(f"no parity check for task {task!r}")
    started = time.perf_counter()
    report = CHECKS[task](reference, onnx_path, spec)
    report.seconds = round(time.perf_counter() - started, 3)
    return report
