"""Model outputs -> answers: class probabilities and top-k (detection and SR live beside this)."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """``[..., C]`` float -> probabilities over the last axis (float64 for a stable sum)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def top_k(probs: np.ndarray, k: int) -> list[tuple[int, float]]:
    """``probs [C]`` -> the k best ``(class_id, probability)``, best first, ties by lower id."""
    k = max(0, min(k, probs.shape[-1]))
    if k == 0:
        return []
    idx = np.argpartition(-probs, k - 1)[:k] if k < probs.shape[-1] else np.arange(probs.shape[-1])
    idx = idx[np.lexsort((idx, -probs[idx]))]
    return [(int(i), float(probs[i])) for i in idx]
