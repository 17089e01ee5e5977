"""The gateway image has no torch (nor the rest of the ``export`` extra): the ``visiongate``
commands the image and the batch Job run must start without it.

Checked in a child interpreter where those modules are made unimportable, so an import of torch
anywhere on the path of ``visiongate serve`` / ``score`` fails here, not first in the container.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# the `export` extra of pyproject.toml, by import name
EXPORT_ONLY = ("torch", "torchvision", "timm", "onnx", "safetensors", "skimage", "tqdm")

_PROBE = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # `import name` now raises ImportError
from visiongate.service.cli import main
try:
    main({argv!r})
except SystemExit as exc:
    sys.exit(exc.code)
"""


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"], ["score", "--help"]],
                         ids=lambda argv: " ".join(argv))
def test_visiongate_command_line_starts_without_the_export_extra(argv: list[str]) -> None:
    pytest.importorskip("visiongate.service.cli", reason="the gateway package is not importable")
    out = subprocess.run([sys.executable, "-c", _PROBE.format(blocked=EXPORT_ONLY, argv=argv)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage: visiongate" in out.stdout


def test_gateway_app_imports_without_the_export_extra() -> None:
    pytest.importorskip("visiongate.service.app", reason="the gateway app is not importable")
    probe = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in EXPORT_ONLY) + \
            "import visiongate.service.app, service.server\n"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_visiongate_serve_becomes_ready_without_the_export_extra() -> None:
    """What the image's CMD does, on the exported repository the image gets mounted at /models."""
    pytest.importorskip("visiongate.service.cli", reason="the gateway package is not importable")
    repository = REPO / "model_repository"
    if not any(repository.glob("*/config.pbtxt")):
        pytest.skip("no exported model repository (visiongate export --defaults)")
    port = _free_port()
    probe = _PROBE.format(blocked=EXPORT_ONLY, argv=["serve", "--repository", str(repository),
                                                      "--host", "127.0.0.1", "--port", str(port)])
    server = subprocess.Popen([sys.executable, "-c", probe], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"serve exited: {server.communicate()[0][-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                    assert response.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "not ready within 60 s"
                time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=60)[0]
    # uvicorn re-raises the SIGTERM after its graceful shutdown
    assert server.returncode in (0, -signal.SIGTERM), output[-3000:]
    assert "Application shutdown complete" in output
