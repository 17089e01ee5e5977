"""Swagger UI and ReDoc in a real headless Chromium with no network: everything they need comes from
the gateway, under a strict content-security policy, and "Try it out" sends the playground's key."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from security.secured_gateway import SecuredGateway, add_key

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium binary (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs PyPI playwright (driver only)")

# no name resolves: a page that reaches for a CDN or a font service fails to, and the test sees it
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


@pytest.fixture(scope="module")
def secured(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    store = tmp_path_factory.mktemp("keys") / "keys.json"
    key = add_key(store, "docs-reader", "infer,read")
    server = SecuredGateway(repository, tmp_path_factory.mktemp("log") / "gateway.log",
                            env={"VISIONGATE_API_KEYS_FILE": str(store)})
    try:
        server.wait_ready()
        yield server.url, key
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, secured: tuple[str, str]) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.console_errors = []  # type: ignore[attr-defined]
    p.outside = []  # type: ignore[attr-defined]
    p.on("console", lambda m: m.type == "error" and p.console_errors.append(m.text))
    p.on("pageerror", lambda e: p.console_errors.append(str(e)))
    p.on("request", lambda r: urlsplit(r.url).hostname not in {"127.0.0.1", None}
         and urlsplit(r.url).scheme in {"http", "https", "ws", "wss"} and p.outside.append(r.url))
    yield p
    context.close()


def test_swagger_ui_renders_every_operation_offline_under_a_strict_csp(page, secured: tuple[str, str],
                                                                      tmp_path: Path) -> None:
    url, _ = secured
    response = page.goto(url + "/docs")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-eval'" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.dataset.path)")
    assert {"/v1/classify", "/v2/models/{model}/infer", "/v1/models"} <= set(paths)
    page.screenshot(path=str(tmp_path / "swagger.png"))
    assert page.outside == [] and page.console_errors == []


def test_redoc_renders_offline(page, secured: tuple[str, str]) -> None:
    url, _ = secured
    page.goto(url + "/redoc")
    page.locator("text=Models being served >> visible=true").first.wait_for(timeout=30_000)
    assert page.title() == "visiongate API - ReDoc"
    icon = httpx.get(url + page.eval_on_selector("link[rel=icon]", "l => l.getAttribute('href')"))
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/png"
    assert page.outside == [] and page.console_errors == []


def test_try_it_out_sends_the_key_entered_in_the_playground(page, secured: tuple[str, str]) -> None:
    url, key = secured
    page.goto(url + "/ui")
    page.wait_for_selector("#key-form:not([hidden])")
    page.fill("#key", key)
    page.click("#key-form button")
    page.wait_for_selector("#model option[value='efficientnet_lite0']", state="attached")
    page.goto(url + "/docs")
    page.click("#operations-models-list_models_v1_models_get .opblock-summary")
    page.click("#operations-models-list_models_v1_models_get .try-out__btn")
    page.click("#operations-models-list_models_v1_models_get .execute")
    status = page.wait_for_selector("#operations-models-list_models_v1_models_get .live-responses-table "
                                    "tbody .response-col_status", timeout=30_000)
    assert status.inner_text().strip() == "200"
    assert '"name": "efficientnet_lite0"' in page.inner_text(".live-responses-table")
    assert page.outside == []
