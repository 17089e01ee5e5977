"""Real gateway processes serving gRPC next to REST, for tests with the real Triton/KServe clients.

``VISIONGATE_BACKEND=fake`` (FakeBackend's deterministic models, no model files) for protocol tests;
the exported efficientnet_lite0 for the end-to-end logits test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import GatewayProcess, free_port, wait_ready


@dataclass(frozen=True)
class Gateway:
    http_url: str  # http://127.0.0.1:<port>
    grpc_url: str  # 127.0.0.1:<port>, as tritonclient.grpc takes it
    http_host: str  # 127.0.0.1:<port>, as tritonclient.http takes it


def start_gateway(repository: Path | str, **env: str) -> Iterator[Gateway]:
    grpc_port = free_port()
    server = GatewayProcess(Path(repository), env={"VISIONGATE_GRPC_PORT": str(grpc_port), **env})
    try:
        wait_ready(server.url)
        yield Gateway(server.url, f"127.0.0.1:{grpc_port}", server.url.removeprefix("http://"))
    finally:
        log = server.stop()
        assert "Traceback" not in log, log


@pytest.fixture(scope="session")
def fake_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway serving FakeBackend's models over REST and gRPC (model control: none)."""
    yield from start_gateway(tmp_path_factory.mktemp("empty-repo"), VISIONGATE_BACKEND="fake")
