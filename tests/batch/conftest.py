"""Fixtures for batch scoring: folders of real photos (with some bad files), one-model repositories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support import encode, photo

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


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """Real photos in a tree, plus the bad files a real folder has."""
    root = tmp_path / "src"
    (root / "cats").mkdir(parents=True)
    (root / "kitchen" / "deep").mkdir(parents=True)
    (root / "cats" / "chelsea.jpg").write_bytes(encode(photo("chelsea"), quality=90))
    coffee = encode(photo("coffee"), quality=90)
    (root / "kitchen" / "coffee.jpg").write_bytes(coffee)
    (root / "kitchen" / "deep" / "rocket.png").write_bytes(encode(photo("rocket"), "PNG"))
    (root / "kitchen" / "deep" / "camera.webp").write_bytes(encode(photo("camera"), "WEBP"))
    (root / "truncated.jpg").write_bytes(coffee[: len(coffee) // 2])
    (root / "notes.jpg").write_bytes(b"shopping list: milk, eggs, coffee\n")
    (root / "empty.png").write_bytes(b"")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (root / "README.txt").write_text("not an image, and not named like one\n")
    (root / ".hidden.jpg").write_bytes(coffee)
    return root


@pytest.fixture(scope="session")
def classify_repo(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding only the classifier (loads in a fraction of the full one's time)."""
    return _one_model_repo(repository, tmp_path_factory, "efficientnet_lite0")


def _one_model_repo(repository: Path, factory: pytest.TempPathFactory, name: str) -> Path:
    if not (repository / name / "config.pbtxt").is_file():
        pytest.skip(f"{name} is not exported into {repository}")
    repo = factory.mktemp(f"repo-{name}")
    (repo / name).symlink_to((repository / name).resolve(), target_is_directory=True)
    return repo


@pytest.fixture(scope="session")
def detect_repo(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _one_model_repo(repository, tmp_path_factory, "yolov3_tiny")


@pytest.fixture(scope="session")
def sr_repo(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _one_model_repo(repository, tmp_path_factory, "waifu2x_x2")
