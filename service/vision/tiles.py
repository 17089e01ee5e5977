"""Cutting an image into equal, overlapping tiles for super-resolution, and stitching the results.

Every tile has the same shape (so tiles batch), ``tile`` pixels on a side (or the whole side when
the image is smaller). Neighbouring tiles share at least ``2 * overlap`` pixels; stitching keeps,
for each output pixel, the tile whose centre part holds it (crop-centre stitching, no blending).
So each kept pixel saw at least ``overlap`` input pixels of real context on every side that is not
an image border. When ``overlap`` covers the network's receptive margin the tiled result equals
the untiled one up to float rounding: there is no seam to hide.

Coordinates: input pixels; outputs are ``scale`` times larger.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class TilePlan:
    """Tile origins along each axis and the shape every tile has.

    ``ys``/``xs``: top/left input coordinates of the tile rows/columns; ``cuts_y``/``cuts_x``: the
    input coordinates where the kept part switches from one tile to the next (length ``len(ys) + 1``,
    from 0 to the image size).
    """

    height: int
    width: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    cuts_y: tuple[int, ...]
    cuts_x: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)


def _axis(length: int, tile: int, overlap: int) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """Origins, cut points and tile length along one axis."""
    if tile <= 0 or length <= tile:
        return (0,), (0, length), length
    step = tile - 2 * overlap
    starts = [*range(0, length - tile, step), length - tile]
    cuts = [0]
    for a, b in itertools.pairwise(starts):
        # the middle of the shared span leaves both tiles >= overlap px of context
        cuts.append((b + a + tile) // 2)
    cuts.append(length)
    return tuple(starts), tuple(cuts), tile


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> TilePlan:
    """Plan tiles of ``tile`` px (``0``: one tile, the whole image) sharing ``overlap`` px of context.

    Raises:
        ValueError: ``tile`` is positive but not larger than ``2 * overlap``.
    """
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    if tile > 0 and tile <= 2 * overlap:
        raise ValueError(f"tile ({tile}) must be larger than twice the overlap ({overlap})")
    ys, cuts_y, th = _axis(height, tile, overlap)
    xs, cuts_x, tw = _axis(width, tile, overlap)
    return TilePlan(height, width, th, tw, ys, xs, cuts_y, cuts_x)


def cut(image: np.ndarray, plan: TilePlan) -> np.ndarray:
    """``image [H, W, C]`` -> tiles ``[T, tile_h, tile_w, C]`` in row-major order."""
    return np.stack([image[y:y + plan.tile_h, x:x + plan.tile_w] for y in plan.ys for x in plan.xs])


def cut_range(image: np.ndarray, plan: TilePlan, tiles: range) -> np.ndarray:
    """Tiles ``tiles`` (indices in row-major order) of ``image`` -> ``[len(tiles), tile_h, tile_w, C]``:
    a few at a time, so a large image never holds all its tiles (and their outputs) at once."""
    cols = len(plan.xs)
    return np.stack([image[plan.ys[t // cols]:plan.ys[t // cols] + plan.tile_h,
                           plan.xs[t % cols]:plan.xs[t % cols] + plan.tile_w] for t in tiles])


def paste(out: np.ndarray, outputs: np.ndarray, plan: TilePlan, scale: int, tiles: range) -> None:
    """Write the kept (centre) part of each output tile of ``tiles`` into ``out [H*scale, W*scale, C]``:
    the same pixels ``stitch`` keeps, tile by tile, so the result is identical."""
    cols = len(plan.xs)
    for k, t in enumerate(tiles):
        i, j = divmod(t, cols)
        y, x = plan.ys[i], plan.xs[j]
        y0, y1 = plan.cuts_y[i], plan.cuts_y[i + 1]
        x0, x1 = plan.cuts_x[j], plan.cuts_x[j + 1]
        out[y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
            outputs[k, (y0 - y) * scale:(y1 - y) * scale, (x0 - x) * scale:(x1 - x) * scale]


def stitch(tiles: np.ndarray, plan: TilePlan, scale: int) -> np.ndarray:
    """Model outputs ``[T, tile_h*scale, tile_w*scale, C]`` -> the image ``[H*scale, W*scale, C]``."""
    out = np.empty((plan.height * scale, plan.width * scale, tiles.shape[-1]), dtype=tiles.dtype)
    t = 0
    for i, y in enumerate(plan.ys):
        y0, y1 = plan.cuts_y[i], plan.cuts_y[i + 1]
        for j, x in enumerate(plan.xs):
            x0, x1 = plan.cuts_x[j], plan.cuts_x[j + 1]
            out[y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                tiles[t, (y0 - y) * scale:(y1 - y) * scale, (x0 - x) * scale:(x1 - x) * scale]
            t += 1
    return out


def to_pixels(output: np.ndarray) -> np.ndarray:
    """SR model output (float 0..255, any shape) -> ``uint8``, rounded and clamped."""
    pixels: np.ndarray = np.clip(np.rint(output), 0, 255).astype(np.uint8)
    return pixels


def upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    """``alpha uint8 [H, W]`` -> ``[H*scale, W*scale]`` with Pillow bicubic (alpha needs no network)."""
    h, w = alpha.shape
    return np.asarray(Image.fromarray(alpha).resize((w * scale, h * scale), Image.Resampling.BICUBIC))


def attach_alpha(rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """``rgb [H, W, 3]`` + ``alpha [H, W]`` -> ``[H, W, 4]``; no alpha: ``rgb`` unchanged."""
    if alpha is None:
        return rgb
    return np.concatenate([rgb, alpha[..., None]], axis=2)


def max_input_pixels(max_output_pixels: int, scale: int) -> int:
    """The largest input (in pixels) whose ``scale``-times output stays within the limit."""
    return max_output_pixels // (scale * scale)


def output_fits(width: int, height: int, scale: int, max_output_pixels: int) -> bool:
    return width * scale * height * scale <= max_output_pixels
