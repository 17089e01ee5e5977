"""The Python client against a real running gateway: typed results, lists, errors, retries.

Against a real gateway process serving ``FakeBackend`` (answers known in advance: a red image is
``red``, the detector boxes the bright pixels, the upscaler is nearest-neighbour x2), and once
against the real models for real predictions.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from support import FAKE, encode, free_port, running_gateway
from visiongate.service.client import (
    AsyncClient,
    BadRequestError,
    Client,
    ClientConnectionError,
    GatewayError,
    NotFoundError,
    PayloadTooLargeError,
    UnavailableError,
)
from visiongate.service.schemas import ClassifyResult, DetectResult, ModelInfo

CAT_IDS = {281, 282, 285}


def solid(r: int, g: int, b: int, fmt: str = "PNG") -> bytes:
    return encode(np.full((60, 80, 3), (r, g, b), np.uint8), fmt)


RED, GREEN, BLUE = solid(230, 10, 10), solid(10, 230, 10), solid(10, 10, 230)


def white_on_dark() -> bytes:
    """400x300, dark, a white rectangle at (100, 50)-(300, 250): the fake detector's ``bright`` box."""
    out = np.full((300, 400, 3), 60, np.uint8)
    out[50:250, 100:300] = 255
    return encode(out, "PNG")


@pytest.fixture(scope="module")
def vg(fake_gateway: str) -> Iterator[Client]:
    with Client(fake_gateway) as client:
        yield client


def test_classify_bytes_gives_a_typed_result(vg: Client) -> None:
    result = vg.classify(RED, top_k=3)
    assert isinstance(result, ClassifyResult)
    assert (result.model, result.version) == ("fake_classifier", 1)
    assert len(result.predictions) == 3
    assert (result.predictions[0].label, result.predictions[0].class_id) == ("red", 0)
    assert result.predictions[0].score > result.predictions[1].score > result.predictions[2].score


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"])
def test_the_client_names_the_image_type_of_the_bytes_it_sends(vg: Client, fmt: str) -> None:
    assert vg.classify(solid(10, 10, 230, fmt), top_k=1).predictions[0].label == "blue"  # type: ignore[union-attr]


def test_classify_a_path_and_a_list_keeps_order(vg: Client, tmp_path: Path) -> None:
    green = tmp_path / "green.png"
    green.write_bytes(GREEN)
    assert vg.classify(str(green)).predictions[0].label == "green"  # type: ignore[union-attr]
    assert vg.classify(green).predictions[0].label == "green"  # type: ignore[union-attr]
    results = vg.classify([BLUE, green, RED])
    assert isinstance(results, list)
    assert [r.predictions[0].label for r in results] == ["blue", "green", "red"]
    one = vg.classify([RED])
    assert isinstance(one, list) and len(one) == 1 and one[0].predictions[0].label == "red"


def test_an_empty_list_is_refused_before_any_request(vg: Client) -> None:
    with pytest.raises(ValueError, match="no images"):
        vg.classify([])


def test_models_lists_typed_model_info(vg: Client) -> None:
    models = {m.name: m for m in vg.models()}
    assert all(isinstance(m, ModelInfo) for m in models.values())
    assert {name: m.task for name, m in models.items()} == {
        "fake_classifier": "classify", "fake_detector": "detect", "fake_upscaler": "super_resolve"}
    assert models["fake_classifier"].input_size == [224, 224]
    assert vg.model("fake_classifier").labels == 4
    assert vg.ready()


def test_errors_carry_status_type_and_message(vg: Client) -> None:
    with pytest.raises(NotFoundError) as missing:
        vg.classify(RED, model="no_such_model")
    assert missing.value.status == 404 and missing.value.type == "ModelNotFound"
    assert "no_such_model" in missing.value.message
    with pytest.raises(NotFoundError):
        vg.model("no_such_model")
    with pytest.raises(BadRequestError) as bad:
        vg.classify(b"GIF89a but not really an image")
    assert bad.value.status == 400 and bad.value.type == "InvalidImage"
    with pytest.raises(BadRequestError) as zero_k:
        vg.classify(RED, top_k=0)
    assert zero_k.value.type == "InvalidArgument" and "top_k" in zero_k.value.message
    with pytest.raises(BadRequestError) as wrong_task:
        vg.detect(RED, model="fake_classifier")
    assert wrong_task.value.type == "WrongTask"
    assert isinstance(wrong_task.value, GatewayError)


