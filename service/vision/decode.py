"""Bytes -> RGB ``uint8`` array ``[H, W, 3]``, with limits checked before any pixel is decoded.

Only the formats named by the caller are opened (Pillow's ``formats=``): every other Pillow
decoder (EPS, which runs Ghostscript, and a dozen rarer ones) stays unreachable from a request.
EXIF orientation is applied. Every Pillow mode becomes RGB the same way every time: alpha is
composited over white, 16/32-bit integer images are scaled down from their full range, float images
are read as [0, 1]. For JPEG the decoder may downscale in the DCT domain (``draft``) when the caller
says how small the image may get, which measured 3-5x cheaper than a full decode.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: the formats decoded unless the caller names others (Pillow's format names)
DEFAULT_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
_TIFF_BITS_PER_SAMPLE, _TIFF_SAMPLE_FORMAT = 258, 339
_BOMB_SIZE = re.compile(r"\((\d+) pixels\)")

#: The modes a decoded image may carry alpha in
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class DecodeError(ValueError):
    """The bytes are not a readable image (empty, unknown format, truncated, corrupt)."""


class TooManyPixels(ValueError):
    """The image header declares more pixels than allowed."""

    def __init__(self, width: int, height: int, limit: int, pixels: int | None = None) -> None:
        if width:
            text = f"image is {width}x{height} = {width * height} pixels; the limit is {limit} pixels"
        elif pixels is not None and pixels > limit:
            text = f"image is {pixels} pixels; the limit is {limit} pixels"
        else:
            # the caller's limit is above Pillow's own decompression-bomb guard, which still refuses
            size = f"{pixels} pixels" if pixels is not None else "its size"
            text = f"image is refused by the decoder's decompression-bomb guard ({size}), whatever the limit"
        super().__init__(text)
        self.width, self.height, self.limit = width, height, limit


class DecodedImage:
    """``rgb`` is ``uint8 [H, W, 3]``; ``alpha`` is ``uint8 [H, W]`` when the source had one.

    ``original_size`` is (width, height) of the upright image before any DCT downscaling, so boxes
    can be mapped back to the caller's pixels.

    An 8-bit RGB decode keeps Pillow's image and makes the ``rgb`` array only when it is asked
    for: resizing straight from the Pillow image skips an array round trip per request
    (measured: about 0.3 ms of a 12.6 ms classify on one core). ``pixels`` is whichever exists.
    """

    __slots__ = ("_image", "_rgb", "alpha", "format", "original_size")

    def __init__(self, rgb: np.ndarray | None = None, original_size: tuple[int, int] = (0, 0),
                 alpha: np.ndarray | None = None, format: str | None = None,
                 image: Image.Image | None = None) -> None:
        if (rgb is None) == (image is None):
            raise ValueError("give exactly one of rgb (an array) or image (an RGB Pillow image)")
        if image is not None and image.mode != "RGB":
            raise ValueError(f"image must be RGB, not {image.mode}")
        self._rgb, self._image = rgb, image
        self.original_size, self.alpha, self.format = original_size, alpha, format

    @property
    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            assert self._image is not None
            self._rgb = np.ascontiguousarray(np.asarray(self._image))
        return self._rgb

    @property
    def pixels(self) -> np.ndarray | Image.Image:
        """The decoded pixels in whatever form exists: the Pillow image, else the array."""
        return self._image if self._image is not None else self._rgb  # type: ignore[return-value]


def open_image(data: bytes, max_pixels: int, formats: Sequence[str] = DEFAULT_FORMATS) -> Image.Image:
    """Open lazily (only ``formats``) and check the pixel limit from the header alone."""
    if not data:
        raise DecodeError("the body is empty; send image bytes")
    try:
        img = Image.open(io.BytesIO(data), formats=list(formats))
    # Pillow's own bomb guard fires above ~89 MP (an error past 2x that, a warning below, raised as
    # an error where warnings are errors); both mean "too many pixels". Filters are process-global,
    # so they are not touched here (decoding runs on many threads).
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = _BOMB_SIZE.search(str(exc))
        raise TooManyPixels(0, 0, max_pixels, int(found.group(1)) if found else None) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError) as exc:
        raise DecodeError("the body is not an image in a format we can read "
                          f"({', '.join(formats)})") from exc
    width, height = img.size
    if width * height > max_pixels:
        raise TooManyPixels(width, height, max_pixels)
    if width == 0 or height == 0:
        raise DecodeError("the image has no pixels")
    return img


def _to_rgb(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    alpha = None
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.uint16)
        return np.repeat((arr >> 8).astype(np.uint8)[..., None], 3, axis=2), None
    if img.mode == "I":
        return np.repeat(_scale_int32(img)[..., None], 3, axis=2), None
    if img.mode == "F":
        arr = np.clip(np.nan_to_num(np.asarray(img, dtype=np.float32)), 0.0, 1.0)
        grey = np.round(arr * 255.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2), None
    if img.mode in _ALPHA_MODES:
        rgba = np.asarray(img.convert("RGBA"))
        alpha = rgba[..., 3].copy()
        a = alpha[..., None].astype(np.uint16)
        rgb = ((rgba[..., :3].astype(np.uint16) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)
        return rgb, alpha
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img), None


def _scale_int32(img: Image.Image) -> np.ndarray:
    """A mode "I" image to ``uint8 [H, W]``, from the full range of the bits the file declares.

    PNG 16-bit greyscale opens as "I" holding 0..65535; a 32-bit TIFF holds int32 (SampleFormat 2)
    or uint32 (SampleFormat 1, which Pillow stores wrapped into int32).
    """
    arr = np.asarray(img)
    tags = getattr(img, "tag_v2", None)
    if tags is not None and _first(tags.get(_TIFF_BITS_PER_SAMPLE)) == 32:
        if _first(tags.get(_TIFF_SAMPLE_FORMAT)) == 2:
            signed: np.ndarray = (np.clip(arr, 0, None) >> 23).astype(np.uint8)
            return signed
        unsigned: np.ndarray = (arr.astype(np.int32).view(np.uint32) >> 24).astype(np.uint8)
        return unsigned
    scaled: np.ndarray = (np.clip(arr, 0, 65535) >> 8).astype(np.uint8)
    return scaled


def _first(value: object) -> object:
    """A TIFF tag's first value (Pillow gives per-sample tags as tuples)."""
    return value[0] if isinstance(value, tuple) and value else value


