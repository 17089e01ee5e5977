"""Fixtures for batch scoring: folders of real photos (with some bad files), one-model repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import encode, photo


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


def _triton_helpers():
    """tests/backends/triton_server.py, loaded by path (that folder is not on sys.path from here)."""
    import importlib.util
    import sys

    name = "triton_server"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parent.parent / "backends" / "triton_server.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def triton_classifier(repository: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real tritonserver (nvidia-pytriton's binary, python backend) serving the classifier."""
    helpers = _triton_helpers()
    try:
        install = helpers.find_install()
    except helpers.TritonNotInstalled as exc:
        pytest.skip(str(exc))
    work = tmp_path_factory.mktemp("batch-triton")
    helpers.python_repository(repository, work / "repo", models=["efficientnet_lite0"])
    yield from helpers.running_triton(work / "repo", work, install)
