"""Several uvicorn worker processes (VISIONGATE_HTTP_WORKERS) serve the same models and stop on SIGTERM."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from support import GatewayProcess, wait_ready


def test_two_http_workers_answer_and_shut_down_cleanly(repository: Path, chelsea_jpeg: bytes) -> None:
    server = GatewayProcess(repository, env={"VISIONGATE_HTTP_WORKERS": "2", "VISIONGATE_LOG_LEVEL": "info"})
    try:
        wait_ready(server.url)
        for _ in range(4):
            r = httpx.post(f"{server.url}/v1/classify", content=chelsea_jpeg,
                           headers={"content-type": "image/jpeg"}, params={"top_k": 1}, timeout=60)
            assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "tabby"
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) in (0, -signal.SIGTERM)
    finally:
        log = server.stop()
    assert log.count("Application startup complete") == 2  # one per worker process