#: given the upright (width, height), the smallest (width, height) the decoder may shrink to
ShrinkLimit = Callable[[int, int], tuple[int, int] | None]


def decode(data: bytes, max_pixels: int, shrink_limit: ShrinkLimit | None = None,
           keep_alpha: bool = False, formats: Sequence[str] = DEFAULT_FORMATS) -> DecodedImage:
    """Decode image bytes.

    ``shrink_limit``: lets the decoder shrink a JPEG in the DCT domain as long as the upright
    result stays at least as large as it says; ``None`` always decodes at full size.
    ``formats``: the Pillow formats that may be opened (others are a ``DecodeError``).
    """
    img = open_image(data, max_pixels, formats)
    fmt = img.format
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block should not cost the image
        orientation = 1
    full_size: tuple[int, int] | None = None  # known before loading only where a shrink needs it
    limit = None
    if shrink_limit is not None and fmt == "JPEG":
        upright = _upright_size(img.size, orientation)
        limit = shrink_limit(*upright)
    if limit is not None:
        full_size = upright
        need_w, need_h = limit
        if orientation in (5, 6, 7, 8):
            need_w, need_h = need_h, need_w
        img.draft("RGB", (max(1, need_w), max(1, need_h)))
    try:
        img.load()  # truncated files fail here (Pillow's LOAD_TRUNCATED_IMAGES stays False)
        # TIFF applies its orientation itself while loading (and drops the tag); exif_transpose
        # then reads orientation 1 and leaves the pixels alone
        if orientation != 1:
            img = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DecodeError(f"the image could not be decoded (truncated or corrupt): {exc}") from exc
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    # Without a DCT shrink the loaded, transposed image is the upright original: its size is the
    # truth, whatever the format did with the orientation tag.
    full_w, full_h = full_size if full_size is not None else img.size
    if img.mode == "RGB":  # the common case (JPEG): stay a Pillow image until an array is needed
        return DecodedImage(image=img, original_size=(full_w, full_h), format=fmt)
    rgb, alpha = _to_rgb(img)
    return DecodedImage(rgb=np.ascontiguousarray(rgb), original_size=(full_w, full_h),
                        alpha=alpha if keep_alpha else None, format=fmt)


def _upright_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """(width, height) once a JPEG's EXIF orientation is applied (5-8 turn it by 90 degrees)."""
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size
