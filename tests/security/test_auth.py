"""API keys against a real gateway process: 401/403 in each API's error shape, scopes from the route
table, open probes, per-key rate limits with Retry-After, counted by key name; keys added and revoked
while it runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from secured_gateway import SecuredGateway, add_key

from visiongate.service.app import create_app
from visiongate.service.security.keys import read_file, write_file
from visiongate.service.security.scopes import OPEN, route_scopes, unclassified_routes
from visiongate.service.settings import Settings

CLASSIFY = "/v1/classify?model=efficientnet_lite0"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    store = tmp_path_factory.mktemp("keys") / "keys.json"
    made = {"store": str(store)}
    for name, scopes, limits in [("web", "infer,read", {}), ("reader", "read", {}), ("ops", "admin", {}),
                                 ("prom", "metrics", {}), ("slow", "infer,read", {"requests_per_s": 1})]:
        made[name] = add_key(store, name, scopes, **limits)
    return made


@pytest.fixture(scope="module")
def gateway(lite_repository: Path, keys: dict[str, str],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredGateway]:
    server = SecuredGateway(lite_repository, tmp_path_factory.mktemp("log") / "gateway.log",
                            env={"VISIONGATE_API_KEYS_FILE": keys["store"]})
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def classify(gateway: SecuredGateway, jpeg: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(gateway.url + CLASSIFY, content=jpeg, timeout=30,
                      headers={"Content-Type": "image/jpeg", **headers})


def test_without_a_key_inference_is_refused_with_401_and_www_authenticate(
        gateway: SecuredGateway, chelsea_jpeg: bytes) -> None:
    r = classify(gateway, chelsea_jpeg, {})
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json()["error"]["type"] == "Unauthenticated"
    assert "Authorization: Bearer" in r.json()["error"]["message"]


def test_an_unknown_key_is_401_and_never_echoed(gateway: SecuredGateway, chelsea_jpeg: bytes) -> None:
    wrong = "vg_" + "x" * 43
    r = classify(gateway, chelsea_jpeg, bearer(wrong))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert wrong not in r.text
    assert wrong not in gateway.output()


def test_a_key_with_the_infer_scope_classifies_by_bearer_or_x_api_key(
        gateway: SecuredGateway, keys: dict[str, str], chelsea_jpeg: bytes) -> None:
    for headers in (bearer(keys["web"]), {"X-API-Key": keys["web"]}):
        r = classify(gateway, chelsea_jpeg, headers)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"][0]["label"] in {"tabby", "tiger cat", "Egyptian cat"}
    assert keys["web"] not in gateway.output()


def test_a_key_without_the_scope_is_403_naming_the_scope(
        gateway: SecuredGateway, keys: dict[str, str], chelsea_jpeg: bytes) -> None:
    r = classify(gateway, chelsea_jpeg, bearer(keys["reader"]))
    assert r.status_code == 403
    assert r.json()["error"] == {"type": "Forbidden", "message": "key 'reader' lacks the 'infer' scope this "
                                 "route needs", "scope": "infer"}
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    listing = httpx.get(gateway.url + "/v1/models", headers=bearer(keys["reader"]))
    assert listing.status_code == 200 and listing.json()["models"][0]["name"] == "efficientnet_lite0"
    assert httpx.get(gateway.url + "/v1/models", headers=bearer(keys["ops"])).status_code == 403


def test_the_open_inference_protocol_gets_its_own_error_shape(
        gateway: SecuredGateway, keys: dict[str, str]) -> None:
    r = httpx.get(gateway.url + "/v2/models/efficientnet_lite0")
    assert r.status_code == 401 and isinstance(r.json()["error"], str)
    infer = httpx.post(gateway.url + "/v2/models/efficientnet_lite0/infer", json={"inputs": []},
                       headers=bearer(keys["reader"]))
    assert infer.status_code == 403 and "infer" in infer.json()["error"]
    metadata = httpx.get(gateway.url + "/v2/models/efficientnet_lite0", headers=bearer(keys["reader"]))
    assert metadata.status_code == 200


def test_probes_docs_and_the_playground_stay_open_metrics_need_their_scope(
        gateway: SecuredGateway, keys: dict[str, str]) -> None:
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/ui", "/docs",
                 "/openapi.json"):
        assert httpx.get(gateway.url + path).status_code == 200, path
    assert httpx.get(gateway.url + "/metrics").status_code == 401
    assert httpx.get(gateway.url + "/metrics", headers=bearer(keys["web"])).status_code == 403
    assert httpx.get(gateway.url + "/metrics", headers=bearer(keys["prom"])).status_code == 200


def test_an_unknown_path_needs_a_key_before_it_is_a_404(gateway: SecuredGateway,
                                                         keys: dict[str, str]) -> None:
    assert httpx.post(gateway.url + "/v1/not-a-route").status_code == 401
    assert httpx.post(gateway.url + "/v1/not-a-route", headers=bearer(keys["ops"])).status_code == 404


def test_a_key_over_its_request_rate_gets_429_with_retry_after_counted_by_name(
        gateway: SecuredGateway, keys: dict[str, str]) -> None:
    with httpx.Client(base_url=gateway.url, headers=bearer(keys["slow"])) as client:
        answers = [client.get("/v1/models") for _ in range(4)]
        assert answers[0].status_code == 200
        refused = [a for a in answers if a.status_code == 429]
        assert refused, [a.status_code for a in answers]
        assert int(refused[0].headers["Retry-After"]) >= 1
        assert refused[0].json()["error"]["type"] == "RateLimited"
        # still usable on the same connection afterwards (the refusal did not close it)
        time.sleep(1.1)
        assert client.get("/v1/models").status_code == 200
    scraped = httpx.get(gateway.url + "/metrics", headers=bearer(keys["prom"])).text
    line = next(x for x in scraped.splitlines()
                if x.startswith('visiongate_key_requests_total{key="slow",outcome="rate_limited_requests"}'))
    assert float(line.split()[-1]) == len(refused)
    assert 'visiongate_auth_failures_total{reason="missing"}' in scraped


def test_keys_added_and_revoked_while_serving_apply_without_a_restart(
        gateway: SecuredGateway, keys: dict[str, str]) -> None:
    store = Path(keys["store"])
    late = add_key(store, "late", "read")
    assert _eventually(lambda: httpx.get(gateway.url + "/v1/models", headers=bearer(late)).status_code) == 200
    write_file(store, [e for e in read_file(store) if e.name != "late"])
    assert _eventually(lambda: httpx.get(gateway.url + "/v1/models", headers=bearer(late)).status_code) == 401


def _eventually(status: object, timeout_s: float = 5.0) -> int:
    """The status once it changes from the first one seen (the store is re-read about once a second)."""
    first = last = status()  # type: ignore[operator]
    deadline = time.monotonic() + timeout_s
    while last == first and time.monotonic() < deadline:
        time.sleep(0.2)
        last = status()  # type: ignore[operator]
    return int(last)


def test_every_route_of_the_app_has_a_scope_from_the_table() -> None:
    """A route nobody classified would need `admin` (closed by default); this lists it so the table
    in service/security/scopes.py gets a rule."""
    assert unclassified_routes(create_app(Settings())) == []
    table = {(m, p): s for m, p, s in route_scopes(create_app(Settings()))}
    assert table[("POST", "/v1/classify")] == "infer"
    assert table[("POST", "/v2/models/{model}/infer")] == "infer"
    assert table[("GET", "/v1/models")] == "read"
    assert table[("GET", "/metrics")] == "metrics"
    assert table[("GET", "/healthz")] == table[("GET", "/readyz")] == OPEN
    assert table[("POST", "/v2/repository/models/{model}/load")] == "admin"


def test_grpc_calls_are_classified_by_the_same_table_and_keys_read_from_metadata() -> None:
    from visiongate.service.security import key_from_metadata, scope_for

    service = "/inference.GRPCInferenceService/"
    assert scope_for("POST", service + "ModelInfer") == "infer"
    assert scope_for("POST", service + "ServerReady") == OPEN
    assert scope_for("POST", service + "ModelMetadata") == "read"
    assert scope_for("POST", service + "RepositoryModelLoad") == "admin"
    assert key_from_metadata([("authorization", "Bearer vg_abc")]) == "vg_abc"
    assert key_from_metadata([("x-api-key", b"vg_def"), ("user-agent", "grpc-python")]) == "vg_def"
    assert key_from_metadata([("user-agent", "grpc-python")]) is None
