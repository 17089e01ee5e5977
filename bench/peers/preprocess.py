"""What a user of a generic model server writes: full JPEG decode, shorter side to 256, centre 224.

Shared by every peer so they do identical work. The model is visiongate's export of
EfficientNet-Lite0 (``image: uint8 [N, 224, 224, 3]`` RGB, normalised inside the graph), so every
server runs the same ONNX graph; peers do not use the DCT-domain downscale the gateway uses.
"""

import io

import numpy as np
from PIL import Image


def preprocess(data: bytes) -> np.ndarray:
    """JPEG bytes -> ``uint8 [224, 224, 3]``."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    s = 256 / min(w, h)
    img = img.resize((round(w * s), round(h * s)), Image.BILINEAR)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    return np.asarray(img.crop((left, top, left + 224, top + 224)))


def top5(logits: np.ndarray) -> dict:
    p = np.exp(logits - logits.max())
    p /= p.sum()
    top = np.argsort(-p)[:5]
    return {"top5": [{"class_id": int(i), "score": float(p[i])} for i in top]}
