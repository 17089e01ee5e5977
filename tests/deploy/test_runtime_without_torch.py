"""The gateway image has no torch (nor the rest of the ``export`` extra): the ``visiongate``
commands the image and the batch Job run must start without it.

Checked in a child interpreter where those modules are made unimportable, so an import of torch
anywhere on the path of ``visiongate serve`` / ``score`` fails here, not first in the container.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# the `export` extra of pyproject.toml, by import name
EXPORT_ONLY = ("torch", "torchvision", "timm", "onnx", "safetensors", "skimage", "tqdm")

_PROBE = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # `import name` now raises ImportError
from service.cli import main
try:
    main({argv!r})
except SystemExit as exc:
    sys.exit(exc.code)
"""


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"], ["score", "--help"]],
                         ids=lambda argv: " ".join(argv))
def test_visiongate_command_line_starts_without_the_export_extra(argv: list[str]) -> None:
    pytest.importorskip("service.cli", reason="the gateway package is not importable")
    out = subprocess.run([sys.executable, "-c", _PROBE.format(blocked=EXPORT_ONLY, argv=argv)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage: visiongate" in out.stdout


def test_gateway_app_imports_without_the_export_extra() -> None:
    pytest.importorskip("service.app", reason="the gateway app is not importable")
    probe = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in EXPORT_ONLY) + \
            "import service.app, service.server\n"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
