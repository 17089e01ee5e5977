"""An overloaded model's requests are refused before their bodies are read.

Against a real gateway process kept busy by real requests: a request that has sent only its
headers (its body never comes) is answered 503 + Retry-After at once, because the admission
middleware asks the model's queue before reading anything.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest

from service.backends.onnxruntime import OnnxRuntimeBackend
from service.inference import InferenceService
from service.settings import Settings
from service.shedding import model_of
from support import GatewayProcess, wait_ready


@pytest.fixture(scope="module")
def service(repository: Path) -> InferenceService:
    settings = Settings(repository=repository, inference_workers=1)
    backend = OnnxRuntimeBackend(settings)
    asyncio.run(backend.start())
    return InferenceService(backend, settings)


@pytest.mark.parametrize("path, query, model", [
    ("/v1/classify", b"", "efficientnet_lite0"),  # the task's default model
    ("/v1/classify", b"top_k=3&model=yolov3_tiny", "yolov3_tiny"),  # named (its task is checked later)
    ("/v1/detect", b"", "yolov3_tiny"),
    ("/v1/super-resolve", b"", "waifu2x_x2"),
    ("/v2/models/efficientnet_lite0/infer", b"", "efficientnet_lite0"),
    ("/v2/models/efficientnet_lite0/versions/1/infer", b"", "efficientnet_lite0"),
    ("/v1/models", b"", None),
])
def test_the_model_is_named_from_path_and_query_alone(service: InferenceService, path: str, query: bytes,
                                                      model: str | None) -> None:
    assert model_of({"path": path, "query_string": query}, service) == model


def test_an_overloaded_model_refuses_before_the_body_is_parsed_and_keeps_the_connection(
        repository: Path, chelsea_jpeg: bytes) -> None:
    # a malformed multipart body is normally a 400 from the parser; while the model is over its
    # queue budget the same request is refused first (503), so nothing was parsed
    server = GatewayProcess(repository, env={"VISIONGATE_INFERENCE_WORKERS": "1",
                                             "VISIONGATE_MAX_QUEUE_WAIT_S": "0.05"})
    malformed = {"content-type": "multipart/form-data; boundary=xyz"}
    stop = threading.Event()
    try:
        wait_ready(server.url)
        assert httpx.post(f"{server.url}/v1/classify", content=b"not multipart", headers=malformed).status_code == 400

        errors: list[BaseException] = []

        async def keep_busy() -> None:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                async def loop() -> None:
                    while not stop.is_set():
                        try:
                            r = await client.post("/v1/classify", content=chelsea_jpeg,
                                                  headers={"content-type": "image/jpeg"})
                            assert r.status_code in (200, 503), r.text
                        except BaseException as exc:  # noqa: BLE001 - reported below
                            errors.append(exc)
                            return
                await asyncio.gather(*(loop() for _ in range(16)))

        busy = threading.Thread(target=asyncio.run, args=(keep_busy(),), daemon=True)
        busy.start()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            statuses = []
            for _ in range(100):  # until one lands while the queue is over its 50 ms budget
                r = client.post("/v1/classify", content=b"not multipart", headers=malformed)
                statuses.append(r.status_code)
                if r.status_code == 503:
                    break
                time.sleep(0.01)
        assert r.status_code == 503, statuses
        assert r.json()["error"]["type"] == "Overloaded" and r.headers["retry-after"]
        stop.set()
        busy.join(30)
        # 16 pooled keep-alive clients saw answers, never a dropped connection
        assert not errors, errors[:3]
    finally:
        stop.set()
        server.stop()
