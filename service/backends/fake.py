"""``FakeBackend``: deterministic models for every task, with no model files and no onnxruntime.

For tests of clients, deployments and the gateway itself, as httpx's ``MockTransport`` is for HTTP
code: it is served through the same batching, admission and deadlines as the embedded runtime
(``BatchedBackend``), so overload, deadlines and shedding behave as in production; only the
arithmetic is fake. Never use it for answers. ``visiongate serve`` runs it with
``VISIONGATE_BACKEND=fake``; in Python::

    from visiongate.service.app import create_app
    from visiongate.service.backends.fake import FakeBackend
    from visiongate.service.settings import Settings

    settings = Settings(backend="fake")
    app = create_app(settings, backend=FakeBackend(settings))

What each model answers (so tests can assert it):

- ``fake_classifier`` (classify, 224x224 uint8 NHWC, labels ``red``, ``green``, ``blue``, ``gray``):
  logits are the image's mean red, green and blue (0..1) and 0.5 for gray, times 10: a red photo is
  ``red``.
- ``fake_detector`` (detect, letterboxed 320x320, labels ``bright``, ``dark``): one box around the
  pixels brighter than the mean of the model's input (score 0.9, class ``bright``) and one
  whole-input box (score 0.3, class ``dark``). The input is letterboxed with gray (114): on a
  non-square image darker than that, the padding counts as bright.
- ``fake_upscaler`` (super-resolve x2, any size): nearest-neighbour upscaling.

``item_delay_s`` makes every item cost that long, to put the queues under load.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ModelLoadFailed, ModelNotFound
from ..repository import ModelSpec, spec_from_config
from ..settings import Settings
from .base import Tensors
from .batcher import RunBatch
from .batching import BatchedBackend, LoadedModel


def _param(**values: str) -> dict[str, dict[str, str]]:
    return {k: {"string_value": v} for k, v in values.items()}


FAKE_CONFIGS: dict[str, dict[str, Any]] = {
    "fake_classifier": {
        "name": "fake_classifier", "platform": "onnxruntime_onnx", "max_batch_size": 8,
        "input": [{"name": "image", "data_type": "TYPE_UINT8", "dims": [224, 224, 3]}],
        "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": [4]}],
        "parameters": _param(task="classify", resize="center_crop", resize_size="256", normalization="in_graph"),
    },
    "fake_detector": {
        "name": "fake_detector", "platform": "onnxruntime_onnx", "max_batch_size": 4,
        "input": [{"name": "image", "data_type": "TYPE_UINT8", "dims": [320, 320, 3]}],
        "output": [{"name": "boxes", "data_type": "TYPE_FP32", "dims": [-1, 4]},
                   {"name": "scores", "data_type": "TYPE_FP32", "dims": [-1, 2]}],
        "parameters": _param(task="detect", resize="letterbox", letterbox_pad="114", normalization="in_graph",
                             score_threshold="0.25", iou_threshold="0.45", max_detections="100"),
    },
    "fake_upscaler": {
        "name": "fake_upscaler", "platform": "onnxruntime_onnx", "max_batch_size": 4,
        "input": [{"name": "image", "data_type": "TYPE_UINT8", "dims": [-1, -1, 3]}],
        "output": [{"name": "output", "data_type": "TYPE_FP32", "dims": [-1, -1, 3]}],
        "parameters": _param(task="super_resolve", resize="none", normalization="in_graph", scale="2",
                             tile_size="64", tile_overlap="8"),
    },
}
FAKE_LABELS: dict[str, tuple[str, ...]] = {
    "fake_classifier": ("red", "green", "blue", "gray"),
    "fake_detector": ("bright", "dark"),
}


def _classify(batch: np.ndarray) -> Tensors:
    mean = batch.reshape(len(batch), -1, 3).mean(axis=1) / 255.0
    gray = np.full((len(batch), 1), 0.5)
    return {"logits": (np.concatenate([mean, gray], axis=1) * 10).astype(np.float32)}


def _detect(batch: np.ndarray) -> Tensors:
    n, h, w, _ = batch.shape
    luma = batch.mean(axis=3)
    boxes = np.zeros((n, 2, 4), np.float32)
    scores = np.zeros((n, 2, 2), np.float32)
    for i in range(n):
        ys, xs = np.nonzero(luma[i] > luma[i].mean())
        if len(xs):
            boxes[i, 0] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            scores[i, 0, 0] = 0.9
        boxes[i, 1] = (0, 0, w, h)
        scores[i, 1, 1] = 0.3
    return {"boxes": boxes, "scores": scores}


def _upscale(batch: np.ndarray) -> Tensors:
    return {"output": batch.repeat(2, axis=1).repeat(2, axis=2).astype(np.float32)}


_RUNS = {"fake_classifier": _classify, "fake_detector": _detect, "fake_upscaler": _upscale}


class FakeBackend(BatchedBackend):
    name = "fake"

    def __init__(self, settings: Settings, item_delay_s: float = 0.0,
                 models: tuple[str, ...] = tuple(FAKE_CONFIGS),
                 on_batch: Callable[[str, int], None] | None = None) -> None:
        super().__init__(settings, on_batch)
        self._delay = item_delay_s
        self._names = models

    def _spec(self, name: str) -> ModelSpec:
        return spec_from_config(FAKE_CONFIGS[name], labels=FAKE_LABELS.get(name), versions=(1,))

    def _runner(self, name: str) -> RunBatch:
        compute = _RUNS[name]

        def run(inputs: Tensors) -> Tensors:
            batch = next(iter(inputs.values()))
            if self._delay:
                time.sleep(self._delay * len(batch))
            return compute(batch)

        return run

    def _make(self, name: str) -> LoadedModel:
        spec = self._spec(name)
        return LoadedModel(spec, {1: self._batcher(spec, 1, self._runner(name))})

    async def start(self) -> None:
        for name in self._names:
            self._install(self._make(name), "FakeBackend (deterministic, not real models)")
        self._started = True

    async def load(self, model: str) -> None:
        if model not in FAKE_CONFIGS:
            raise ModelNotFound(f"FakeBackend has no model {model!r}", available=sorted(FAKE_CONFIGS))
        if self._closing:
            raise ModelLoadFailed("the backend is closing")
        self._install(self._make(model), "FakeBackend (deterministic, not real models)")
