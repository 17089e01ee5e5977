"""Segmentation outputs -> masks in the caller's original pixels, and the formats people use.

Everything takes and returns numpy arrays; nothing here knows about HTTP or backends.

- ``to_original``: per-class score maps over the network input ``[C, h, w]`` -> the same maps over
  the original (EXIF-upright) image, through the inverse of the ``Placement`` the boxes use
  (letterbox, centre crop or stretch). Each map is resampled once by Pillow (bilinear, in C), from
  exactly the part of the map that covers the image, so padding never leaks in.
- ``class_map``: the arg-max class per original pixel, one class at a time (memory: two maps).
- ``instance_masks``: YOLOv8-seg style ``sigmoid(coefficients @ prototypes)``, cropped to each
  box and resampled only inside the box.
- COCO RLE (column-major run lengths, compressed string as pycocotools writes it), polygons
  (pixel-corner outlines, outer rings), PNG, and an overlay with a legend.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .draw import PALETTE, _font
from .preprocess import Placement

# --- placement inverse ---------------------------------------------------------------------------


def map_box(
    placement: Placement,
    input_hw: tuple[int, int],
    map_hw: tuple[int, int],
    region: tuple[int, int, int, int] | None = None,
) -> tuple[float, float, float, float]:
    """The rectangle of a map ``[h, w]`` over a network input ``input_hw`` that covers ``region``
    (x0, y0, x1, y1 in original pixels; default the whole image), in map pixel units."""
    ow, oh = placement.original_size
    x0, y0, x1, y1 = region if region is not None else (0, 0, ow, oh)
    fx, fy = map_hw[1] / input_hw[1], map_hw[0] / input_hw[0]
    return (
        (placement.offset_x + x0 * placement.scale_x) * fx,
        (placement.offset_y + y0 * placement.scale_y) * fy,
        (placement.offset_x + x1 * placement.scale_x) * fx,
        (placement.offset_y + y1 * placement.scale_y) * fy,
    )


def resample(
    score_map: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]
) -> np.ndarray:
    """``float32 [h, w]`` -> ``float32 [size[1], size[0]]``: the ``box`` of the map, bilinear.

    Where the box reaches past the map (a centre crop did not show the model those pixels), the
    nearest edge values are repeated.
    """
    img = Image.fromarray(np.ascontiguousarray(score_map, dtype=np.float32), mode="F")
    x0, y0, x1, y1 = box
    h, w = score_map.shape
    if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        return np.array(img.resize(size, Image.Resampling.BILINEAR, box=box))
    out_w, out_h = size
    cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))
    left = min(out_w - 1, max(0, round((cx0 - x0) / (x1 - x0) * out_w)))
    top = min(out_h - 1, max(0, round((cy0 - y0) / (y1 - y0) * out_h)))
    right = max(left + 1, min(out_w, round((cx1 - x0) / (x1 - x0) * out_w)))
    bottom = max(top + 1, min(out_h, round((cy1 - y0) / (y1 - y0) * out_h)))
    inner = np.array(
        img.resize((right - left, bottom - top), Image.Resampling.BILINEAR, box=(cx0, cy0, cx1, cy1))
    )
    return np.pad(inner, ((top, out_h - bottom), (left, out_w - right)), mode="edge")


def to_original(maps: np.ndarray, placement: Placement, input_hw: tuple[int, int]) -> np.ndarray:
    """``[C, h, w]`` maps over the network input -> ``float32 [C, H, W]`` over the original image."""
    box = map_box(placement, input_hw, maps.shape[1:3])
    return np.stack([resample(m, box, placement.original_size) for m in maps])


def class_map(maps: np.ndarray, placement: Placement, input_hw: tuple[int, int]) -> np.ndarray:
    """Arg-max class of each original pixel, ``uint8 [H, W]`` (``uint16`` past 256 classes).

    ``maps [C, h, w]``: scores, probabilities or logits (any monotonic measure per pixel).
    """
    box = map_box(placement, input_hw, maps.shape[1:3])
    size = placement.original_size
    dtype = np.uint8 if maps.shape[0] <= 256 else np.uint16
    if maps.shape[0] == 2:  # the common binary case: one comparison of the difference
        return (resample(maps[1] - maps[0], box, size) > 0).astype(dtype)
    best = resample(maps[0], box, size)
    ids = np.zeros(best.shape, dtype)
    for c in range(1, maps.shape[0]):
        score = resample(maps[c], box, size)
        better = score > best
        ids[better] = c
        np.maximum(best, score, out=best)
    return ids


def class_fractions(ids: np.ndarray, num_classes: int) -> np.ndarray:
    """``[num_classes]`` share of the pixels of each class in a class map."""
    if num_classes <= 16:  # a compare per class beats bincount's cast of every pixel to intp (0.09 vs 0.6 ms)
        counts = np.array([np.count_nonzero(ids == c) for c in range(num_classes)], np.int64)
    else:
        counts = np.bincount(ids.ravel(), minlength=num_classes)[:num_classes]
    return counts / max(ids.size, 1)


def inside_boxes(size: tuple[int, int], boxes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """``bool [H, W]``: the pixels inside any of ``boxes [K, 4]`` (xyxy, original pixels), each box
    grown by ``margin`` of its width/height on every side and clipped to the image ``size (w, h)``."""
    w, h = size
    keep = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in np.asarray(boxes, np.float64).reshape(-1, 4):
        dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
        c0, r0 = max(int(np.floor(x0 - dx)), 0), max(int(np.floor(y0 - dy)), 0)
        c1, r1 = min(int(np.ceil(x1 + dx)), w), min(int(np.ceil(y1 + dy)), h)
        keep[r0:r1, c0:c1] = True
    return keep


def gate_class(ids: np.ndarray, class_id: int, allowed: np.ndarray, background: int) -> None:
    """In place: pixels of ``class_id`` outside ``allowed`` become ``background``."""
    ids[(ids == class_id) & ~allowed] = background


def softmax(maps: np.ndarray, axis: int = 0) -> np.ndarray:
    e = np.exp(maps - maps.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)  # type: ignore[no-any-return]


# --- instance masks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceMask:
    """A mask that is False outside ``box``: ``crop bool [y1 - y0, x1 - x0]`` at ``(x0, y0)``
    of an image ``size`` (width, height) in original pixels."""

    crop: np.ndarray
    x0: int
    y0: int
    size: tuple[int, int]

    def full(self) -> np.ndarray:
        """``bool [H, W]`` over the whole image."""
        w, h = self.size
        out = np.zeros((h, w), dtype=bool)
        out[self.y0 : self.y0 + self.crop.shape[0], self.x0 : self.x0 + self.crop.shape[1]] = self.crop
        return out

    @property
    def area(self) -> int:
        return int(self.crop.sum())


def pixel_box(box: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """xyxy float box (original pixels) -> the integer pixel rectangle it touches, inside the image."""
    w, h = size
    x0, y0 = int(np.clip(np.floor(box[0]), 0, w)), int(np.clip(np.floor(box[1]), 0, h))
    x1, y1 = int(np.clip(np.ceil(box[2]), x0, w)), int(np.clip(np.ceil(box[3]), y0, h))
    return x0, y0, x1, y1


def instance_masks(
    coefficients: np.ndarray,
    prototypes: np.ndarray,
    boxes: np.ndarray,
    placement: Placement,
    input_hw: tuple[int, int],
    threshold: float = 0.5,
) -> list[InstanceMask]:
    """YOLOv8-seg masks: ``coefficients [K, P]`` x ``prototypes [P, h, w]`` -> per instance the
    sigmoid mask resampled to original pixels inside its box (``boxes [K, 4]`` xyxy, original
    pixels), thresholded. Outside the box the mask is empty, as in YOLOv8."""
    if len(coefficients) == 0:
        return []
    p, h, w = prototypes.shape
    logits = (coefficients.astype(np.float32) @ prototypes.reshape(p, -1).astype(np.float32)).reshape(
        -1, h, w
    )
    cut = float(np.log(threshold / (1 - threshold)))  # sigmoid(x) > t  <=>  x > logit(t)
    out = []
    for k, box in enumerate(boxes):
        x0, y0, x1, y1 = pixel_box(box, placement.original_size)
        if x1 <= x0 or y1 <= y0:
            out.append(InstanceMask(np.zeros((0, 0), bool), x0, y0, placement.original_size))
            continue
        region = map_box(placement, input_hw, (h, w), (x0, y0, x1, y1))
        crop = resample(logits[k], region, (x1 - x0, y1 - y0)) > cut
        # the box itself, in crop pixels: pixel centres inside it
        xs = np.arange(x0, x1) + 0.5
        ys = np.arange(y0, y1) + 0.5
        crop &= ((ys >= box[1]) & (ys <= box[3]))[:, None] & ((xs >= box[0]) & (xs <= box[2]))[None, :]
        out.append(InstanceMask(crop, x0, y0, placement.original_size))
    return out


def pasted_masks(
    masks: np.ndarray,
    placement: Placement,
    input_hw: tuple[int, int],
    boxes: np.ndarray,
    threshold: float = 0.5,
) -> list[InstanceMask]:
    """Masks already pasted over the network input (Mask R-CNN style, ``[K, h, w]`` probabilities)
    -> the same ``InstanceMask`` crops as ``instance_masks``."""
    out = []
    for k, box in enumerate(boxes):
        x0, y0, x1, y1 = pixel_box(box, placement.original_size)
        if x1 <= x0 or y1 <= y0:
            out.append(InstanceMask(np.zeros((0, 0), bool), x0, y0, placement.original_size))
            continue
        region = map_box(placement, input_hw, masks.shape[1:3], (x0, y0, x1, y1))
        out.append(
            InstanceMask(
                resample(masks[k], region, (x1 - x0, y1 - y0)) > threshold, x0, y0, placement.original_size
            )
        )
    return out


# --- COCO RLE ------------------------------------------------------------------------------------


def rle_counts(mask: InstanceMask) -> np.ndarray:
    """COCO run lengths of a mask (column-major, starting with a run of zeros), from its crop only:
    the cost follows the box, not the image."""
    w, h = mask.size
    crop = mask.crop
    ch, cw = crop.shape
    if crop.size == 0 or not crop.any():
        return np.asarray([w * h], dtype=np.int64)
    cols = np.zeros((cw, ch + 2), dtype=np.int8)  # a False above and below every column
    cols[:, 1:-1] = crop.T
    flat = cols.ravel()
    change = np.flatnonzero(np.diff(flat)) + 1  # first index of each new run, rises and falls alternate
    col, row = np.divmod(change, ch + 2)
    at = (mask.x0 + col).astype(np.int64) * h + (mask.y0 + row - 1)
    starts, ends = at[0::2], at[1::2]
    joined = ends[:-1] == starts[1:]  # a run reaching the bottom continues at the top of the next column
    starts = starts[np.concatenate([[True], ~joined])]
    ends = ends[np.concatenate([~joined, [True]])]
    bounds = np.empty(2 * len(starts) + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, w * h
    bounds[1:-1:2], bounds[2:-1:2] = starts, ends
    counts = np.diff(bounds)
    return counts[:-1] if counts[-1] == 0 else counts  # pycocotools ends on the last run of ones


def counts_to_string(counts: Sequence[int] | np.ndarray) -> str:
    """pycocotools' compressed RLE string: deltas against the count two back, 5 bits per char."""
    out = []
    values = [int(c) for c in counts]
    for i, x in enumerate(values):
        if i > 2:
            x -= values[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def string_to_counts(text: str) -> list[int]:
    """Inverse of ``counts_to_string``.

    Raises:
        ValueError: a character outside the alphabet, or a truncated last number.
    """
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            if p >= len(text):
                raise ValueError("RLE string ends inside a number")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"RLE string has an invalid character {text[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode_rle(mask: InstanceMask | np.ndarray, compressed: bool = True) -> dict[str, Any]:
    """COCO RLE ``{"size": [h, w], "counts": str | list[int]}`` of an ``InstanceMask`` or a
    ``bool [H, W]`` array."""
    if isinstance(mask, np.ndarray):
        mask = InstanceMask(mask.astype(bool), 0, 0, (mask.shape[1], mask.shape[0]))
    counts = rle_counts(mask)
    w, h = mask.size
    return {"size": [h, w], "counts": counts_to_string(counts) if compressed else counts.tolist()}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE -> ``bool [h, w]``.

    Raises:
        ValueError: the counts do not add up to h * w, or the string is malformed.
    """
    h, w = (int(v) for v in rle["size"])
    raw = rle["counts"]
    counts = np.asarray(string_to_counts(raw) if isinstance(raw, str) else raw, dtype=np.int64)
    if (counts < 0).any() or int(counts.sum()) != h * w:
        raise ValueError(f"RLE counts add up to {int(counts.sum())}, not {h}x{w} = {h * w}")
    flat = np.repeat(np.arange(len(counts)) % 2 == 1, counts)
    return flat.reshape(w, h).T


# --- polygons ------------------------------------------------------------------------------------

#: directions of boundary edges: right, down, left, up (y grows downwards)
_STEPS = ((1, 0), (0, 1), (-1, 0), (0, -1))


def _boundary_edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directed pixel-side edges between the mask and its outside, clockwise around the mask
    (foreground on the right): start x, start y, direction index into ``_STEPS``."""
    m = np.pad(mask.astype(bool), 1)
    inner = m[1:-1, 1:-1]
    ys, xs, ds = [], [], []
    for d, (dy, dx, sx, sy) in enumerate(((-1, 0, 0, 0), (0, 1, 1, 0), (1, 0, 1, 1), (0, -1, 0, 1))):
        # d: 0 top side (goes right), 1 right side (down), 2 bottom side (left), 3 left side (up)
        neighbour = m[1 + dy : m.shape[0] - 1 + dy, 1 + dx : m.shape[1] - 1 + dx]
        y, x = np.nonzero(inner & ~neighbour)
        ys.append(y + sy)
        xs.append(x + sx)
        ds.append(np.full(len(y), d))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ds)


