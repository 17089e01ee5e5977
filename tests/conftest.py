"""Shared fixtures: the exported model repository, real photos, a real running gateway.

Markers for scarce things skip themselves: ``gpu`` without a CUDA device, ``export`` without torch,
``triton`` without the tritonserver binary (its own fixture decides).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from support import GatewayProcess, encode, photo, wait_ready

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = ("efficientnet_lite0", "yolov3_tiny", "waifu2x_x2")
#: exported by `visiongate export --defaults` when npm can fetch its weights
OPTIONAL_MODELS = ("selfie_segmentation",)


def _has_gpu() -> bool:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_torch = importlib.util.find_spec("torch") is not None
    gpu = None
    for item in items:
        if "export" in item.keywords and not has_torch:
            item.add_marker(pytest.mark.skip(reason="needs torch: pip install -e '.[export]'"))
        if "gpu" in item.keywords:
            gpu = _has_gpu() if gpu is None else gpu
            if not gpu:
                item.add_marker(pytest.mark.skip(reason="needs an NVIDIA GPU (none on this machine)"))


@pytest.fixture(autouse=True)
def _no_grpc_port_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Apps built in a test process start no gRPC server unless the test sets a port itself."""
    if "VISIONGATE_GRPC_PORT" not in os.environ:
        monkeypatch.setenv("VISIONGATE_GRPC_PORT", "0")


#: PIL's own ``Image.open``, taken before any test module imports ultralytics
_PIL_OPEN = Image.open


@pytest.fixture(autouse=True)
def _pil_open_unpatched() -> None:
    """Importing ultralytics (export and head tests do) replaces ``PIL.Image.open`` process-wide with a wrapper
    that answers an unreadable image by trying to install pi-heif (ModuleNotFoundError) instead of raising
    UnidentifiedImageError. The gateway never imports ultralytics: every test gets PIL's own back."""
    Image.open = _PIL_OPEN


@pytest.fixture(scope="session", autouse=True)
def _own_api_key_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite's gateways read an empty key store of their own, never a developer's keys.json
    (which would turn them into 401s); tests of keys set VISIONGATE_API_KEYS_FILE themselves."""
    saved = os.environ.get("VISIONGATE_API_KEYS_FILE")
    os.environ["VISIONGATE_API_KEYS_FILE"] = str(tmp_path_factory.mktemp("keys") / "keys.json")
    yield
    if saved is None:
        os.environ.pop("VISIONGATE_API_KEYS_FILE", None)
    else:
        os.environ["VISIONGATE_API_KEYS_FILE"] = saved


@pytest.fixture(scope="session")
def repository() -> Path:
    """The project's model repository with the default models exported (exports them if missing)."""
    repo = Path(os.environ.get("VISIONGATE_TEST_REPOSITORY", ROOT / "model_repository"))
    missing = [m for m in DEFAULT_MODELS if not (repo / m / "config.pbtxt").is_file()]
    if missing:
        if importlib.util.find_spec("torch") is None:
            pytest.skip(f"end-to-end test on real models: {repo} lacks {missing}; run "
                        "`visiongate export --defaults` (needs the export extra)")
        subprocess.run([sys.executable, "-m", "visiongate.service.cli", "export", "--missing-only", "--no-progress",
                        "--repository", str(repo), *missing], check=True)
    return repo


@pytest.fixture(scope="session")
def chelsea_jpeg() -> bytes:
    return encode(photo("chelsea"), quality=92)


@pytest.fixture(scope="session")
def coffee_jpeg() -> bytes:
    return encode(photo("coffee"), quality=92)


@pytest.fixture(scope="session")
def gateway(repository: Path) -> Iterator[str]:
    """Base URL of a real gateway (uvicorn, httptools) serving the default models."""
    server = GatewayProcess(repository)
    try:
        wait_ready(server.url)
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fake_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real gateway process serving ``FakeBackend``'s deterministic models: for tests
    of HTTP behaviour (errors, limits, admission, deadlines) that need no model files or torch."""
    server = GatewayProcess(tmp_path_factory.mktemp("empty-repository"), env={"VISIONGATE_BACKEND": "fake"})
    try:
        wait_ready(server.url)
        yield server.url
    finally:
        server.stop()
