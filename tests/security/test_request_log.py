"""Structured request logs from a real gateway: one JSON line per request with its id, key name,
route, model, status and timings; the X-Request-ID echoed; never a key or image bytes in the log."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from secured_gateway import SecuredGateway, add_key

from visiongate.service.request_log import JsonFormatter, log_request


@pytest.fixture(scope="module")
def logged(lite_repository: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SecuredGateway, str]]:
    store = tmp_path_factory.mktemp("keys") / "keys.json"
    key = add_key(store, "web")
    server = SecuredGateway(lite_repository, tmp_path_factory.mktemp("log") / "gateway.log",
                            env={"VISIONGATE_API_KEYS_FILE": str(store), "VISIONGATE_LOG_FORMAT": "json"})
    try:
        server.wait_ready()
        yield server, key
    finally:
        server.stop()


def request_line(server: SecuredGateway, request_id: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """The request's log line (written just after its answer was sent)."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = [json.loads(line) for line in server.output().splitlines() if line.strip()]
        found = [x for x in lines
                 if x["logger"] == "visiongate.request" and x.get("request_id") == request_id]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, f"{len(found)} lines for request {request_id}"
            return found[0]
        time.sleep(0.05)


def test_every_log_line_is_json_and_each_request_gets_one(logged: tuple[SecuredGateway, str],
                                                          chelsea_jpeg: bytes) -> None:
    server, key = logged
    r = httpx.post(server.url + "/v1/classify?model=efficientnet_lite0", content=chelsea_jpeg, timeout=30,
                   headers={"Content-Type": "image/jpeg", "Authorization": f"Bearer {key}",
                            "X-Request-ID": "order-42.cam-7"})
    assert r.status_code == 200 and r.headers["X-Request-ID"] == "order-42.cam-7"
    line = request_line(server, "order-42.cam-7")
    assert line["key"] == "web" and line["route"] == "/v1/classify" and line["method"] == "POST"
    assert line["status"] == 200 and line["model"] == "efficientnet_lite0" and line["total_ms"] > 0
    assert line["level"] == "info" and line["time"].endswith("+00:00")
    text = server.output()
    assert key not in text and "JFIF" not in text  # the key and the image never reach the log
    for raw in text.splitlines():  # uvicorn's own lines are JSON too
        json.loads(raw)


def test_a_request_id_is_generated_when_missing_or_unsafe_and_refusals_are_logged(
        logged: tuple[SecuredGateway, str]) -> None:
    server, _ = logged
    made = httpx.get(server.url + "/v1/models")
    assert made.status_code == 401
    generated = made.headers["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    unsafe = httpx.get(server.url + "/v1/models", headers={"X-Request-ID": "a b<script>" + "x" * 200})
    assert unsafe.headers["X-Request-ID"] != "a b<script>" + "x" * 200
    line = request_line(server, generated)
    assert line["status"] == 401 and "key" not in line and line["route"] == "unmatched"


def test_a_callers_traceparent_names_the_trace_in_the_log_line(logged: tuple[SecuredGateway, str]) -> None:
    server, key = logged
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {key}",
                                                       "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    line = request_line(server, r.headers["X-Request-ID"])
    assert line["trace_id"] == trace_id and line["status"] == 200


def test_the_batch_scorer_writes_the_same_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="visiongate.request"):
        log_request("score", "ok", model="efficientnet_lite0", version="1", images=8, infer_ms=41.5,
                    total_ms=60.2, shard="0/4")
    line = json.loads(JsonFormatter().format(caplog.records[-1]))
    assert line["route"] == "score" and line["status"] == "ok" and line["images"] == 8
    assert line["model"] == "efficientnet_lite0" and line["shard"] == "0/4" and len(line["request_id"]) == 32
