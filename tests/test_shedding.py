"""An overloaded model's requests are refused before their bodies are read.

Against a real gateway process (the fake backend, each image costing 20 ms) kept busy by real requests:
a request that has sent only its headers (its body never comes) is answered 503 + Retry-After at once,
because the admission middleware asks the model's queue before reading anything.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest
from starlette.routing import Match

from support import GatewayProcess, wait_ready
from visiongate.service.api.routing import RouteTable, _flatten
from visiongate.service.app import create_app
from visiongate.service.settings import Settings

FAKE = {"VISIONGATE_BACKEND": "fake"}


@pytest.mark.parametrize("method, path, query, task, model, version", [
    ("POST", "/v1/classify", b"", "classify", None, None),  # the task's default model, chosen later
    ("POST", "/v1/classify", b"top_k=3&model=yolov3_tiny", "classify", "yolov3_tiny", None),
    ("POST", "/v1/detect", b"", "detect", None, None),
    ("POST", "/v1/super-resolve", b"", "super_resolve", None, None),
    ("POST", "/v2/models/efficientnet_lite0/infer", b"", None, "efficientnet_lite0", None),
    ("POST", "/v2/models/efficientnet_lite0/versions/2/infer", b"", None, "efficientnet_lite0", 2),
])
def test_the_target_is_named_from_path_and_query_by_the_app_s_own_routes(
        method: str, path: str, query: bytes, task: str | None, model: str | None, version: int | None) -> None:
    app = create_app(Settings(backend="fake"))
    target = RouteTable(lambda: app.router.routes).target(
        {"type": "http", "method": method, "path": path, "query_string": query})
    assert target is not None
    assert (target.task, target.model, target.version) == (task, model, version)


@pytest.mark.parametrize("method, path", [("GET", "/v1/models"), ("GET", "/healthz"), ("GET", "/metrics"),
                                          ("GET", "/v2/models/m"), ("POST", "/v2/repository/index"),
                                          ("GET", "/v1/classify"), ("POST", "/nowhere")])
def test_routes_that_run_no_model_are_never_shed(method: str, path: str) -> None:
    app = create_app(Settings(backend="fake"))
    assert RouteTable(lambda: app.router.routes).target(
        {"type": "http", "method": method, "path": path, "query_string": b""}) is None


def test_every_post_route_that_runs_a_model_is_known_to_admission() -> None:
    """A new or renamed inference route is found by admission without any list to update."""
    app = create_app(Settings(backend="fake"))
    table = RouteTable(lambda: app.router.routes)
    runs_a_model = [r for r in _flatten(app.router.routes)
                    if getattr(r, "path", "").endswith(("/infer", "/classify", "/detect", "/super-resolve"))]
    assert len(runs_a_model) >= 5
    for route in runs_a_model:
        path = route.path.replace("{model}", "m").replace("{version}", "1")  # type: ignore[attr-defined]
        scope = {"type": "http", "method": "POST", "path": path, "query_string": b""}
        assert route.matches(scope)[0] == Match.FULL
        assert table.target(scope) is not None, path


def test_an_overloaded_model_refuses_before_the_body_is_parsed_and_keeps_the_connection(
        tmp_path: Path, chelsea_jpeg: bytes) -> None:
    # a malformed multipart body is normally a 400 from the parser; while the model is over its
    # queue budget the same request is refused first (503), so nothing was parsed
    server = GatewayProcess(tmp_path, env={**FAKE, "VISIONGATE_FAKE_ITEM_DELAY_S": "0.02",
                                           "VISIONGATE_INFERENCE_WORKERS": "1", "VISIONGATE_MAX_QUEUE_WAIT_S": "0.05"})
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
                        except BaseException as exc:
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
