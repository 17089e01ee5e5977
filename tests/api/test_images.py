"""Images in every form a caller sends them: raw bytes, multipart, JSON base64, and URLs.

URL fetching is tested against real local HTTP servers: the gateway fetches only from allowlisted
hosts, refuses names that resolve to private addresses, re-checks every redirect, and caps size.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from visiongate.service.api.fetch import address_allowed, fetch_image, host_allowed
from visiongate.service.api.images import IMAGE_REQUEST_BODY, _b64
from visiongate.service.api.json_body import load_json
from visiongate.service.app import create_app
from visiongate.service.errors import BodyTooLarge, InvalidArgument
from visiongate.service.schemas import document_limits
from visiongate.service.settings import Settings

CAT_IDS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
ESPRESSO = 967


class PhotoServer:
    """A real HTTP server on a loopback address: /chelsea.jpg, /big (over any small limit),
    /go?to=<url> (302 to that URL), /slow (never answers in time)."""

    def __init__(self, host: str, photo: bytes) -> None:
        photo_bytes = photo

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/chelsea.jpg":
                    self._send(200, photo_bytes, "image/jpeg")
                elif self.path == "/big":
                    self._send(200, photo_bytes * 4, "image/jpeg")
                elif self.path.startswith("/go?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path.removeprefix("/go?to="))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/slow":
                    threading.Event().wait(3)
                    self._send(200, photo_bytes, "image/jpeg")
                else:
                    self._send(404, b"not here", "text/plain")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def photos(chelsea_jpeg: bytes) -> Iterator[PhotoServer]:
    server = PhotoServer("127.0.0.1", chelsea_jpeg)
    yield server
    server.close()


@pytest.fixture(scope="module")
def other_loopback(chelsea_jpeg: bytes) -> Iterator[PhotoServer]:
    server = PhotoServer("127.0.0.2", chelsea_jpeg)
    yield server
    server.close()


@pytest.fixture(scope="module")
def api(repository: Path) -> Iterator[TestClient]:
    """The real app (real models), fetching only from 127.0.0.1, which is allowlisted explicitly."""
    settings = Settings(repository=repository, url_fetch_allowlist=["127.0.0.1"], url_fetch_timeout_s=1.0,
                        inference_workers=1)
    with TestClient(create_app(settings)) as client:
        yield client


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def top_id(result: dict) -> int:
    return int(result["predictions"][0]["class_id"])


# --- JSON base64 -------------------------------------------------------------------------------

def test_json_base64_image_is_classified(api: TestClient, chelsea_jpeg: bytes) -> None:
    r = api.post("/v1/classify", json={"image": b64(chelsea_jpeg)})
    assert r.status_code == 200, r.text
    assert top_id(r.json()) in CAT_IDS


def test_browser_data_url_is_accepted(api: TestClient, coffee_jpeg: bytes) -> None:
    r = api.post("/v1/classify", json={"image": "data:image/jpeg;base64," + b64(coffee_jpeg)})
    assert r.status_code == 200, r.text
    assert top_id(r.json()) == ESPRESSO


def test_a_json_list_of_images_gives_a_list_of_results_in_order(api: TestClient, chelsea_jpeg: bytes,
                                                                coffee_jpeg: bytes) -> None:
    r = api.post("/v1/classify", json={"images": [b64(chelsea_jpeg), b64(coffee_jpeg)]})
    assert r.status_code == 200, r.text
    results = r.json()
    assert isinstance(results, list) and len(results) == 2
    assert top_id(results[0]) in CAT_IDS and top_id(results[1]) == ESPRESSO


def test_a_json_list_of_one_image_is_still_a_list(api: TestClient, coffee_jpeg: bytes) -> None:
    r = api.post("/v1/classify", json={"images": [b64(coffee_jpeg)]})
    assert r.status_code == 200 and isinstance(r.json(), list) and len(r.json()) == 1


@pytest.mark.parametrize("body, status, kind", [
    ({"image": "not base64!"}, 400, "InvalidImage"),
    ({"image": 12}, 400, "InvalidArgument"),
    ({"images": []}, 400, "InvalidArgument"),
    ({"picture": "AAAA"}, 400, "InvalidArgument"),
    ({"image": "AAAA", "url": "http://127.0.0.1/x"}, 400, "InvalidArgument"),
    ({"image": b64(b"these bytes are no image")}, 400, "InvalidImage"),
])
def test_bad_json_bodies_are_4xx_with_the_error_type(api: TestClient, body: dict, status: int,
                                                     kind: str) -> None:
    r = api.post("/v1/classify", json=body)
    assert r.status_code == status
    assert r.json()["error"]["type"] == kind


def test_base64_size_is_checked_before_decoding() -> None:
    with pytest.raises(BodyTooLarge, match="limit is 1000"):
        _b64("QUJD" * 400, "image", limit=1000)  # 1600 chars -> about 1200 bytes, never decoded


def test_too_many_images_in_one_json_body_is_400(api: TestClient) -> None:
    r = api.post("/v1/classify", json={"images": ["AAAA"] * 17})
    assert r.status_code == 400 and "limit is 16" in r.json()["error"]["message"]


# --- URLs ----------------------------------------------------------------------------------------

def test_an_allowlisted_url_is_fetched_and_classified(api: TestClient, photos: PhotoServer) -> None:
    r = api.post("/v1/classify", json={"url": f"{photos.base}/chelsea.jpg"})
    assert r.status_code == 200, r.text
    assert top_id(r.json()) in CAT_IDS


def test_a_redirect_inside_the_allowlist_is_followed(api: TestClient, photos: PhotoServer) -> None:
    r = api.post("/v1/classify", json={"urls": [f"{photos.base}/go?to=/chelsea.jpg"]})
    assert r.status_code == 200, r.text
    assert top_id(r.json()[0]) in CAT_IDS


@pytest.mark.parametrize("url, fragment", [
    ("http://127.0.0.2:9/chelsea.jpg", "not on this gateway's URL allowlist"),
    ("http://localhost:9/chelsea.jpg", "not on this gateway's URL allowlist"),
    ("file:///etc/passwd", "only http and https"),
    ("ftp://127.0.0.1/chelsea.jpg", "only http and https"),
    ("http://user:pw@127.0.0.1/chelsea.jpg", "credentials"),
])
def test_urls_outside_the_rules_are_refused_with_400_json(api: TestClient, url: str, fragment: str) -> None:
    r = api.post("/v1/classify", json={"url": url})
    assert r.status_code == 400
    assert fragment in r.json()["error"]["message"]


def test_a_redirect_to_a_private_address_is_refused(api: TestClient, photos: PhotoServer) -> None:
    metadata = "http://169.254.169.254/latest/meta-data/"
    r = api.post("/v1/classify", json={"url": f"{photos.base}/go?to={metadata}"})
    assert r.status_code == 400
    assert "169.254.169.254" in r.json()["error"]["message"]


def test_an_allowlisted_name_that_resolves_to_loopback_is_refused(other_loopback: PhotoServer) -> None:
    """A redirect from an allowlisted IP to an allowlisted *name* that resolves into the private
    network: the name alone does not open it (what DNS rebinding relies on)."""
    settings = Settings(url_fetch_allowlist=["127.0.0.2", "localhost"], url_fetch_timeout_s=2.0)
    assert asyncio.run(fetch_image(f"{other_loopback.base}/chelsea.jpg", settings))[:2] == b"\xff\xd8"
    port = other_loopback.base.rsplit(":", 1)[1]
    with pytest.raises(InvalidArgument, match="resolves to a private, loopback or link-local address"):
        asyncio.run(fetch_image(f"{other_loopback.base}/go?to=http://localhost:{port}/chelsea.jpg", settings))


def test_url_fetching_is_off_without_an_allowlist(repository: Path, photos: PhotoServer) -> None:
    with TestClient(create_app(Settings(repository=repository, inference_workers=1))) as client:
        r = client.post("/v1/classify", json={"url": f"{photos.base}/chelsea.jpg"})
    assert r.status_code == 400 and "off on this gateway" in r.json()["error"]["message"]


def test_a_fetched_body_over_the_limit_is_413(photos: PhotoServer, chelsea_jpeg: bytes) -> None:
    settings = Settings(url_fetch_allowlist=["127.0.0.1"], max_body_bytes=len(chelsea_jpeg) * 2)
    with pytest.raises(BodyTooLarge):
        asyncio.run(fetch_image(f"{photos.base}/big", settings))


def test_a_slow_url_times_out_as_400(photos: PhotoServer) -> None:
    settings = Settings(url_fetch_allowlist=["127.0.0.1"], url_fetch_timeout_s=0.3)
    with pytest.raises(InvalidArgument, match=r"did not answer within 0.3 s|timed out|Timeout"):
        asyncio.run(fetch_image(f"{photos.base}/slow", settings))


def test_a_missing_url_is_400_naming_the_status(api: TestClient, photos: PhotoServer) -> None:
    r = api.post("/v1/classify", json={"url": f"{photos.base}/nothing.jpg"})
    assert r.status_code == 400 and "HTTP 404" in r.json()["error"]["message"]


def test_allowlist_matching_rules() -> None:
    import ipaddress

    assert host_allowed("images.example.com", ["*.example.com"])
    assert not host_allowed("example.com.evil.net", ["*.example.com"])
    assert host_allowed("10.1.2.3", ["10.0.0.0/8"]) and not host_allowed("10.1.2.3", ["example.com"])
    assert address_allowed(ipaddress.ip_address("93.184.216.34"), [])
    for private in ("10.0.0.5", "192.168.1.1", "127.0.0.1", "169.254.169.254", "::1", "fe80::1", "0.0.0.0"):
        assert not address_allowed(ipaddress.ip_address(private), ["example.com"]), private
    assert address_allowed(ipaddress.ip_address("10.0.0.5"), ["10.0.0.0/8"])


# --- hostile JSON -----------------------------------------------------------------------------------

@pytest.mark.parametrize("body, fragment", [
    ('{"image":' + "[" * 1100 + "]" * 1100 + "}", "nested too deeply; the limit is 64 levels"),
    ('{"images":' + "[" * 70 + "]" * 70 + "}", "nested too deeply"),
    ('{"image":' + "9" * 5000 + "}", "cannot be parsed"),
    ('{"image": "AAAA"', "cannot be parsed"),
    ("\xff\xfe", "cannot be parsed"),
])
def test_hostile_json_bodies_are_400_not_500(api: TestClient, body: str, fragment: str) -> None:
    r = api.post("/v1/classify", content=body.encode("latin-1"), headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "InvalidArgument" and fragment in r.json()["error"]["message"]


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    doc = load_json(b'{"url": "http://x/' + b"[" * 500 + b'\\"{{{{"}', max_depth=4)
    assert doc == {"url": "http://x/" + "[" * 500 + '"{{{{'}


# --- malformed URLs, ports, and the gateway itself ------------------------------------------------------

@pytest.mark.parametrize("url, fragment", [
    ("http://[::1/", "malformed"),
    ("http://127.0.0.1:99999/", "malformed"),
    ("http://127.0.0.1:0/x", "port 0"),
    ("  http://127.0.0.1/chelsea.jpg", "whitespace or control characters"),
    ("http://127.0.0.1/chelsea.jpg\r\nX-Injected: 1", "whitespace or control characters"),
    ("http://127.0.0.1/\tchelsea.jpg", "whitespace or control characters"),
    ("http://" + "a" * 5000 + ".example/", "characters long"),
    ("http://\udc80.example/x", "not on this gateway's URL allowlist"),
])
def test_malformed_urls_are_400_with_the_allowlist_on(api: TestClient, url: str, fragment: str) -> None:
    r = api.post("/v1/classify", content=json.dumps({"url": url}).encode(),
                 headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]["message"]


def test_an_allowlist_entry_with_a_port_allows_that_port_only(photos: PhotoServer) -> None:
    port = int(photos.base.rsplit(":", 1)[1])
    settings = Settings(url_fetch_allowlist=[f"127.0.0.1:{port}"], url_fetch_timeout_s=2.0)
    assert asyncio.run(fetch_image(f"{photos.base}/chelsea.jpg", settings))[:2] == b"\xff\xd8"
    with pytest.raises(InvalidArgument, match="not on this gateway's URL allowlist"):
        asyncio.run(fetch_image(f"http://127.0.0.1:{port + 1}/chelsea.jpg", settings))
    # ...and a redirect to another port of the same address is refused like any other host
    with pytest.raises(InvalidArgument, match=f"port {port + 1}"):
        asyncio.run(fetch_image(f"{photos.base}/go?to=http://127.0.0.1:{port + 1}/metrics", settings))


def test_the_gateway_never_fetches_from_itself(photos: PhotoServer) -> None:
    """Pretend the photo server is the gateway: same host and port as the settings say."""
    port = int(photos.base.rsplit(":", 1)[1])
    for host in ("127.0.0.1", "0.0.0.0"):
        settings = Settings(host=host, port=port, url_fetch_allowlist=["127.0.0.0/8"], url_fetch_timeout_s=2.0)
        with pytest.raises(InvalidArgument, match="points at this gateway itself"):
            asyncio.run(fetch_image(f"{photos.base}/chelsea.jpg", settings))
    other = Settings(host="127.0.0.1", port=port + 1, url_fetch_allowlist=["127.0.0.0/8"])
    assert asyncio.run(fetch_image(f"{photos.base}/chelsea.jpg", other))[:2] == b"\xff\xd8"


def test_allowlist_entries_parse_names_networks_and_ports() -> None:
    assert host_allowed("images.example.com", ["*.example.com:443"], 443)
    assert not host_allowed("images.example.com", ["*.example.com:443"], 80)
    assert host_allowed("::1", ["[::1]:8080"], 8080) and not host_allowed("::1", ["[::1]:8080"], 9090)
    assert host_allowed("10.1.2.3", ["10.0.0.0/8:80"], 80) and not host_allowed("10.1.2.3", ["10.0.0.0/8:80"], 81)
    assert host_allowed("fd00::5", ["fd00::/8"], 1234)
    for broken in ("[::1", "host:99999", "two words", "a:b:c:d:e:f:g:h:i"):
        assert not host_allowed("host", [broken], 80), broken


# --- the OpenAPI schema states the limits --------------------------------------------------------------

def test_the_openapi_schema_states_every_task_route_limit(repository: Path) -> None:
    settings = Settings(repository=repository, max_top_k=7, max_images_per_request=3, max_body_bytes=12345)
    app = create_app(settings)
    document_limits(app, settings)
    document_limits(app, settings)  # twice changes nothing
    with TestClient(app) as client:
        schema = client.get("/openapi.json").json()
    classify = schema["paths"]["/v1/classify"]["post"]
    top_k = next(p for p in classify["parameters"] if p["name"] == "top_k")
    assert top_k["schema"]["minimum"] == 1 and top_k["schema"]["maximum"] == 7
    for path, most in (("/v1/classify", 3), ("/v1/detect", 3), ("/v1/super-resolve", 1)):
        body = schema["paths"][path]["post"]["requestBody"]
        assert body["x-max-bytes"] == 12345
        variants = body["content"]["application/json"]["schema"]["oneOf"]
        assert sorted(v["required"][0] for v in variants) == ["image", "images", "url", "urls"]
        lists = [v["properties"][v["required"][0]] for v in variants if v["required"][0].endswith("s")]
        assert all(a["minItems"] == 1 and a["maxItems"] == most for a in lists), path
    # the module's own schema is not changed by one app's settings
    assert "maxItems" not in json.dumps(IMAGE_REQUEST_BODY)


def test_a_body_with_two_keys_is_what_the_schema_refuses_too(api: TestClient) -> None:
    r = api.post("/v1/classify", json={"image": "AAAA", "images": ["AAAA"]})
    assert r.status_code == 400 and "exactly one of" in r.json()["error"]["message"]
