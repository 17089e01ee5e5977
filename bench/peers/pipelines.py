"""The two ways a peer server turns JPEG bytes into the model's input, chosen with ``PIPELINE``.

``reference``   what the peers' users write: full-size Pillow decode, shorter side to 256 (bilinear),
                centre 224, /255, ImageNet mean/std in numpy, ``float32 [3, 224, 224]``, fed to a
                float-input export of EfficientNet-Lite0 (``bench/peers/export_model.py``).
``visiongate``  the gateway's own decoder and preprocessing (``service.vision``: DCT-domain
                downscale, one bilinear resize of the centre crop), ``uint8 [224, 224, 3]``, fed to
                the gateway's export (normalisation inside the graph). Only the serving differs.

Imported by the peer servers in their own venvs (cwd ``bench/peers``; ``service`` on PYTHONPATH
for ``visiongate``) and by the load client and the ceiling in the gateway's venv.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from visiongate.service.vision.preprocess import PreprocessConfig

PIPELINES = ("reference", "visiongate")
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
#: the gateway's default ``max_image_pixels``
MAX_PIXELS = 40_000_000

Prepare = Callable[[bytes], np.ndarray]


def prepare_reference(data: bytes) -> np.ndarray:
    """JPEG bytes -> ``float32 [3, 224, 224]``, normalised."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    s = 256 / min(w, h)
    img = img.resize((round(w * s), round(h * s)), Image.Resampling.BILINEAR)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    x = np.asarray(img.crop((left, top, left + 224, top + 224)), np.float32) / 255.0
    return np.ascontiguousarray(((x - MEAN) / STD).transpose(2, 0, 1))


def _visiongate() -> Prepare:
    from visiongate.service.vision.decode import decode
    from visiongate.service.vision.preprocess import preprocess, shrink_limit

    cfg = visiongate_config()

    def prepare(data: bytes) -> np.ndarray:
        """JPEG bytes -> ``uint8 [224, 224, 3]`` RGB, exactly as the gateway prepares a classify input."""
        d = decode(data, MAX_PIXELS, shrink_limit=lambda w, h: shrink_limit(cfg, w, h))
        return preprocess(d.pixels, cfg, d.original_size)[0]

    return prepare


def visiongate_config() -> PreprocessConfig:
    """The ``PreprocessConfig`` the gateway derives from the exported EfficientNet-Lite0's config.pbtxt
    (the harness checks that they still agree before it measures)."""
    from visiongate.service.vision.preprocess import PreprocessConfig

    return PreprocessConfig(input_size=(224, 224), resize="center_crop", resize_size=256,
                            mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def get(name: str | None = None) -> Prepare:
    """The ``prepare`` function of pipeline ``name`` (default: the ``PIPELINE`` environment variable)."""
    name = name or os.environ.get("PIPELINE", "reference")
    if name == "reference":
        return prepare_reference
    if name == "visiongate":
        return _visiongate()
    raise ValueError(f"unknown pipeline {name!r}; one of {PIPELINES}")


def top5(logits: np.ndarray) -> dict[str, list[dict[str, float]]]:
    """``logits [1000]`` -> the peers' answer: ``{"top5": [{"class_id", "score"}, ...]}``."""
    p = np.exp(logits - logits.max())
    p /= p.sum()
    top = np.argsort(-p)[:5]
    return {"top5": [{"class_id": int(i), "score": float(p[i])} for i in top]}
