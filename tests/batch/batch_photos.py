"""Real-photo folders and record readers for batch tests (imported by name; pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from support import encode, photo
from visiongate.service.batch.ledger import chunk_files, read_chunk
from visiongate.service.batch.records import Record

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera", "motorcycle")


def photo_variants(n: int, size: int = 160) -> list[np.ndarray]:
    """``n`` distinct real-photo crops ``uint8 [size, size, 3]`` (different photos, offsets, flips)."""
    sources = [photo(name) for name in PHOTOS]
    out = []
    for i in range(n):
        img = sources[i % len(sources)]
        h, w = img.shape[:2]
        step = i // len(sources)
        y = (step * 37) % max(1, h - size)
        x = (step * 53) % max(1, w - size)
        crop = img[y:y + size, x:x + size]
        out.append(np.ascontiguousarray(crop[:, ::-1] if step % 2 else crop))
    return out


def write_jpegs(root: Path, n: int, size: int = 160, per_folder: int = 50) -> list[str]:
    """``n`` JPEG files under ``root`` in nested folders; returns their relative paths."""
    rels = []
    for i, img in enumerate(photo_variants(n, size)):
        rel = f"batch{i // per_folder:02d}/img{i:05d}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(encode(img, quality=85))
        rels.append(rel)
    return rels


def ok(record: Record) -> dict[str, Any]:
    """The result object of an ok record."""
    assert record.status == "ok" and record.result is not None, record
    return record.result


def records(dest: Path) -> dict[str, Record]:
    """Every committed record under ``dest`` by path; fails if a path was recorded twice."""
    found = [r for c in chunk_files(dest) for r in read_chunk(c)]
    assert len(found) == len({r.path for r in found}), "a path recorded twice"
    return {r.path: r for r in found}
