"""Decoding: any mode becomes RGB the same way, EXIF is applied, limits hold before pixels are read."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from service.vision.decode import DecodeError, TooManyPixels, decode
from support import encode, photo

LIMIT = 50_000_000


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_jpeg_photo_decodes_to_rgb_uint8() -> None:
    out = decode(encode(photo("chelsea")), LIMIT)
    assert out.rgb.dtype == np.uint8 and out.rgb.shape == (300, 451, 3)
    assert out.original_size == (451, 300) and out.format == "JPEG"


def test_exif_orientation_is_applied() -> None:
    rgb = photo("coffee")  # 400 x 600 landscape
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    out = decode(buf.getvalue(), LIMIT)
    assert out.rgb.shape[:2] == (600, 400)
    assert out.original_size == (400, 600)
    expected = np.rot90(rgb, k=-1)
    assert np.abs(out.rgb.astype(int) - expected.astype(int)).mean() < 6


def test_dct_downscaling_keeps_at_least_what_was_asked() -> None:
    data = encode(photo("astronaut"))  # 512 x 512
    out = decode(data, LIMIT, shrink_limit=lambda w, h: (100, 100))
    assert out.rgb.shape[:2] == (128, 128)  # 1/4 scale is the smallest that is still >= 100
    assert out.original_size == (512, 512)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "RGBA", "LA", "I;16", "I", "F", "1"])
def test_every_mode_becomes_rgb_deterministically(mode: str) -> None:
    rgb = photo("astronaut")[:64, :64]
    base = Image.fromarray(rgb)
    if mode in ("I;16", "I"):
        grey = np.asarray(base.convert("L"), dtype=np.uint16) * 257
        img = Image.fromarray(grey.astype(np.uint16) if mode == "I;16" else grey.astype(np.int32))
    elif mode == "F":
        img = Image.fromarray(np.asarray(base.convert("L"), dtype=np.float32) / 255.0, mode="F")
    else:
        img = base.convert(mode)
    data = png_bytes(img) if mode not in ("CMYK", "F", "I") else _tiff(img)
    first, second = decode(data, LIMIT), decode(data, LIMIT)
    assert first.rgb.shape == (64, 64, 3) and first.rgb.dtype == np.uint8
    assert np.array_equal(first.rgb, second.rgb)
    if mode in ("L", "I;16", "I", "F"):
        expected = np.asarray(base.convert("L"))
        assert np.abs(first.rgb[..., 0].astype(int) - expected).max() <= 1


def _tiff(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="TIFF")
    return buf.getvalue()


def test_transparent_pixels_become_white_and_alpha_is_kept_on_request() -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:4, :, 3] = 255  # top half opaque red, bottom half fully transparent
    data = png_bytes(Image.fromarray(rgba, "RGBA"))
    out = decode(data, LIMIT, keep_alpha=True)
    assert tuple(out.rgb[0, 0]) == (200, 0, 0)
    assert tuple(out.rgb[7, 7]) == (255, 255, 255)
    assert out.alpha is not None and out.alpha[0, 0] == 255 and out.alpha[7, 7] == 0


def test_empty_bytes_and_non_images_are_decode_errors() -> None:
    with pytest.raises(DecodeError, match="empty"):
        decode(b"", LIMIT)
    with pytest.raises(DecodeError, match="not an image"):
        decode(b"%PDF-1.7 definitely not a picture", LIMIT)


def test_truncated_jpeg_is_refused_not_half_decoded() -> None:
    data = encode(photo("chelsea"))
    with pytest.raises(DecodeError, match="truncated|corrupt"):
        decode(data[: len(data) // 2], LIMIT)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size but carries no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))


def test_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    # Had the decoder read pixels, this file would fail as truncated; it fails on size first.
    with pytest.raises(TooManyPixels, match="8000x8000"):
        decode(_png_header_only(8_000, 8_000), max_pixels=LIMIT)


def test_pixel_limit_beyond_pillows_own_bomb_guard_is_still_our_error() -> None:
    with pytest.raises(TooManyPixels):
        decode(_png_header_only(60_000, 60_000), max_pixels=LIMIT)
