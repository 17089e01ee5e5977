"""The gateway runs without torch: serving a request must not import it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_serving_a_request_imports_no_torch(repository: Path, chelsea_jpeg: bytes, tmp_path: Path) -> None:
    image = tmp_path / "chelsea.jpg"
    image.write_bytes(chelsea_jpeg)
    script = f"""
import sys
from starlette.testclient import TestClient
from visiongate.service.app import create_app
from visiongate.service.settings import Settings
with TestClient(create_app(Settings(repository={str(repository)!r}))) as client:
    r = client.post("/v1/classify", content=open({str(image)!r}, "rb").read(),
                    headers={{"content-type": "image/jpeg"}})
    assert r.status_code == 200, r.text
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "timm", "export"))
print(heavy)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
