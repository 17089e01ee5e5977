"""Boxes and labels drawn onto an image with Pillow, for ``annotated=true`` detection responses."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: distinct, readable colours; class ``i`` gets ``PALETTE[i % len(PALETTE)]``
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (0, 0, 128),
)


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size)


def draw_detections(pixels: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray, scores: np.ndarray,
                    labels: Sequence[str] | None = None) -> np.ndarray:
    """Draw ``boxes [K, 4]`` (xyxy, pixels of ``pixels``) with "label score" captions.

    ``pixels uint8 [H, W, 3]`` is not modified; returns a new ``uint8 [H, W, 3]``. Line width and
    font size follow the image size so captions stay legible on large photos.
    """
    img = Image.fromarray(pixels).convert("RGB")
    draw = ImageDraw.Draw(img)
    h, w = pixels.shape[:2]
    line = max(1, round(min(w, h) / 300))
    font = _font(max(10, round(min(w, h) / 40)))
    for box, cid, score in zip(boxes.tolist(), class_ids.tolist(), scores.tolist(), strict=True):
        colour = PALETTE[int(cid) % len(PALETTE)]
        x0, y0, x1, y1 = box
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=line)
        name = labels[int(cid)] if labels is not None and int(cid) < len(labels) else str(int(cid))
        caption = f"{name} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        tw, th = right - left, bottom - top
        ty = y0 - th - 2 * line if y0 - th - 2 * line >= 0 else y0  # inside the box at the top edge
        draw.rectangle((x0, ty, x0 + tw + 2 * line, ty + th + 2 * line), fill=colour)
        draw.text((x0 + line - left, ty + line - top), caption, fill=(0, 0, 0), font=font)
    return np.asarray(img)
