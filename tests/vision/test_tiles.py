"""Tiling for super-resolution: equal tiles that batch, and stitching that leaves no seam."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from support import photo
from visiongate.service.vision.tiles import (
    attach_alpha,
    cut,
    max_input_pixels,
    output_fits,
    plan_tiles,
    stitch,
    to_pixels,
    upscale_alpha,
)

ROOT = Path(__file__).resolve().parents[2]


def blur_x2(batch: np.ndarray, radius: int) -> np.ndarray:
    """A stand-in network with a known receptive margin: box blur of ``radius`` (edge-replicated,
    like waifu2x's padding), then x2 nearest upscaling. ``[N, H, W, C]`` -> ``[N, 2H, 2W, C]``."""
    x = batch.astype(np.float64)
    k = 2 * radius + 1
    padded = np.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
    c = padded.cumsum(1).cumsum(2)
    c = np.pad(c, ((0, 0), (1, 0), (1, 0), (0, 0)))
    h, w = x.shape[1:3]
    s = c[:, k:k + h, k:k + w] - c[:, :h, k:k + w] - c[:, k:k + h, :w] + c[:, :h, :w]
    return (s / (k * k)).repeat(2, axis=1).repeat(2, axis=2)


def tiled(image: np.ndarray, tile: int, overlap: int, model) -> np.ndarray:  # type: ignore[no-untyped-def]
    plan = plan_tiles(*image.shape[:2], tile, overlap)
    return stitch(model(cut(image, plan)), plan, 2)


def test_every_tile_has_the_same_shape_and_the_plan_covers_the_image() -> None:
    plan = plan_tiles(300, 500, 128, 16)
    assert (plan.tile_h, plan.tile_w) == (128, 128)
    assert plan.ys[0] == 0 and plan.ys[-1] == 300 - 128 and plan.xs[-1] == 500 - 128
    assert plan.cuts_y[0] == 0 and plan.cuts_y[-1] == 300 and list(plan.cuts_x) == sorted(plan.cuts_x)
    assert cut(np.zeros((300, 500, 3), np.uint8), plan).shape == (plan.count, 128, 128, 3)


def test_every_kept_pixel_has_overlap_pixels_of_context_inside_its_tile() -> None:
    for length in (129, 200, 257, 1000):
        plan = plan_tiles(length, 8, 64, 10)
        for i, start in enumerate(plan.ys):
            lo, hi = plan.cuts_y[i], plan.cuts_y[i + 1]
            assert start <= lo and hi <= start + 64
            assert lo == 0 or lo - start >= 10
            assert hi == length or start + 64 - hi >= 10


def test_an_image_smaller_than_a_tile_is_one_tile_and_tile_zero_means_no_tiling() -> None:
    assert plan_tiles(50, 40, 256, 16).count == 1
    plan = plan_tiles(3000, 2000, 0, 16)
    assert plan.count == 1 and (plan.tile_h, plan.tile_w) == (3000, 2000)
    with pytest.raises(ValueError, match="twice the overlap"):
        plan_tiles(100, 100, 32, 16)


def test_stitched_tiles_equal_the_untiled_result_when_the_overlap_covers_the_receptive_margin() -> None:
    image = photo("astronaut")[100:317, 50:390]  # odd sizes on purpose
    whole = blur_x2(image[None], radius=5)[0]
    np.testing.assert_allclose(tiled(image, 64, 5, lambda b: blur_x2(b, 5)), whole, atol=1e-9)


def test_too_little_overlap_shows_seams() -> None:
    image = photo("astronaut")[100:317, 50:390]
    whole = blur_x2(image[None], radius=5)[0]
    assert np.abs(tiled(image, 64, 2, lambda b: blur_x2(b, 5)) - whole).max() > 1.0


def test_waifu2x_tiled_equals_untiled_on_a_real_photo() -> None:
    ort = pytest.importorskip("onnxruntime")
    repository = Path(os.environ.get("VISIONGATE_TEST_REPOSITORY", ROOT / "model_repository"))
    path = repository / "waifu2x_x2" / "1" / "model.onnx"
    if not path.is_file():
        pytest.skip("waifu2x_x2 is not exported: visiongate export waifu2x_x2")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def model(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {"image": np.ascontiguousarray(batch)})[0]

    image = photo("coffee")[120:230, 200:333]  # 110 x 133
    whole = to_pixels(model(image[None])[0])
    pieces = to_pixels(tiled(image, 48, 8, model))  # 8 px covers waifu2x's 7 px margin
    diff = np.abs(pieces.astype(int) - whole.astype(int))
    assert diff.max() <= 1 and diff.mean() < 1e-3


def test_to_pixels_rounds_and_clamps_model_output() -> None:
    assert to_pixels(np.array([-3.0, 0.4, 0.6, 254.5, 300.0])).tolist() == [0, 0, 1, 254, 255]


def test_alpha_is_upscaled_and_reattached() -> None:
    alpha = np.zeros((10, 12), np.uint8)
    alpha[:, 6:] = 255
    big = upscale_alpha(alpha, 2)
    assert big.shape == (20, 24) and big[:, :10].max() == 0 and big[:, 14:].min() == 255
    rgba = attach_alpha(np.zeros((20, 24, 3), np.uint8), big)
    assert rgba.shape == (20, 24, 4) and np.array_equal(rgba[..., 3], big)
    assert attach_alpha(np.zeros((2, 2, 3), np.uint8), None).shape == (2, 2, 3)


def test_output_limit_helpers() -> None:
    assert output_fits(2000, 2000, 2, 16_000_000) and not output_fits(2001, 2000, 2, 16_000_000)
    assert max_input_pixels(16_000_000, 2) == 4_000_000 and max_input_pixels(16_000_000, 4) == 1_000_000


def test_tiles_cut_and_pasted_a_chunk_at_a_time_give_exactly_the_stitched_image() -> None:
    from visiongate.service.vision.tiles import cut, cut_range, paste, plan_tiles, stitch

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (203, 317, 3), dtype=np.uint8)
    plan = plan_tiles(203, 317, 64, 8)
    upscaled = cut(image, plan).repeat(2, axis=1).repeat(2, axis=2)  # a "model": nearest x2
    whole = stitch(upscaled, plan, 2)
    streamed = np.zeros_like(whole)
    for start in range(0, plan.count, 3):
        tiles = range(start, min(plan.count, start + 3))
        chunk = cut_range(image, plan, tiles)
        assert np.array_equal(chunk, cut(image, plan)[tiles.start:tiles.stop])
        paste(streamed, chunk.repeat(2, axis=1).repeat(2, axis=2), plan, 2, tiles)
    assert np.array_equal(streamed, whole)
