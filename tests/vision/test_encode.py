"""Arrays -> PNG/JPEG/WebP bytes, and picking the format from an Accept header."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from support import photo
from visiongate.service.vision.encode import encode, format_from_accept


@pytest.mark.parametrize("fmt, pil", [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_a_photo_round_trips_in_every_format(fmt: str, pil: str) -> None:
    rgb = photo("coffee")[:96, :128]
    img = Image.open(io.BytesIO(encode(rgb, fmt)))  # type: ignore[arg-type]
    assert img.format == pil and img.size == (128, 96)
    back = np.asarray(img.convert("RGB")).astype(int)
    assert np.abs(back - rgb).mean() < (0.01 if fmt == "png" else 6)


def test_alpha_is_kept_by_png_and_webp_and_dropped_by_jpeg() -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 77
    assert Image.open(io.BytesIO(encode(rgba, "png"))).mode == "RGBA"
    assert np.asarray(Image.open(io.BytesIO(encode(rgba, "png"))))[0, 0, 3] == 77
    assert Image.open(io.BytesIO(encode(rgba, "webp"))).mode == "RGBA"
    assert Image.open(io.BytesIO(encode(rgba, "jpeg"))).mode == "RGB"
    with pytest.raises(ValueError):
        encode(np.zeros((8, 8), np.uint8))


def test_accept_header_picks_the_clients_preferred_image_type() -> None:
    assert format_from_accept("image/jpeg") == "jpeg"
    assert format_from_accept("image/png;q=0.4, image/webp;q=0.9") == "webp"
    assert format_from_accept("application/json, image/png") is None  # JSON first: no image
    assert format_from_accept("*/*") is None and format_from_accept(None) is None
    assert format_from_accept("image/*") == "png"
    assert format_from_accept("text/html, image/*;q=0.8", default="webp") == "webp"
