"""Decoded RGB image -> the tensor one model expects, plus how to map its pixels back.

Resize policies (config parameter ``resize``):
- ``center_crop``: shorter side to ``resize_size``, then the central ``input_size`` (ImageNet style)
- ``stretch``:     straight to ``input_size``, aspect ratio not kept
- ``letterbox``:   fit inside ``input_size`` keeping the aspect ratio, pad with ``pad_value``; the
                   picture is centred (as Ultralytics does) or put top-left
- ``none``:        any size goes in as it is (fully convolutional models, e.g. super-resolution)

Then the pixels become the input tensor: channel order (RGB/BGR, or one grey channel), layout
(NHWC/NCHW), data type (uint8 as they are; float as ``(pixel * pixel_scale - mean) / std`` when the
gateway normalises, or ``pixel * pixel_scale`` when the graph does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

Resize = Literal["center_crop", "stretch", "letterbox", "none"]
#: ``uint8_nhwc`` / ``float_nchw`` are the two shapes older code named; they still work
Layout = Literal["NHWC", "NCHW", "uint8_nhwc", "float_nchw"]
Interpolation = Literal["nearest", "bilinear", "bicubic", "area", "lanczos", "box", "hamming"]
InputDType = Literal["uint8", "float32", "float16", "float64"]

RESAMPLING: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,  # OpenCV's INTER_AREA: the mean of the source pixels each covers
    "box": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class PreprocessConfig:
    input_size: tuple[int, int] | None  # (height, width); None: any size
    resize: Resize = "stretch"
    resize_size: int | None = None
    #: per channel, in the model's channel order, in the units of ``pixel_scale``'s range
    #: ([0, 1] with the default 1/255)
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    channel_order: Literal["RGB", "BGR"] = "RGB"
    layout: Layout = "NHWC"
    pad_value: int = 114
    interpolation: Interpolation = "bilinear"
    letterbox_center: bool = True
    dtype: InputDType = "uint8"
    channels: int = 3
    #: True: the gateway applies mean/std; False: the graph does (or the model wants plain pixels)
    normalize: bool = False
    #: what a pixel (0..255) is multiplied by before mean/std, for float inputs
    pixel_scale: float = 1.0 / 255.0

    def __post_init__(self) -> None:
        if self.layout == "uint8_nhwc":
            object.__setattr__(self, "layout", "NHWC")
            object.__setattr__(self, "dtype", "uint8")
        elif self.layout == "float_nchw":
            object.__setattr__(self, "layout", "NCHW")
            object.__setattr__(self, "dtype", "float32")
            object.__setattr__(self, "normalize", True)


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


def _resize(src: Pixels, size_wh: tuple[int, int], method: Image.Resampling,
            box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    img = src if isinstance(src, Image.Image) else Image.fromarray(src)
    if box is None and img.size == size_wh:
        return np.asarray(img) if isinstance(src, Image.Image) else src
    return np.asarray(img.resize(size_wh, method, box=box, reducing_gap=None))


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
    method = RESAMPLING[cfg.interpolation]
    in_h, in_w = cfg.input_size
    if cfg.resize == "stretch":
        out = _resize(rgb, (in_w, in_h), method)
        return out, Placement(kx * in_w / w, ky * in_h / h, 0.0, 0.0, (ow, oh))
    if cfg.resize == "center_crop":
        short = cfg.resize_size or min(in_h, in_w)
        s = short / min(w, h)
        crop_w, crop_h = in_w / s, in_h / s
        left, top = (w - crop_w) / 2, (h - crop_h) / 2
        out = _resize(rgb, (in_w, in_h), method, box=(left, top, left + crop_w, top + crop_h))
        return out, Placement(kx * s, ky * s, -left * s, -top * s, (ow, oh))
    if cfg.resize == "letterbox":
        s = min(in_w / w, in_h / h)
        new_w, new_h = max(1, round(w * s)), max(1, round(h * s))
        resized = _resize(rgb, (new_w, new_h), method)
        out = np.full((in_h, in_w, 3), cfg.pad_value, dtype=np.uint8)
        # centred: Ultralytics' LetterBox puts round(d/2 - 0.1) above/left, which is d // 2
        left, top = ((in_w - new_w) // 2, (in_h - new_h) // 2) if cfg.letterbox_center else (0, 0)
        out[top:top + new_h, left:left + new_w] = resized
        return out, Placement(kx * new_w / w, ky * new_h / h, float(left), float(top), (ow, oh))
    raise ValueError(f"unknown resize policy {cfg.resize!r}")


#: ITU-R 601-2 luma, as Pillow's ``convert("L")``
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def to_model_layout(pixels: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB -> what the model's input tensor holds for one image (no batch axis)."""
    if cfg.dtype == "uint8" and cfg.channels == 3 and cfg.channel_order == "RGB" and cfg.layout == "NHWC":
        return pixels  # the exported graphs: order and normalisation happen inside them
    if cfg.channels == 1:
        grey = pixels.astype(np.float32) @ _LUMA
        px = grey[..., None] if cfg.dtype != "uint8" else \
            np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None]
    else:
        px = pixels[..., ::-1] if cfg.channel_order == "BGR" else pixels
    if cfg.dtype == "uint8":
        x = px
    else:
        if cfg.normalize:
            std = np.asarray(cfg.std, np.float32)
            a = np.float32(cfg.pixel_scale) / std
            b = -np.asarray(cfg.mean, np.float32) / std
            x = px.astype(np.float32) * a + b
        else:
            x = px.astype(np.float32) * np.float32(cfg.pixel_scale)
        if cfg.dtype != "float32":
            x = x.astype(cfg.dtype)
    if cfg.layout == "NCHW":
        return np.ascontiguousarray(x.transpose(2, 0, 1))
    return np.ascontiguousarray(x)


def preprocess(rgb: Pixels, cfg: PreprocessConfig,
               original_size: tuple[int, int] | None = None) -> tuple[np.ndarray, Placement]:
    pixels, placement = resize_for_model(rgb, cfg, original_size)
    return to_model_layout(pixels, cfg), placement
