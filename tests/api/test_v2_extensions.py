"""The OIP repository and statistics extensions, on a real gateway serving the fake backend."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from support import GatewayProcess, encode, photo, wait_ready


@pytest.fixture(scope="module")
def explicit_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = GatewayProcess(tmp_path_factory.mktemp("repo"), env={"VISIONGATE_BACKEND": "fake",
                                                                   "VISIONGATE_MODEL_CONTROL": "explicit"})
    try:
        wait_ready(server.url)
        yield server.url
    finally:
        server.stop()


def test_the_index_lists_every_model_with_its_state(fake_gateway: str) -> None:
    index = httpx.post(f"{fake_gateway}/v2/repository/index").json()
    assert {(e["name"], e["version"], e["state"]) for e in index} >= {("fake_classifier", "1", "READY"),
                                                                      ("fake_detector", "1", "READY")}


def test_load_and_unload_are_refused_unless_model_control_is_explicit(fake_gateway: str) -> None:
    r = httpx.post(f"{fake_gateway}/v2/repository/models/fake_classifier/unload")
    assert r.status_code == 400 and "VISIONGATE_MODEL_CONTROL" in r.json()["error"]


def test_unload_then_load_in_explicit_mode(explicit_gateway: str) -> None:
    assert httpx.post(f"{explicit_gateway}/v2/repository/models/fake_detector/unload").status_code == 200
    entry = next(e for e in httpx.post(f"{explicit_gateway}/v2/repository/index").json()
                 if e["name"] == "fake_detector")
    assert entry["state"] == "UNAVAILABLE" and entry["reason"] == "unloaded"
    r = httpx.get(f"{explicit_gateway}/v2/models/fake_detector/ready")
    assert r.status_code == 503 and "unloaded" in r.json()["error"]
    assert httpx.post(f"{explicit_gateway}/v2/repository/models/fake_detector/load").status_code == 200
    assert httpx.get(f"{explicit_gateway}/v2/models/fake_detector/ready").status_code == 200
    r = httpx.post(f"{explicit_gateway}/v2/repository/models/no_such/load")
    assert r.status_code == 404 and isinstance(r.json()["error"], str)


def test_statistics_count_real_requests(fake_gateway: str) -> None:
    jpeg = encode(photo("coffee"))
    before = httpx.get(f"{fake_gateway}/v2/models/fake_classifier/stats").json()["model_stats"][0]
    for _ in range(3):
        assert httpx.post(f"{fake_gateway}/v1/classify?model=fake_classifier", content=jpeg,
                          headers={"content-type": "image/jpeg"}).status_code == 200
    after = httpx.get(f"{fake_gateway}/v2/models/fake_classifier/stats").json()["model_stats"][0]
    assert after["inference_count"] - before["inference_count"] == 3
    assert after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"] == 3
    assert after["inference_stats"]["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]
    assert httpx.get(f"{fake_gateway}/v2/models/no_such/stats").status_code == 404
    assert [s["name"] for s in httpx.get(f"{fake_gateway}/v2/models/stats").json()["model_stats"]] == [
        "fake_classifier", "fake_detector", "fake_upscaler"]
