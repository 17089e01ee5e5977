"""Helpers for tests: real photos, encoders, a real gateway process. Imported as ``support``."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

#: the environment of a gateway that serves ``FakeBackend`` (deterministic models, no model files)
FAKE = {"VISIONGATE_BACKEND": "fake"}


def photo(name: str) -> np.ndarray:
    """A real photograph bundled with scikit-image, RGB uint8."""
    from skimage import data

    img = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def encode(rgb: np.ndarray, fmt: str = "JPEG", **save: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **save)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout_s: float = 60.0, path: str = "/readyz") -> None:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url + path, timeout=2)
            if r.status_code == 200:
                return
            last = r.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url}{path} not ready after {timeout_s}s (last: {last})")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the gateway drains), then SIGKILL if it is still there after 20 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class GatewayProcess:
    """A real `visiongate serve` process on a free port."""

    def __init__(self, repository: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # gRPC off unless a test asks for it (VISIONGATE_GRPC_PORT in env): one port per process
        full_env = {**os.environ, "VISIONGATE_LOG_LEVEL": "warning", "VISIONGATE_GRPC_PORT": "0", **(env or {})}
        # the log goes to a file: a pipe nobody reads fills up and stalls a chatty gateway
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - open for the gateway's whole life, read and closed on stop
        self._text = ""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "visiongate.service.cli", "serve", "--no-export", "--port", str(self.port),
             "--repository", str(repository)],
            env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def stop(self) -> str:
        """Stop the gateway (SIGTERM, then SIGKILL after 20 s) and return everything it logged."""
        stop_process(self.proc)
        if not self._log.closed:
            with self._log:
                self._log.seek(0)
                self._text = self._log.read().decode(errors="replace")
        return self._text


def running_gateway(repository: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """A generator for fixtures: yields the URL of a real gateway, stops it afterwards."""
    server = GatewayProcess(repository, env=env)
    try:
        wait_ready(server.url)
        yield server.url
    finally:
        server.stop()


async def run_model(backend: Any, model: str, inputs: dict[str, np.ndarray],
                    version: int | None = None) -> dict[str, np.ndarray]:
    """One request through a backend's contract: admitted as a whole, then run."""
    items = int(next(iter(inputs.values())).shape[0])
    with backend.admit(model, version, items) as ticket:
        return await backend.infer(ticket, inputs)  # type: ignore[no-any-return]
