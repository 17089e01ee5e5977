"""Decoded RGB image -> the tensor one model expects, plus how to map its pixels back.

Resize policies (config parameter ``resize``):
- ``center_crop``: shorter side to ``resize_size``, then the central ``input_size`` (ImageNet style)
- ``stretch``:     straight to ``input_size``, aspect ratio not kept
- ``letterbox``:   fit inside ``input_size`` keeping the aspect ratio, pad with ``pad_value``
- ``none``:        any size goes in as it is (fully convolutional models, e.g. super-resolution)

Exported models take ``uint8 [H, W, 3]`` (NHWC with the batch axis) and normalise inside the
graph; models that take ``float32 [3, H, W]`` are normalised here with ``mean``/``std``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

Resize = Literal["center_crop", "stretch", "letterbox", "none"]
Layout = Literal["uint8_nhwc", "float_nchw"]


@dataclass(frozen=True)
class PreprocessConfig:
    input_size: tuple[int, int] | None  # (height, width); None: any size
    resize: Resize = "stretch"
    resize_size: int | None = None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # [0, 1] units, model channel order
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_order: Literal["RGB", "BGR"] = "RGB"
    layout: Layout = "uint8_nhwc"
    pad_value: int = 114


@dataclass(frozen=True)
class Placement:
    """Where the network input's pixels came from: ``x_orig = (x_net - offset_x) / scale_x``.

    Scales include any DCT downscaling done while decoding, so the mapping lands in the caller's
    original (EXIF-upright) pixels.
    """

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float
    original_size: tuple[int, int]  # (width, height)

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """``boxes [N, 4]`` xyxy in network pixels -> original pixels, clipped to the image."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, 0::2] = (boxes[:, 0::2] - self.offset_x) / self.scale_x
        out[:, 1::2] = (boxes[:, 1::2] - self.offset_y) / self.scale_y
        w, h = self.original_size
        np.clip(out[:, 0::2], 0, w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, h, out=out[:, 1::2])
        return out


def shrink_limit(cfg: PreprocessConfig, width: int, height: int) -> tuple[int, int] | None:
    """The smallest decode size that loses nothing for this policy (for JPEG DCT downscaling)."""
    if cfg.input_size is None or cfg.resize == "none":
        return None
    in_h, in_w = cfg.input_size
    if cfg.resize == "center_crop":
        short = cfg.resize_size or min(in_h, in_w)
        s = short / min(width, height)
    elif cfg.resize == "letterbox":
        s = min(in_w / width, in_h / height)
    else:
        s = max(in_w / width, in_h / height)
    if s >= 1.0:
        return None
    return math.ceil(width * s), math.ceil(height * s)


#: what the resizers take: an ``uint8 [h, w, 3]`` array or an RGB Pillow image (no copy needed)
Pixels = np.ndarray | Image.Image


def _size_wh(src: Pixels) -> tuple[int, int]:
    return src.size if isinstance(src, Image.Image) else (src.shape[1], src.shape[0])


def _resize(src: Pixels, size_wh: tuple[int, int],
            box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    img = src if isinstance(src, Image.Image) else Image.fromarray(src)
    if box is None and img.size == size_wh:
        return np.asarray(img) if isinstance(src, Image.Image) else src
    return np.asarray(img.resize(size_wh, Image.Resampling.BILINEAR, box=box, reducing_gap=None))


def resize_for_model(rgb: Pixels, cfg: PreprocessConfig,
                     original_size: tuple[int, int] | None = None) -> tuple[np.ndarray, Placement]:
    """``rgb uint8 [h, w, 3]`` (or an RGB Pillow image) -> ``uint8 [H, W, 3]`` at the model's
    input size, and its Placement.

    ``original_size`` (width, height) is the image's size before decode-time downscaling.
    """
    w, h = _size_wh(rgb)
    ow, oh = original_size or (w, h)
    kx, ky = w / ow, h / oh  # decode-time shrink
    if cfg.input_size is None or cfg.resize == "none":
        return np.asarray(rgb), Placement(kx, ky, 0.0, 0.0, (ow, oh))
    in_h, in_w = cfg.input_size
    if cfg.resize == "stretch":
        out = _resize(rgb, (in_w, in_h))
        return out, Placement(kx * in_w / w, ky * in_h / h, 0.0, 0.0, (ow, oh))
    if cfg.resize == "center_crop":
        short = cfg.resize_size or min(in_h, in_w)
        s = short / min(w, h)
        crop_w, crop_h = in_w / s, in_h / s
        left, top = (w - crop_w) / 2, (h - crop_h) / 2
        out = _resize(rgb, (in_w, in_h), box=(left, top, left + crop_w, top + crop_h))
        return out, Placement(kx * s, ky * s, -left * s, -top * s, (ow, oh))
    if cfg.resize == "letterbox":
        s = min(in_w / w, in_h / h)
        new_w, new_h = max(1, round(w * s)), max(1, round(h * s))
        resized = _resize(rgb, (new_w, new_h))
        out = np.full((in_h, in_w, 3), cfg.pad_value, dtype=np.uint8)
        left, top = (in_w - new_w) // 2, (in_h - new_h) // 2
        out[top:top + new_h, left:left + new_w] = resized
        return out, Placement(kx * new_w / w, ky * new_h / h, float(left), float(top), (ow, oh))
    raise ValueError(f"unknown resize policy {cfg.resize!r}")


def to_model_layout(pixels: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB -> what the model's input tensor holds for one image (no batch axis)."""
    if cfg.layout == "uint8_nhwc":
        # channel order and normalisation are done in the exported graph
        return pixels
    x = pixels.astype(np.float32) * np.float32(1.0 / 255.0)
    if cfg.channel_order == "BGR":
        x = x[..., ::-1]
    x = (x - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(rgb: Pixels, cfg: PreprocessConfig,
               original_size: tuple[int, int] | None = None) -> tuple[np.ndarray, Placement]:
    pixels, placement = resize_for_model(rgb, cfg, original_size)
    return to_model_layout(pixels, cfg), placement