def _trace(mask: np.ndarray) -> list[np.ndarray]:
    """Closed rings ``[n, 2]`` (x, y pixel corners), corners only; where two regions touch at a
    corner the walk turns right, so diagonal neighbours stay separate rings."""
    xs, ys, ds = _boundary_edges(mask)
    width = mask.shape[1] + 2
    key = ys.astype(np.int64) * width + xs
    outgoing: dict[int, list[int]] = {}
    for i, k in enumerate(key.tolist()):
        outgoing.setdefault(k, []).append(i)
    used = np.zeros(len(key), dtype=bool)
    dirs = ds.tolist()
    rings = []
    for first in range(len(key)):
        if used[first]:
            continue
        corners: list[tuple[int, int]] = []
        e = first
        x, y = int(xs[e]), int(ys[e])
        d = dirs[e]
        while not used[e]:
            used[e] = True
            d = dirs[e]
            x, y = x + _STEPS[d][0], y + _STEPS[d][1]
            options = [o for o in outgoing.get(y * width + x, []) if not used[o]]
            if not options:
                break
            nxt = min(options, key=lambda o: (d - dirs[o] + 1) % 4)  # right turn, straight, left
            if dirs[nxt] != d:
                corners.append((x, y))
            e = nxt
        if dirs[first] != d:  # back at the start, which is a corner too
            corners.append((x, y))
        if len(corners) >= 3:
            rings.append(np.asarray(corners, dtype=np.float64))
    return rings


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2


