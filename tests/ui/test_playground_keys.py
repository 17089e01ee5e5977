"""The playground on a gateway that requires keys: it asks for one, keeps it in the tab, and works."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from security.secured_gateway import SecuredGateway, add_key

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium binary (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs PyPI playwright (driver only)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
CAT_LABELS = {"tabby", "tiger cat", "Egyptian cat"}


@pytest.fixture(scope="module")
def keyed(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SecuredGateway, str]]:
    store = tmp_path_factory.mktemp("keys") / "keys.json"
    key = add_key(store, "playground", "infer,read")
    add_key(store, "viewer", "read")
    server = SecuredGateway(repository, tmp_path_factory.mktemp("log") / "gateway.log",
                            env={"VISIONGATE_API_KEYS_FILE": str(store)})
    try:
        server.wait_ready()
        yield server, key
    finally:
        server.stop()


@pytest.fixture
def page(keyed: tuple[SecuredGateway, str]) -> Iterator[object]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        p = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
        p.page_errors = []  # type: ignore[attr-defined]
        p.on("pageerror", lambda e: p.page_errors.append(str(e)))
        p.goto(keyed[0].url + "/")
        yield p
        browser.close()


def test_the_playground_asks_for_a_key_then_classifies(page, keyed: tuple[SecuredGateway, str],
                                                       tmp_path: Path, chelsea_jpeg: bytes) -> None:
    server, key = keyed
    page.wait_for_selector("#key-form:not([hidden])")
    assert "API key is required" in page.inner_text("#status")
    page.fill("#key", key)
    page.click("#key-form button")
    page.wait_for_selector("#model option[value='efficientnet_lite0']", state="attached")
    assert page.is_hidden("#key-form") and page.is_visible("#forget-key")
    page.select_option("#model", "efficientnet_lite0")
    (tmp_path / "chelsea.jpg").write_bytes(chelsea_jpeg)
    page.set_input_files("#file", str(tmp_path / "chelsea.jpg"))
    page.wait_for_selector(".bar", timeout=30_000)
    assert page.eval_on_selector(".bar", "b => b.dataset.label") in CAT_LABELS
    page.screenshot(path=str(tmp_path / "playground-with-key.png"), full_page=True)
    # the key stays in this tab's session storage, not in the page or a cookie
    assert key not in page.content()
    assert page.context.cookies() == []
    assert page.page_errors == []
    assert key not in server.output()


def test_a_wrong_key_is_refused_and_the_form_comes_back(page) -> None:
    page.wait_for_selector("#key-form:not([hidden])")
    page.fill("#key", "vg_not-a-real-key")
    page.click("#key-form button")
    page.locator("#status", has_text="not valid").wait_for()
    assert page.is_visible("#key-form")
