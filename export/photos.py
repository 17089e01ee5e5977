"""Real photographs for parity checks: the ones scikit-image ships (they load offline)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

#: name -> loader; every one of these is bundled inside the scikit-image wheel
PHOTO_NAMES = ("chelsea", "coffee", "astronaut", "rocket", "camera", "motorcycle")


def photo(name: str) -> np.ndarray:
    """RGB ``uint8 [H, W, 3]``."""
    from skimage import data

    if name == "motorcycle":
        img = data.stereo_motorcycle()[0]
    else:
        img = getattr(data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def photo_jpeg(name: str, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo(name)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
