"""Photographs for the proofs: scikit-image's bundled ones (offline), or the user's own (``--images DIR``)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

#: name -> loader; every one of these is bundled inside the scikit-image wheel
PHOTO_NAMES = ("chelsea", "coffee", "astronaut", "rocket", "camera", "motorcycle")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
#: at most this many of a user's photos are used (sorted by name): a proof, not an evaluation
MAX_USER_PHOTOS = 32


@dataclass(frozen=True)
class Photo:
    """One proof photo as the gateway would receive it: encoded bytes."""

    name: str
    data: bytes


def photo(name: str) -> np.ndarray:
    """RGB ``uint8 [H, W, 3]``."""
    from skimage import data

    img = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()  # type: ignore[no-untyped-call]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def photo_jpeg(name: str, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo(name)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def builtin_photos(names: tuple[str, ...] = PHOTO_NAMES) -> tuple[Photo, ...]:
    return tuple(Photo(n, photo_jpeg(n)) for n in names)


def user_photos(directory: Path, limit: int = MAX_USER_PHOTOS) -> tuple[Photo, ...]:
    """The image files in ``directory`` (not recursive), sorted by name, at most ``limit``.

    Raises:
        ValueError: not a directory, or no image files in it.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"--images {directory}: not a directory")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"--images {directory}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return tuple(Photo(p.name, p.read_bytes()) for p in files[:limit])
