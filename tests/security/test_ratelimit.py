"""Per-key limits: token buckets, and images per minute charged by the service inside a request."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import Request
from secured_gateway import add_key
from starlette.testclient import TestClient

from visiongate.service.app import create_app
from visiongate.service.errors import RateLimited
from visiongate.service.security import charge_images, install_security
from visiongate.service.security.keys import make_entry, new_key
from visiongate.service.security.ratelimit import KeyLimits, TokenBucket
from visiongate.service.settings import Settings


def test_a_bucket_grants_its_capacity_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, capacity=2.0, updated=0.0)
    assert bucket.take(now=0.0) == 0.0 and bucket.take(now=0.0) == 0.0
    assert bucket.take(now=0.0) == pytest.approx(0.5)  # nothing taken: half a second to the next token
    assert bucket.take(now=0.25) == pytest.approx(0.25)
    assert bucket.take(now=0.5) == 0.0


def test_images_per_minute_refuses_a_request_larger_than_the_whole_minute() -> None:
    limits = KeyLimits.of(make_entry("batch", new_key(), ["infer"], images_per_min=10))
    limits.charge_images(8)
    with pytest.raises(RateLimited) as refused:
        limits.charge_images(4)
    assert refused.value.retry_after_s == pytest.approx(2 * 6.0, rel=0.05)  # 2 images at 1 per 6 s
    with pytest.raises(RateLimited, match="exceed"):
        limits.charge_images(11)


def test_charge_images_outside_a_request_or_without_auth_is_free() -> None:
    charge_images(10_000)


def test_images_charged_in_a_route_become_429_with_retry_after(tmp_path: Path) -> None:
    """The route below stands in for the inference service (which will call charge_images once it
    knows how many images a request holds); the middleware, limits and metrics are the real ones."""
    store = tmp_path / "keys.json"
    key = add_key(store, "cam", "infer,metrics", images_per_min=5)
    settings = Settings(api_keys_file=store)
    app = create_app(settings)

    @app.post("/v1/classify/fake-charging-images")
    async def fake_segment_charging_images(request: Request) -> dict[str, int]:
        n = int(request.query_params["images"])
        charge_images(n)
        return {"images": n}

    install_security(app, settings)
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {key}"}
        assert client.post("/v1/classify/fake-charging-images?images=4", headers=headers).status_code == 200
        refused = client.post("/v1/classify/fake-charging-images?images=3", headers=headers)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert "images per minute" in refused.json()["error"]["message"]
        assert client.post("/v1/classify/fake-charging-images?images=1", headers=headers).status_code == 200
        scraped = client.get("/metrics", headers=headers).text
        assert 'visiongate_key_requests_total{key="cam",outcome="rate_limited_images"} 1.0' in scraped
