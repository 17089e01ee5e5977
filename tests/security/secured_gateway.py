"""A real gateway process with keys, TLS, request logs and tracing installed (``serve_secured.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from support import free_port, stop_process
from visiongate.service.security.keys import make_entry, new_key, read_file, write_file

ROOT = Path(__file__).resolve().parents[2]


def add_key(store: Path, name: str, scopes: str = "infer,read", **limits: float) -> str:
    """A new key in ``store`` (hash only, as `visiongate keys create` does); returns the key."""
    key = new_key()
    write_file(store, [*read_file(store), make_entry(name, key, scopes.split(","), **limits)])
    return key


class SecuredGateway:
    def __init__(self, repository: Path, log: Path, env: dict[str, str] | None = None,
                 scheme: str = "http") -> None:
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.log = log
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "VISIONGATE_PORT": str(self.port),
                    "VISIONGATE_REPOSITORY": str(repository), "VISIONGATE_LOG_LEVEL": "info", **(env or {})}
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("serve_secured.py"))],
                                     env=full_env, stdout=self._out, stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_ready(self, timeout_s: float = 60.0, **client: Any) -> None:
        deadline = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited with {self.proc.returncode}: {self.output()}")
            try:
                r = httpx.get(self.url + "/readyz", timeout=2, **client)
                if r.status_code == 200:
                    return
                last = r.status_code
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.1)
        raise TimeoutError(f"{self.url} not ready after {timeout_s}s (last: {last}): {self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> str:
        stop_process(self.proc)
        self._out.close()
        return self.output()
