"""The Python client against a real running gateway: typed results, lists, errors, retries."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from service.client import (AsyncClient, BadRequestError, Client, ClientConnectionError, GatewayError,
                            NotFoundError, UnavailableError)
from service.schemas import ClassifyResult, DetectResult
from support import encode, free_port, photo

CAT_IDS = {281, 282, 285}
ESPRESSO = 967


@pytest.fixture(scope="module")
def vg(gateway: str) -> Iterator[Client]:
    with Client(gateway) as client:
        yield client


def served(vg: Client, task: str) -> str:
    names = [m.name for m in vg.models() if m.task == task]
    if not names:
        pytest.skip(f"no {task} model in the test repository")
    return names[0]


def test_classify_bytes_gives_a_typed_result(vg: Client, chelsea_jpeg: bytes) -> None:
    result = vg.classify(chelsea_jpeg, top_k=3)
    assert isinstance(result, ClassifyResult)
    assert len(result.predictions) == 3
    assert result.predictions[0].class_id in CAT_IDS
    assert result.model == "efficientnet_lite0" and result.version == 1


def test_classify_a_path_and_a_list_keeps_order(vg: Client, tmp_path: Path, chelsea_jpeg: bytes,
                                                coffee_jpeg: bytes) -> None:
    cat = tmp_path / "chelsea.jpg"
    cat.write_bytes(chelsea_jpeg)
    assert vg.classify(str(cat)).predictions[0].class_id in CAT_IDS
    results = vg.classify([coffee_jpeg, cat])
    assert [r.predictions[0].class_id in CAT_IDS for r in results] == [False, True]
    assert results[0].predictions[0].class_id == ESPRESSO
    one = vg.classify([coffee_jpeg])
    assert isinstance(one, list) and len(one) == 1


def test_models_lists_typed_model_info(vg: Client) -> None:
    models = {m.name: m for m in vg.models()}
    assert models["efficientnet_lite0"].task == "classify"
    assert models["efficientnet_lite0"].input_size == [224, 224]
    assert vg.model("efficientnet_lite0").labels == 1000
    assert vg.ready()


def test_errors_carry_status_type_and_message(vg: Client, chelsea_jpeg: bytes) -> None:
    with pytest.raises(NotFoundError) as missing:
        vg.classify(chelsea_jpeg, model="no_such_model")
    assert missing.value.status == 404 and missing.value.type == "ModelNotFound"
    assert "no_such_model" in missing.value.message
    with pytest.raises(BadRequestError) as bad:
        vg.classify(b"GIF89a but not really an image")
    assert bad.value.status == 400 and bad.value.type == "InvalidImage"
    with pytest.raises(BadRequestError) as big_k:
        vg.classify(chelsea_jpeg, top_k=0)
    assert big_k.value.type == "InvalidArgument"
    assert isinstance(big_k.value, GatewayError)


def test_detect_finds_the_cup_in_coffee(vg: Client, coffee_jpeg: bytes) -> None:
    model = served(vg, "detect")
    result = vg.detect(coffee_jpeg, model=model)
    assert isinstance(result, DetectResult)
    assert result.image.width == 600 and result.image.height == 400
    assert "cup" in [d.label for d in result.detections]


def test_super_resolve_doubles_the_size(vg: Client) -> None:
    model = served(vg, "super_resolve")
    small = encode(photo("chelsea")[::4, ::4].copy(), "PNG")  # 113x75
    out = vg.super_resolve(small, model=model)
    assert out.media_type == "image/png" and out.image.startswith(b"\x89PNG")
    assert out.input_size == (113, 75)
    assert out.output_size == (113 * out.scale, 75 * out.scale) and out.scale >= 2


def test_async_client_runs_requests_concurrently(gateway: str, chelsea_jpeg: bytes,
                                                 coffee_jpeg: bytes) -> None:
    async def main() -> list[ClassifyResult]:
        async with AsyncClient(gateway) as client:
            assert await client.ready()
            assert "efficientnet_lite0" in [m.name for m in await client.models()]
            return await asyncio.gather(client.classify(chelsea_jpeg), client.classify(coffee_jpeg))

    cat, cup = asyncio.run(main())
    assert cat.predictions[0].class_id in CAT_IDS and cup.predictions[0].class_id == ESPRESSO


def test_a_closed_port_is_a_connection_error() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", timeout_s=2) as client:
        with pytest.raises(ClientConnectionError):
            client.models()
        assert not client.ready()


class Scripted503Server:
    """A fake gateway (real HTTP, scripted answers): 503 with a Retry-After ``busy`` times, then a model list."""

    def __init__(self, busy: int, retry_after: str) -> None:
        self.calls: list[float] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                outer.calls.append(time.monotonic())
                if len(outer.calls) <= busy:
                    body = json.dumps({"error": {"type": "Overloaded", "message": "queue full"}}).encode()
                    self.send_response(503)
                    self.send_header("Retry-After", retry_after)
                else:
                    body = json.dumps({"backend": "onnxruntime", "models": []}).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_503_is_retried_after_the_asked_delay_fake_server() -> None:
    server = Scripted503Server(busy=2, retry_after="1")
    try:
        with Client(server.url, max_retries=3, max_retry_wait_s=0.3) as client:
            assert client.models() == []
        gaps = [b - a for a, b in zip(server.calls, server.calls[1:])]
        assert len(server.calls) == 3
        assert all(0.25 <= g < 0.9 for g in gaps), gaps  # asked 1 s, capped at 0.3 s
    finally:
        server.close()


def test_503_past_the_retries_raises_unavailable_fake_server() -> None:
    server = Scripted503Server(busy=10, retry_after="0")

    async def main() -> None:
        async with AsyncClient(server.url, max_retries=2) as client:
            await client.models()

    try:
        with pytest.raises(UnavailableError) as err:
            asyncio.run(main())
        assert err.value.status == 503 and err.value.type == "Overloaded" and err.value.retry_after_s == 0
        assert len(server.calls) == 3  # the first try and two retries
    finally:
        server.close()
