"""The KServe SDK and perf_analyzer, unmodified, against a real gateway (FakeBackend's models).

Both live in their own environments, being heavy or pinned; a test skips with the command that
installs its tool when it is absent (``deploy/install.sh --test`` installs both):

- KServe SDK: ``python3.11 -m venv /tmp/venv-kserve && /tmp/venv-kserve/bin/pip install kserve``
- perf_analyzer: the ``tritonclient==2.51.0`` wheel is the last that ships the binary and runs on
  glibc 2.36; it needs ``libb64.so.0d`` (Debian ``libb64-0d``) and ``libcudart.so.12`` (PyPI
  ``nvidia-cuda-runtime-cu12``, no GPU needed).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import Gateway

KSERVE_PYTHON = Path(os.environ.get("VISIONGATE_KSERVE_PYTHON", "/tmp/venv-kserve/bin/python"))
PERF_VENV = Path(os.environ.get("VISIONGATE_PERF_ANALYZER_VENV", "/tmp/venv-perf"))
PERF_ANALYZER = PERF_VENV / "bin" / "perf_analyzer"
KSERVE_INSTALL = "python3.11 -m venv /tmp/venv-kserve && /tmp/venv-kserve/bin/pip install kserve"
PERF_INSTALL = ("apt-get install libb64-0d && python3.11 -m venv /tmp/venv-perf && "
                "/tmp/venv-perf/bin/pip install 'tritonclient[all]==2.51.0' nvidia-cuda-runtime-cu12")


def _has_kserve() -> bool:
    return KSERVE_PYTHON.is_file() and subprocess.run(
        [str(KSERVE_PYTHON), "-c", "import kserve"], capture_output=True, timeout=120).returncode == 0


def test_kserve_sdk_rest_and_grpc_clients(fake_gateway: Gateway) -> None:
    if not _has_kserve():
        pytest.skip(f"the KServe SDK is not installed: {KSERVE_INSTALL}")
    script = Path(__file__).parent / "clients" / "kserve_sdk_client.py"
    done = subprocess.run([str(KSERVE_PYTHON), str(script), fake_gateway.http_url, fake_gateway.grpc_url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["rest"] == got["grpc"] == [[10.0, 0.0, 0.0, 5.0]]
    assert got["grpc_live"] and got["grpc_ready"] and got["grpc_model_ready"]
    assert got["grpc_id"] == "kserve-1"


def _perf_env() -> dict[str, str]:
    libs = next(PERF_VENV.glob("lib/python3*/site-packages/nvidia/cuda_runtime/lib"), None)
    return {**os.environ, "LD_LIBRARY_PATH": f"{libs}:{os.environ.get('LD_LIBRARY_PATH', '')}"}


@pytest.mark.slow
@pytest.mark.parametrize("transport", [["-i", "grpc"], ["-i", "grpc", "--streaming"], ["-i", "http"]],
                         ids=["grpc", "grpc-streaming", "http"])
def test_perf_analyzer_measures_the_gateway(fake_gateway: Gateway, transport: list[str]) -> None:
    if not PERF_ANALYZER.is_file():
        pytest.skip(f"perf_analyzer is not installed: {PERF_INSTALL}")
    url = fake_gateway.http_host if "http" in transport else fake_gateway.grpc_url
    done = subprocess.run([str(PERF_ANALYZER), "-m", "fake_classifier", *transport, "-u", url, "-b", "2",
                           "--concurrency-range", "2", "--measurement-mode", "count_windows",
                           "--measurement-request-count", "40",
                           # a shared CPU is never "stable": accept any three windows (no speed is asserted)
                           "--stability-percentage", "1000", "--max-trials", "10"],
                          capture_output=True, text=True, timeout=120, env=_perf_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Throughput:" in done.stdout
    # the statistics extension gives perf_analyzer the server-side split of each request's time
    assert "compute infer" in done.stdout, done.stdout
