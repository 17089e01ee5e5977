"""Fixtures for backend tests: a real tritonserver (from the nvidia-pytriton wheel) serving copies
of the exported models through its python backend. Tests that use them carry ``@pytest.mark.triton``
and skip, saying why, where the binary is not installed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from triton_server import (
    TritonInstall,
    TritonNotInstalled,
    TritonServer,
    find_install,
    python_repository,
    running_triton,
)


@pytest.fixture(scope="session")
def triton_install() -> TritonInstall:
    try:
        return find_install()
    except TritonNotInstalled as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def triton_repository(triton_install: TritonInstall, repository: Path,
                      tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The exported models as python-backend models (model_repository/ itself stays onnxruntime_onnx)."""
    dest = tmp_path_factory.mktemp("triton") / "repo"
    served = python_repository(repository, dest)
    assert "efficientnet_lite0" in served
    return dest


@pytest.fixture(scope="session")
def triton(triton_install: TritonInstall, triton_repository: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """One running Triton for the session, shared by the tests that leave it alone."""
    yield from running_triton(triton_repository, tmp_path_factory.mktemp("triton-run"), triton_install)


@pytest.fixture
def spare_triton(triton_install: TritonInstall, triton_repository: Path,
                 tmp_path: Path) -> Iterator[TritonServer]:
    """A Triton of the test's own, on reserved ports, not started: for killing and restarting."""
    server = TritonServer(triton_repository, tmp_path, triton_install)
    try:
        yield server
    finally:
        server.stop()