@pytest.fixture(scope="module")
def strict_fake_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fake backend with a 10,000 pixel image limit."""
    yield from running_gateway(tmp_path_factory.mktemp("empty"),
                               {**FAKE, "VISIONGATE_MAX_IMAGE_PIXELS": "10000"})


def test_an_image_over_the_gateway_s_limit_is_payload_too_large(strict_fake_gateway: str) -> None:
    with Client(strict_fake_gateway) as client, pytest.raises(PayloadTooLargeError) as big:
        client.classify(encode(np.zeros((200, 200, 3), np.uint8), "PNG"))
    assert big.value.status == 413 and big.value.type == "ImageTooLarge" and "200x200" in big.value.message


def test_detect_gives_typed_boxes_in_the_asked_format(vg: Client) -> None:
    result = vg.detect(white_on_dark())
    assert isinstance(result, DetectResult)
    assert (result.model, result.image.width, result.image.height) == ("fake_detector", 400, 300)
    assert [d.label for d in result.detections] == ["bright", "dark"]
    np.testing.assert_allclose(result.detections[0].box, [100, 50, 300, 250], atol=0.5)
    norm = vg.detect(white_on_dark(), box_format="normalized", classes=["bright"])
    assert isinstance(norm, DetectResult) and norm.box_format == "normalized"
    assert [d.label for d in norm.detections] == ["bright"]
    np.testing.assert_allclose(norm.detections[0].box, [0.25, 1 / 6, 0.75, 5 / 6], atol=2e-3)
    strict = vg.detect(white_on_dark(), score_threshold=0.5, max_detections=5)
    assert isinstance(strict, DetectResult) and [d.label for d in strict.detections] == ["bright"]
    both = vg.detect([white_on_dark(), white_on_dark()])
    assert isinstance(both, list) and len(both) == 2


def test_super_resolve_returns_the_encoded_image_and_its_sizes(vg: Client) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (30, 45, 3), dtype=np.uint8)
    out = vg.super_resolve(encode(rgb, "PNG"))
    assert (out.model, out.version, out.scale) == ("fake_upscaler", 1, 2)
    assert (out.input_size, out.output_size) == ((45, 30), (90, 60))
    assert out.media_type == "image/png" and out.image.startswith(b"\x89PNG")
    upscaled = np.asarray(Image.open(io.BytesIO(out.image)))
    np.testing.assert_array_equal(upscaled, rgb.repeat(2, axis=0).repeat(2, axis=1))
    webp = vg.super_resolve(encode(rgb, "PNG"), image_format="webp", quality=80)
    assert webp.media_type == "image/webp" and Image.open(io.BytesIO(webp.image)).size == (90, 60)


def test_async_client_runs_requests_concurrently(fake_gateway: str) -> None:
    async def main() -> tuple[list[ClassifyResult | list[ClassifyResult]], DetectResult | list[DetectResult]]:
        async with AsyncClient(fake_gateway) as client:
            assert await client.ready()
            assert "fake_classifier" in [m.name for m in await client.models()]
            assert (await client.model("fake_detector")).task == "detect"
            assert (await client.super_resolve(RED)).output_size == (160, 120)
            with pytest.raises(NotFoundError):
                await client.classify(RED, model="no_such_model")
            labels = await asyncio.gather(*(client.classify(c) for c in [RED, GREEN, BLUE] * 4))
            return labels, await client.detect(white_on_dark())

    results, boxes = asyncio.run(main())
    assert [r.predictions[0].label for r in results] == ["red", "green", "blue"] * 4  # type: ignore[union-attr]
    assert isinstance(boxes, DetectResult) and boxes.detections[0].label == "bright"


def test_the_client_returns_real_predictions_from_real_models(gateway: str, chelsea_jpeg: bytes,
                                                              coffee_jpeg: bytes) -> None:
    with Client(gateway) as client:
        cat = client.classify(chelsea_jpeg, top_k=3)
        assert isinstance(cat, ClassifyResult) and cat.model == "efficientnet_lite0"
        assert cat.predictions[0].class_id in CAT_IDS
        found = client.detect(coffee_jpeg)
        assert isinstance(found, DetectResult) and "cup" in [d.label for d in found.detections]


def test_a_closed_port_is_a_connection_error() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", timeout_s=2) as client:
        with pytest.raises(ClientConnectionError):
            client.models()
        assert not client.ready()


class Scripted503Server:
    """A fake gateway (real HTTP, scripted answers): 503 with a Retry-After ``busy`` times, then a
    model list."""

    def __init__(self, busy: int, retry_after: str) -> None:
        self.calls: list[float] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
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
        gaps = [b - a for a, b in zip(server.calls, server.calls[1:], strict=False)]
        assert len(server.calls) == 3
        assert all(g >= 0.25 for g in gaps), gaps  # it waited before each retry
        # how long: what the server asked (1 s), capped at max_retry_wait_s (0.3 s)
        answer = httpx.Response(503, headers={"retry-after": "1"})
        assert client._wait_s(answer, attempt=0) == 0.3
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
