"""POST /v1/super-resolve against real gateway processes serving waifu2x (photo x2) on real photos.

Quality is measured the usual way: downscale a real photo crop x2 with bicubic, upscale it back
through the API, and compare PSNR with plain bicubic upscaling. Crops keep the suite fast.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from support import encode, photo, running_gateway

SR = "waifu2x_x2"


@pytest.fixture(scope="module")
def gw(gateway: str) -> str:
    """The shared gateway: it serves every default model, this one included."""
    return gateway


@pytest.fixture(scope="module")
def small_tiles_gw(gw: str, repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway serving only the SR model that cuts images into 48 px tiles (8 px overlap) and
    allows 1 MP outputs."""
    only_sr = tmp_path_factory.mktemp("sr_repository")
    (only_sr / SR).symlink_to((repository / SR).resolve(), target_is_directory=True)
    yield from running_gateway(only_sr, {"VISIONGATE_SR_TILE_SIZE": "48", "VISIONGATE_SR_TILE_OVERLAP": "8",
                                        "VISIONGATE_MAX_OUTPUT_PIXELS": "1000000"})


def upscale(gw: str, body: bytes, content_type: str = "image/png", accept: str | None = None,
            **params: object) -> httpx.Response:
    headers = {"content-type": content_type, **({"accept": accept} if accept else {})}
    return httpx.post(f"{gw}/v1/super-resolve", content=body, headers=headers, params=params, timeout=60)


def pixels(r: httpx.Response, mode: str = "RGB") -> np.ndarray:
    assert r.status_code == 200, r.text
    return np.asarray(Image.open(io.BytesIO(r.content)).convert(mode))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def crop(name: str, top: int, left: int, size: int = 160) -> np.ndarray:
    return np.ascontiguousarray(photo(name)[top:top + size, left:left + size])


def half(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    return np.asarray(Image.fromarray(rgb).resize((w // 2, h // 2), Image.Resampling.BICUBIC))


def bicubic_x2(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    return np.asarray(Image.fromarray(rgb).resize((w * 2, h * 2), Image.Resampling.BICUBIC))


@pytest.mark.parametrize("name, top, left", [("astronaut", 40, 150), ("coffee", 120, 200),
                                             ("motorcycle", 200, 300)])
def test_upscaling_a_downscaled_photo_beats_bicubic_by_at_least_1_db(gw: str, name: str, top: int,
                                                                      left: int) -> None:
    original = crop(name, top, left)
    small = half(original)
    r = upscale(gw, encode(small, "PNG"))
    restored = pixels(r)
    assert restored.shape == original.shape
    gain = psnr(original, restored) - psnr(original, bicubic_x2(small))
    assert gain >= 1.0, f"{name}: only {gain:.2f} dB over bicubic"


def test_headers_describe_the_upscale(gw: str) -> None:
    r = upscale(gw, encode(crop("coffee", 100, 100, 64), "JPEG"), "image/jpeg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-scale"] == "2" and r.headers["x-model"] == SR and int(r.headers["x-model-version"]) >= 1
    assert (r.headers["x-input-size"], r.headers["x-output-size"]) == ("64x64", "128x128")


def test_output_format_from_the_query_or_the_accept_header(gw: str) -> None:
    body = encode(crop("coffee", 100, 100, 48), "PNG")
    for r, fmt in ((upscale(gw, body, format="jpeg"), "JPEG"),
                   (upscale(gw, body, accept="image/webp"), "WEBP"),
                   (upscale(gw, body, accept="image/jpeg;q=0.5, image/webp"), "WEBP")):
        assert r.status_code == 200, r.text
        img = Image.open(io.BytesIO(r.content))
        assert img.format == fmt and img.size == (96, 96)


def test_an_alpha_channel_survives_as_upscaled_alpha(gw: str) -> None:
    rgb = crop("astronaut", 40, 150, 64)
    alpha = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))  # transparent left, opaque right
    rgba = np.concatenate([rgb, alpha[..., None]], axis=2)
    out = pixels(upscale(gw, encode(rgba, "PNG")), "RGBA")
    assert out.shape == (128, 128, 4)
    expected = np.asarray(Image.fromarray(alpha).resize((128, 128), Image.Resampling.BICUBIC))
    assert np.abs(out[..., 3].astype(int) - expected.astype(int)).max() <= 1
    webp = pixels(upscale(gw, encode(rgba, "PNG"), format="webp"), "RGBA")
    assert webp[:, :8, 3].max() < 40 and webp[:, -8:, 3].min() > 215


def test_tiled_output_equals_untiled_output(gw: str, small_tiles_gw: str) -> None:
    body = encode(crop("coffee", 120, 200, 130)[:, :110], "PNG")  # 110 x 130: not a multiple of anything
    whole = upscale(gw, body)
    tiled = upscale(small_tiles_gw, body)
    assert (whole.headers["x-tiles"], int(tiled.headers["x-tiles"]) > 4) == ("1", True)
    diff = np.abs(pixels(whole).astype(int) - pixels(tiled).astype(int))
    assert diff.max() <= 1 and diff.mean() < 1e-3


def test_an_output_over_the_pixel_limit_is_413_naming_the_largest_input(small_tiles_gw: str) -> None:
    big = encode(np.full((600, 500, 3), 90, np.uint8), "PNG")  # 1200 x 1000 out > 1 MP
    r = upscale(small_tiles_gw, big)
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    assert error["type"] == "OutputTooLarge" and "250000" in error["message"]
    assert error["max_input_pixels"] == 250_000


def test_super_resolve_with_a_classifier_is_400_naming_the_sr_models(gw: str) -> None:
    r = upscale(gw, encode(crop("coffee", 0, 0, 32), "PNG"), model="efficientnet_lite0")
    assert r.status_code == 400 and r.json()["error"]["type"] == "WrongTask"
    assert SR in r.json()["error"]["message"]


def test_one_image_per_request(gw: str) -> None:
    body = encode(crop("coffee", 0, 0, 32), "PNG")
    r = httpx.post(f"{gw}/v1/super-resolve", files=[("file", ("a.png", body, "image/png"))] * 2, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["type"] == "InvalidArgument"
