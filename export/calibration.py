"""Photographs -> the model's input tensors, exactly as the gateway builds them; a calibration reader.

``gateway_decode=True`` decodes as the gateway does (JPEG shrunk in the DCT domain as far as the
model's resize allows); ``False`` decodes every pixel first. Comparing a model on the two measures
what the gateway's decode alone costs in agreement.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from visiongate.service.repository import ModelSpec
from visiongate.service.vision.decode import decode
from visiongate.service.vision.preprocess import Placement, preprocess, shrink_limit

from .photo_sets import MAX_PIXELS, Sample


def model_input(spec: ModelSpec, data: bytes, *, gateway_decode: bool = True) -> tuple[np.ndarray, Placement]:
    """uint8 ``[H, W, 3]`` network input (the spec's resize) and where its pixels came from."""
    limit = partial(shrink_limit, spec.preprocess) if gateway_decode else None
    decoded = decode(data, MAX_PIXELS, shrink_limit=limit)
    return preprocess(decoded.pixels, spec.preprocess, decoded.original_size)


def model_inputs(spec: ModelSpec, samples: Sequence[Sample], *, gateway_decode: bool = True) -> np.ndarray:
    """uint8 ``[N, H, W, 3]``, one row per sample."""
    return np.stack([model_input(spec, s.data, gateway_decode=gateway_decode)[0] for s in samples])


class ArrayReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds ``inputs`` to onnxruntime's calibrator ``batch`` rows at a time."""

    def __init__(self, input_name: str, inputs: np.ndarray, batch: int = 1) -> None:
        self._name, self._inputs, self._batch, self._at = input_name, inputs, batch, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._at >= len(self._inputs):
            return None
        chunk = self._inputs[self._at:self._at + self._batch]
        self._at += self._batch
        return {self._name: chunk}

    def rewind(self) -> None:
        self._at = 0
