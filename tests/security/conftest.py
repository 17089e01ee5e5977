"""Fixtures for the security tests: a one-model repository (fast to load) and key stores."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def lite_repository(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The exported repository's EfficientNet-Lite0 alone (linked, read-only), so servers start fast."""
    repo = tmp_path_factory.mktemp("lite-repository")
    (repo / "efficientnet_lite0").symlink_to(repository / "efficientnet_lite0", target_is_directory=True)
    return repo


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "config" / "keys.json"