def _simplify(ring: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker on a closed ring (kept closed, at least 3 corners)."""
    if tolerance <= 0 or len(ring) <= 4:
        return ring
    far = int(np.argmax(np.hypot(*(ring - ring[0]).T)))  # split the ring at its farthest corner
    keep = np.zeros(len(ring), dtype=bool)
    keep[[0, far]] = True
    closed = np.vstack([ring, ring[:1]])
    stack = [(0, far), (far, len(ring))]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        p, q = closed[a], closed[b]
        seg = q - p
        pts = closed[a + 1 : b] - p
        length = float(np.hypot(*seg))
        dist = np.abs(seg[0] * pts[:, 1] - seg[1] * pts[:, 0]) / length if length else np.hypot(*pts.T)
        i = int(np.argmax(dist))
        if dist[i] > tolerance:
            keep[a + 1 + i] = True
            stack += [(a, a + 1 + i), (a + 1 + i, b)]
    out = ring[keep]
    return out if len(out) >= 3 else ring


def polygons(
    mask: InstanceMask | np.ndarray, tolerance: float = 1.0, min_area: float = 1.0
) -> list[list[float]]:
    """Outer outlines of a mask as COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` in original
    pixels (pixel corners: a lone pixel at (x, y) is the square (x, y)-(x+1, y+1)), simplified to
    within ``tolerance`` pixels, biggest first. Holes are not described (COCO polygons cannot)."""
    if isinstance(mask, np.ndarray):
        crop, x0, y0 = mask.astype(bool), 0, 0
    else:
        crop, x0, y0 = mask.crop, mask.x0, mask.y0
    if crop.size == 0 or not crop.any():
        return []
    outer = [(r, a) for r in _trace(crop) if (a := _signed_area(r)) >= min_area]
    outer.sort(key=lambda ra: -ra[1])
    result = []
    for ring, _ in outer:
        simple = _simplify(ring, tolerance) + np.asarray([x0, y0], dtype=np.float64)
        result.append([round(float(v), 2) for v in simple.ravel()])
    return result


# --- PNG and overlay -----------------------------------------------------------------------------


def png_bytes(pixels: np.ndarray) -> bytes:
    """A 2-D ``uint8`` (or ``uint16``) array, or ``bool``, as a single-channel PNG."""
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    img = Image.fromarray(pixels) if pixels.dtype == np.uint8 else Image.fromarray(pixels.astype(np.uint16))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def png_base64(pixels: np.ndarray) -> str:
    return base64.b64encode(png_bytes(pixels)).decode("ascii")


def read_png(data: bytes) -> np.ndarray:
    """A single-channel PNG back to its array (tests and clients)."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img)


def colour(class_id: int) -> tuple[int, int, int]:
    return PALETTE[int(class_id) % len(PALETTE)]


def overlay(
    pixels: np.ndarray,
    layers: Sequence[tuple[np.ndarray | InstanceMask, int]],
    legend: Sequence[tuple[str, int]],
    alpha: float = 0.5,
) -> np.ndarray:
    """The photo with masks blended in (``alpha`` of the class colour) and a legend in the corner.

    ``layers``: (mask ``bool [H, W]`` or an ``InstanceMask``, class id) painted in order;
    ``legend``: (text, class id) lines. Returns a new ``uint8 [H, W, 3]``.
    """
    out = pixels[..., :3].astype(np.float32)  # a copy
    for mask, cid in layers:
        if isinstance(mask, InstanceMask):
            crop = mask.crop
            view = out[mask.y0 : mask.y0 + crop.shape[0], mask.x0 : mask.x0 + crop.shape[1]]
        else:
            crop, view = mask, out
        if crop.size:
            view[crop] = view[crop] * (1 - alpha) + np.asarray(colour(cid), np.float32) * alpha
    img = Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))
    if legend:
        _draw_legend(img, legend)
    return np.asarray(img)


def _draw_legend(img: Image.Image, legend: Sequence[tuple[str, int]]) -> None:
    w, h = img.size
    size = max(10, round(min(w, h) / 40))
    font = _font(size)
    draw = ImageDraw.Draw(img, "RGBA")
    pad = max(2, size // 4)
    lines = [(text, cid, draw.textbbox((0, 0), text, font=font)) for text, cid in legend]
    line_h = max(b[3] - b[1] for _, _, b in lines) + pad
    box_w = max(b[2] - b[0] for _, _, b in lines) + line_h + 3 * pad
    draw.rectangle((0, 0, box_w, line_h * len(lines) + pad), fill=(0, 0, 0, 160))
    for i, (text, cid, b) in enumerate(lines):
        top = pad + i * line_h
        draw.rectangle((pad, top, pad + line_h - pad, top + line_h - pad), fill=(*colour(cid), 255))
        draw.text((2 * pad + line_h - b[0], top - b[1]), text, fill=(255, 255, 255, 255), font=font)
