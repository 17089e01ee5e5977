"""Decoding: any mode becomes RGB the same way, EXIF is applied, limits hold before pixels are read."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from support import encode, photo
from visiongate.service.vision.decode import DecodeError, TooManyPixels, decode

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
    if mode == "I;16":
        img = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
    elif mode == "I":  # a 32-bit signed TIFF over its full range
        img = Image.fromarray((np.asarray(base.convert("L"), dtype=np.int64) * 8421504).astype(np.int32))
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
    with pytest.raises(DecodeError, match=r"truncated|corrupt"):
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


def test_pillows_bomb_guard_message_names_the_size_and_the_limit() -> None:
    with pytest.raises(TooManyPixels) as caught:
        decode(_png_header_only(60_000, 60_000), max_pixels=LIMIT)
    assert str(caught.value) == f"image is 3600000000 pixels; the limit is {LIMIT} pixels"
    # a limit above Pillow's own guard: the guard still refuses, and the message says so
    with pytest.raises(TooManyPixels, match="decompression-bomb guard \\(3600000000 pixels\\)"):
        decode(_png_header_only(60_000, 60_000), max_pixels=10**10)


# --- orientation: the size the gateway reports is the size of the pixels it returns ---------------

#: EXIF orientation -> the transform that displays the stored pixels upright
UPRIGHT = {
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, k=-1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2), 8: lambda a: np.rot90(a, k=1),
}


@pytest.mark.parametrize("orientation", range(2, 9))
@pytest.mark.parametrize("fmt", ["TIFF", "JPEG", "PNG", "WEBP"])
def test_every_exif_orientation_gives_upright_pixels_and_their_true_size(fmt: str, orientation: int) -> None:
    stored = photo("coffee")  # 600 wide, 400 high as stored
    img = Image.fromarray(stored)
    buf = io.BytesIO()
    if fmt == "TIFF":
        img.save(buf, format="TIFF", tiffinfo={0x0112: orientation})
    else:
        exif = img.getexif()
        exif[0x0112] = orientation
        img.save(buf, format=fmt, exif=exif.tobytes(), **({"quality": 95} if fmt != "PNG" else {}))
    truth = np.ascontiguousarray(UPRIGHT[orientation](stored))
    out = decode(buf.getvalue(), LIMIT)
    assert out.rgb.shape == truth.shape
    assert out.original_size == (truth.shape[1], truth.shape[0])
    assert np.abs(out.rgb.astype(int) - truth.astype(int)).mean() < 4


def test_a_shrunk_jpeg_reports_the_upright_size_of_the_original() -> None:
    img = Image.fromarray(photo("coffee"))
    exif = img.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    out = decode(buf.getvalue(), LIMIT, shrink_limit=lambda w, h: (100, 150))
    assert out.original_size == (400, 600)
    assert out.rgb.shape[:2] == (150, 100)  # 1/4 of the upright 400x600


# --- 32-bit integer TIFFs are scaled from their full range ---------------------------------------

def _tiff32(grey: np.ndarray, sample_format: int) -> bytes:
    """A greyscale 32-bit TIFF written by hand: SampleFormat 1 (uint32) or 2 (int32).
    Pillow itself only writes int32."""
    h, w = grey.shape
    data = grey.astype("<u4" if sample_format == 1 else "<i4").tobytes()
    tags = [(256, 4, w), (257, 4, h), (258, 3, 32), (259, 3, 1), (262, 3, 1), (273, 4, 0),
            (277, 3, 1), (278, 4, h), (279, 4, len(data)), (339, 3, sample_format)]
    data_offset = 8 + 2 + 12 * len(tags) + 4
    out = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        value = data_offset if tag == 273 else value
        out += struct.pack("<HHI", tag, kind, 1)
        out += struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
    return out + struct.pack("<I", 0) + data


@pytest.mark.parametrize("sample_format, scale", [(1, 16843009), (2, 8421504)])
def test_32_bit_integer_tiffs_are_scaled_from_their_full_range(sample_format: int, scale: int) -> None:
    grey = np.asarray(Image.fromarray(photo("camera")).convert("L"))[:128, :128]
    out = decode(_tiff32(grey.astype(np.uint64) * scale, sample_format), LIMIT)
    assert np.abs(out.rgb[..., 0].astype(int) - grey.astype(int)).max() <= 1
    assert 40 < out.rgb.mean() < 215  # neither all white nor all black


def test_16_bit_png_greyscale_is_scaled_from_16_bits() -> None:
    grey = np.asarray(Image.fromarray(photo("camera")).convert("L"))[:64, :64]
    out = decode(png_bytes(Image.fromarray(grey.astype(np.uint16) * 257)), LIMIT)
    assert np.abs(out.rgb[..., 0].astype(int) - grey.astype(int)).max() <= 1


# --- only the allowed formats are ever opened -----------------------------------------------------

def _saved(fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo("astronaut")[:32, :32]).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto 10 10 lineto stroke\nshowpage\n"


@pytest.mark.parametrize("data", [EPS, _saved("PPM"), _saved("ICO"), _saved("TGA"), _saved("PCX"),
                                  _saved("SGI")], ids=["eps", "ppm", "ico", "tga", "pcx", "sgi"])
def test_formats_outside_the_allowlist_are_never_opened(data: bytes) -> None:
    with pytest.raises(DecodeError, match="JPEG, PNG, WEBP, BMP, TIFF, GIF"):
        decode(data, LIMIT)


def test_the_allowlist_is_the_callers_to_narrow() -> None:
    jpeg = encode(photo("chelsea"))
    assert decode(jpeg, LIMIT, formats=("JPEG",)).format == "JPEG"
    with pytest.raises(DecodeError, match=r"\(PNG\)"):
        decode(jpeg, LIMIT, formats=("PNG",))
