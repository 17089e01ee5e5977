"""POST /v1/super-resolve.

HTTP behaviour (headers, output formats, alpha, tiling, output limits, errors) against real gateway
processes serving ``FakeBackend``: its ``fake_upscaler`` is nearest-neighbour x2, so every output
pixel is known in advance. Quality against waifu2x (photo x2) on real photos, measured the usual
way: downscale a real photo crop x2 with bicubic, upscale it back through the API, and compare PSNR
with plain bicubic upscaling. Crops keep the suite fast.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from support import FAKE, encode, photo, running_gateway

SR = "waifu2x_x2"


@pytest.fixture(scope="module")
def small_tiles_fake_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fake backend cutting images into 24 px tiles (4 px overlap) and allowing 1 MP outputs."""
    yield from running_gateway(tmp_path_factory.mktemp("empty"), {
        **FAKE, "VISIONGATE_SR_TILE_SIZE": "24", "VISIONGATE_SR_TILE_OVERLAP": "4",
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


def nearest_x2(pixels: np.ndarray) -> np.ndarray:
    """What ``fake_upscaler`` answers: every pixel doubled both ways."""
    return pixels.repeat(2, axis=0).repeat(2, axis=1)


# ---- HTTP behaviour, on the fake upscaler ----

def test_headers_describe_the_upscale(fake_gateway: str) -> None:
    r = upscale(fake_gateway, encode(crop("coffee", 100, 100, 64)[:48], "JPEG"), "image/jpeg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    described = (r.headers["x-scale"], r.headers["x-model"], r.headers["x-model-version"])
    assert described == ("2", "fake_upscaler", "1")
    assert (r.headers["x-input-size"], r.headers["x-output-size"]) == ("64x48", "128x96")
    assert int(r.headers["x-tiles"]) >= 1


def test_the_output_is_the_model_s_output_pixel_for_pixel(fake_gateway: str) -> None:
    rgb = crop("astronaut", 40, 150, 90)[:, :70]  # 70 x 90: not a multiple of the 64 px tiles
    out = pixels(upscale(fake_gateway, encode(rgb, "PNG")))
    np.testing.assert_array_equal(out, nearest_x2(rgb))


def test_tiles_with_overlap_are_stitched_back_exactly(fake_gateway: str,
                                                      small_tiles_fake_gateway: str) -> None:
    rgb = crop("coffee", 120, 200, 130)[:, :110]  # 110 x 130: not a multiple of anything
    whole = upscale(fake_gateway, encode(rgb, "PNG"))
    tiled = upscale(small_tiles_fake_gateway, encode(rgb, "PNG"))
    assert int(tiled.headers["x-tiles"]) > int(whole.headers["x-tiles"])
    np.testing.assert_array_equal(pixels(tiled), nearest_x2(rgb))
    np.testing.assert_array_equal(pixels(whole), nearest_x2(rgb))


@pytest.mark.parametrize("params, accept, fmt", [({"format": "jpeg"}, None, "JPEG"),
                                                 ({"format": "webp"}, None, "WEBP"),
                                                 ({}, "image/webp", "WEBP"),
                                                 ({}, "image/jpeg;q=0.5, image/webp", "WEBP"),
                                                 ({}, "image/*", "PNG"),
                                                 ({"format": "png"}, "image/jpeg", "PNG")])
def test_output_format_from_the_query_or_else_the_accept_header(fake_gateway: str, params: dict[str, str],
                                                                accept: str | None, fmt: str) -> None:
    r = upscale(fake_gateway, encode(crop("coffee", 100, 100, 48), "PNG"), accept=accept, **params)
    assert r.status_code == 200, r.text
    img = Image.open(io.BytesIO(r.content))
    assert (img.format, img.size) == (fmt, (96, 96))
    assert r.headers["content-type"] == f"image/{fmt.lower()}"


def test_an_alpha_channel_survives_as_upscaled_alpha(fake_gateway: str) -> None:
    rgb = crop("astronaut", 40, 150, 64)
    alpha = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))  # transparent left, opaque right
    rgba = np.concatenate([rgb, alpha[..., None]], axis=2)
    out = pixels(upscale(fake_gateway, encode(rgba, "PNG")), "RGBA")
    assert out.shape == (128, 128, 4)
    a = alpha[..., None].astype(int)
    over_white = ((rgb.astype(int) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)
    np.testing.assert_array_equal(out[..., :3], nearest_x2(over_white))  # colour: the model's, over white
    expected = np.asarray(Image.fromarray(alpha).resize((128, 128), Image.Resampling.BICUBIC))
    assert np.abs(out[..., 3].astype(int) - expected.astype(int)).max() <= 1  # alpha: bicubic
    webp = pixels(upscale(fake_gateway, encode(rgba, "PNG"), format="webp"), "RGBA")
    assert webp[:, :8, 3].max() < 40 and webp[:, -8:, 3].min() > 215


def test_an_output_over_the_pixel_limit_is_413_naming_the_largest_input(
        small_tiles_fake_gateway: str) -> None:
    big = encode(np.full((600, 500, 3), 90, np.uint8), "PNG")  # 1200 x 1000 out > 1 MP
    r = upscale(small_tiles_fake_gateway, big)
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    assert error["type"] == "OutputTooLarge" and "250000" in error["message"]
    assert error["max_input_pixels"] == 250_000
    ok = upscale(small_tiles_fake_gateway, encode(np.full((500, 500, 3), 90, np.uint8), "PNG"))  # 1 MP out
    assert pixels(ok).shape == (1000, 1000, 3)


def test_super_resolve_with_a_classifier_is_400_naming_the_sr_models(fake_gateway: str) -> None:
    r = upscale(fake_gateway, encode(crop("coffee", 0, 0, 32), "PNG"), model="fake_classifier")
    assert r.status_code == 400 and r.json()["error"]["type"] == "WrongTask"
    assert "fake_upscaler" in r.json()["error"]["message"]


def test_one_image_per_request(fake_gateway: str) -> None:
    body = encode(crop("coffee", 0, 0, 32), "PNG")
    r = httpx.post(f"{fake_gateway}/v1/super-resolve", files=[("file", ("a.png", body, "image/png"))] * 2,
                   timeout=30)
    assert r.status_code == 400 and r.json()["error"]["type"] == "InvalidArgument"
    assert r.json()["error"]["message"]


def test_an_unknown_output_format_is_400(fake_gateway: str) -> None:
    r = upscale(fake_gateway, encode(crop("coffee", 0, 0, 32), "PNG"), format="gif")
    assert r.status_code == 400 and r.json()["error"]["type"] == "InvalidArgument"
    assert "format" in r.json()["error"]["message"]


# ---- quality, on waifu2x ----

@pytest.fixture(scope="module")
def small_tiles_gw(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway serving only the real SR model that cuts images into 48 px tiles (8 px overlap)."""
    only_sr = tmp_path_factory.mktemp("sr_repository")
    (only_sr / SR).symlink_to((repository / SR).resolve(), target_is_directory=True)
    yield from running_gateway(only_sr, {"VISIONGATE_SR_TILE_SIZE": "48", "VISIONGATE_SR_TILE_OVERLAP": "8"})


@pytest.mark.parametrize("name, top, left", [("astronaut", 40, 150), ("coffee", 120, 200),
                                             ("motorcycle", 200, 300)])
def test_upscaling_a_downscaled_photo_beats_bicubic_by_at_least_1_db(gateway: str, name: str, top: int,
                                                                      left: int) -> None:
    original = crop(name, top, left)
    small = half(original)
    r = upscale(gateway, encode(small, "PNG"))
    restored = pixels(r)
    assert restored.shape == original.shape
    gain = psnr(original, restored) - psnr(original, bicubic_x2(small))
    assert gain >= 1.0, f"{name}: only {gain:.2f} dB over bicubic"


def test_a_real_network_s_tiles_with_overlap_leave_no_seams(gateway: str, small_tiles_gw: str) -> None:
    body = encode(crop("coffee", 120, 200, 130)[:, :110], "PNG")  # 110 x 130: not a multiple of anything
    whole = upscale(gateway, body)
    tiled = upscale(small_tiles_gw, body)
    assert (whole.headers["x-tiles"], int(tiled.headers["x-tiles"]) > 4) == ("1", True)
    assert whole.headers["x-model"] == SR
    diff = np.abs(pixels(whole).astype(int) - pixels(tiled).astype(int))
    assert diff.max() <= 1 and diff.mean() < 1e-3
