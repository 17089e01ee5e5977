"""A client that goes away stops its request's work (counted as 499, not as a server error)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from support import GatewayProcess, encode, photo, wait_ready


@pytest.fixture(scope="module")
def slow_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fake backend with every image costing 0.3 s, one model thread (the detector batches 4)."""
    server = GatewayProcess(tmp_path_factory.mktemp("repo"), env={
        "VISIONGATE_BACKEND": "fake", "VISIONGATE_FAKE_ITEM_DELAY_S": "0.3", "VISIONGATE_INFERENCE_WORKERS": "1",
        "VISIONGATE_MAX_QUEUE_WAIT_S": "30"})
    try:
        wait_ready(server.url)
        yield server.url
    finally:
        server.stop()


def _inferred(url: str) -> int:
    stats = httpx.get(f"{url}/v2/models/fake_detector/stats").json()["model_stats"][0]
    return int(stats["inference_count"])


def test_a_client_that_leaves_stops_its_remaining_images(slow_gateway: str, tmp_path: Path) -> None:
    jpeg = encode(photo("coffee"))
    body = b"".join(b'--b\r\ncontent-disposition: form-data; name="file"; filename="%d.jpg"\r\n'
                    b"content-type: image/jpeg\r\n\r\n" % i + jpeg + b"\r\n" for i in range(8)) + b"--b--\r\n"
    parts = urlsplit(slow_gateway)
    before = _inferred(slow_gateway)
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(b"POST /v1/detect?model=fake_detector HTTP/1.1\r\nhost: x\r\n"
                     b"content-type: multipart/form-data; boundary=b\r\n"
                     b"content-length: %d\r\n\r\n" % len(body) + body)
        time.sleep(0.2)  # the first images are in the model (0.3 s each, one at a time)
    time.sleep(3.0)  # long enough for all 8 (2.4 s) had the work gone on
    done = _inferred(slow_gateway) - before
    assert done == 4, f"{done} of 8 images were run; the second batch should have been dropped"
    metrics = httpx.get(f"{slow_gateway}/metrics").text
    assert 'visiongate_requests_total{route="/v1/detect",status="499"} 1.0' in metrics
    # and the gateway serves normally afterwards
    r = httpx.post(f"{slow_gateway}/v1/classify?model=fake_classifier", content=jpeg,
                   headers={"content-type": "image/jpeg"}, timeout=30)
    assert r.status_code == 200
