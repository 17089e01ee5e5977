"""Liveness, readiness, the model list, Prometheus metrics, OpenAPI and CORS.

On a real gateway process serving ``FakeBackend`` (no model files); the export's parity proof on
the real exported models.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.testclient import TestClient

from support import GatewayProcess, encode, photo, wait_ready
from visiongate.service.app import create_app
from visiongate.service.settings import Settings

FAKE_MODELS = ["fake_classifier", "fake_detector", "fake_upscaler"]


def test_live_and_ready_when_models_are_loaded(fake_gateway: str) -> None:
    live = httpx.get(f"{fake_gateway}/healthz")
    assert live.status_code == 200 and live.json()["status"] == "ok"
    ready = httpx.get(f"{fake_gateway}/readyz")
    assert ready.status_code == 200
    assert (ready.json()["status"], ready.json()["backend"]) == ("ready", "fake")
    assert sorted(ready.json()["models"]) == FAKE_MODELS


def test_models_lists_each_model_s_task_versions_input_size_and_labels(fake_gateway: str) -> None:
    body = httpx.get(f"{fake_gateway}/v1/models").json()
    assert body["backend"] == "fake" and body["unavailable"] == []
    models = {m["name"]: m for m in body["models"]}
    assert sorted(models) == FAKE_MODELS
    assert {name: m["task"] for name, m in models.items()} == {
        "fake_classifier": "classify", "fake_detector": "detect", "fake_upscaler": "super_resolve"}
    classifier = models["fake_classifier"]
    assert (classifier["versions"], classifier["input_size"], classifier["labels"]) == ([1], [224, 224], 4)
    assert classifier["parameters"]["resize"] == "center_crop" and classifier["state"] == "READY"
    assert models["fake_detector"]["input_size"] == [320, 320]
    assert models["fake_upscaler"]["input_size"] is None  # any size


def test_one_model_by_name_and_404_for_an_unknown_one(fake_gateway: str) -> None:
    one = httpx.get(f"{fake_gateway}/v1/models/fake_detector")
    assert one.status_code == 200 and (one.json()["name"], one.json()["labels"]) == ("fake_detector", 2)
    missing = httpx.get(f"{fake_gateway}/v1/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "ModelNotFound"


def test_metrics_count_requests_latencies_and_batch_sizes(fake_gateway: str) -> None:
    r = httpx.post(f"{fake_gateway}/v1/classify", content=encode(photo("coffee")),
                   headers={"content-type": "image/jpeg"})
    assert r.status_code == 200
    httpx.post(f"{fake_gateway}/v1/classify", content=b"", headers={"content-type": "image/jpeg"})
    metrics = httpx.get(f"{fake_gateway}/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'visiongate_requests_total{route="/v1/classify",status="200"}' in text
    assert 'visiongate_requests_total{route="/v1/classify",status="400"}' in text
    assert 'visiongate_request_seconds_bucket{le="0.002",route="/v1/classify"}' in text


def test_metrics_count_batch_sizes_per_model(fake_gateway: str) -> None:
    r = httpx.post(f"{fake_gateway}/v1/detect", content=encode(photo("coffee")),
                   headers={"content-type": "image/jpeg"})
    assert r.status_code == 200
    assert 'visiongate_batch_size_count{model="fake_detector"}' in httpx.get(f"{fake_gateway}/metrics").text


def test_not_ready_with_an_empty_repository_but_still_live(tmp_path: Path) -> None:
    server = GatewayProcess(tmp_path)
    try:
        wait_ready(server.url, path="/healthz")
        r = httpx.get(f"{server.url}/readyz")
        assert r.status_code == 503 and r.headers["retry-after"]
        assert r.json()["status"] == "not ready"
    finally:
        server.stop()


def test_openapi_documents_the_endpoints_and_their_errors(fake_gateway: str) -> None:
    spec = httpx.get(f"{fake_gateway}/openapi.json").json()
    assert {"/v1/classify", "/v1/detect", "/v1/super-resolve", "/v1/models"} <= set(spec["paths"])
    classify = spec["paths"]["/v1/classify"]["post"]
    assert {"400", "404", "413", "415", "503"} <= set(classify["responses"])
    assert "multipart/form-data" in classify["requestBody"]["content"]
    assert "image/jpeg" in classify["requestBody"]["content"]


def test_cors_is_off_unless_origins_are_configured() -> None:
    preflight = {"origin": "https://ui.example", "access-control-request-method": "POST"}
    with TestClient(create_app(Settings(backend="fake"))) as client:
        r = client.options("/v1/classify", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    with TestClient(create_app(Settings(backend="fake", cors_origins=["https://ui.example"]))) as client:
        r = client.options("/v1/classify", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://ui.example"
        other = client.options("/v1/classify", headers={**preflight, "origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


# ---- the real exported models ----

def test_models_shows_the_export_s_parity_proof_for_real_models(gateway: str) -> None:
    body = httpx.get(f"{gateway}/v1/models").json()
    assert body["backend"] == "onnxruntime"
    lite0 = next(m for m in body["models"] if m["name"] == "efficientnet_lite0")
    assert lite0["task"] == "classify" and lite0["input_size"] == [224, 224] and lite0["labels"] == 1000
    assert lite0["parity"]["passed"] is True and lite0["parity"]["top1_agreement"] == 1.0


def test_metrics_count_batch_sizes_of_real_models(gateway: str, chelsea_jpeg: bytes) -> None:
    r = httpx.post(f"{gateway}/v1/classify", content=chelsea_jpeg, headers={"content-type": "image/jpeg"})
    assert r.status_code == 200
    assert 'visiongate_batch_size_count{model="efficientnet_lite0"}' in httpx.get(f"{gateway}/metrics").text
