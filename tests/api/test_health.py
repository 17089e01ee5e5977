"""Liveness, readiness, the model list and Prometheus metrics."""

from __future__ import annotations

from pathlib import Path

import httpx

from support import GatewayProcess, wait_ready


def test_live_and_ready_when_models_are_loaded(gateway: str) -> None:
    assert httpx.get(f"{gateway}/healthz").json()["status"] == "ok"
    ready = httpx.get(f"{gateway}/readyz")
    assert ready.status_code == 200 and "efficientnet_lite0" in ready.json()["models"]


def test_models_lists_task_versions_and_input_size(gateway: str) -> None:
    body = httpx.get(f"{gateway}/v1/models").json()
    assert body["backend"] == "onnxruntime"
    lite0 = next(m for m in body["models"] if m["name"] == "efficientnet_lite0")
    assert lite0["task"] == "classify" and lite0["versions"] and lite0["input_size"] == [224, 224]
    assert lite0["labels"] == 1000 and lite0["parameters"]["resize"] == "center_crop"
    assert lite0["parity"]["passed"] is True and lite0["parity"]["top1_agreement"] == 1.0  # the export's proof
    one = httpx.get(f"{gateway}/v1/models/efficientnet_lite0").json()
    assert one["name"] == "efficientnet_lite0"
    assert httpx.get(f"{gateway}/v1/models/nope").status_code == 404


def test_metrics_count_requests_latencies_and_batch_sizes(gateway: str, chelsea_jpeg: bytes) -> None:
    httpx.post(f"{gateway}/v1/classify", content=chelsea_jpeg, headers={"content-type": "image/jpeg"})
    text = httpx.get(f"{gateway}/metrics").text
    assert 'visiongate_requests_total{route="/v1/classify",status="200"}' in text
    assert "visiongate_request_seconds_bucket" in text
    assert 'visiongate_batch_size_count{model="efficientnet_lite0"}' in text


def test_not_ready_with_an_empty_repository_but_still_live(tmp_path: Path) -> None:
    server = GatewayProcess(tmp_path)
    try:
        wait_ready(server.url, path="/healthz")
        r = httpx.get(f"{server.url}/readyz")
        assert r.status_code == 503 and r.headers["retry-after"]
        assert r.json()["status"] == "not ready"
    finally:
        server.stop()


def test_openapi_documents_the_endpoints_and_their_errors(gateway: str) -> None:
    spec = httpx.get(f"{gateway}/openapi.json").json()
    classify = spec["paths"]["/v1/classify"]["post"]
    assert {"400", "404", "413", "415", "503"} <= set(classify["responses"])
    assert "multipart/form-data" in classify["requestBody"]["content"]
    assert "image/jpeg" in classify["requestBody"]["content"]


def test_cors_is_off_unless_origins_are_configured(repository: Path) -> None:
    from starlette.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    preflight = {"origin": "https://ui.example", "access-control-request-method": "POST"}
    with TestClient(create_app(Settings(repository=repository))) as client:
        assert "access-control-allow-origin" not in client.options("/v1/classify", headers=preflight).headers
    with TestClient(create_app(Settings(repository=repository, cors_origins=["https://ui.example"]))) as client:
        r = client.options("/v1/classify", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://ui.example"
