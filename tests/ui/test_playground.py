"""The web playground in a real headless Chromium: pick a model, upload a real photo, see the answer.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and PyPI ``playwright`` (its driver only:
no ``playwright install``; the system browser is used). Skipped with the reason when either is absent.
Screenshots go to pytest's tmp dir, or to ``$VISIONGATE_SCREENSHOT_DIR`` when set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import encode, photo

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium binary (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs PyPI playwright (driver only)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
CAT_LABELS = {"tabby", "tiger cat", "Egyptian cat"}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, gateway: str) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    p = context.new_page()
    p.console_errors = []  # type: ignore[attr-defined]
    p.on("console", lambda m: m.type == "error" and p.console_errors.append(m.text))
    p.on("pageerror", lambda e: p.console_errors.append(str(e)))
    p.goto(gateway + "/")
    yield p
    context.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("VISIONGATE_SCREENSHOT_DIR", tmp_path))
    where.mkdir(parents=True, exist_ok=True)
    return where


def served(gateway: str, task: str) -> str:
    names = [m["name"] for m in httpx.get(gateway + "/v1/models").json()["models"] if m["task"] == task]
    if not names:
        pytest.skip(f"no {task} model in the test repository")
    return names[0]


def upload(page, tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    page.set_input_files("#file", str(path))


def test_root_redirects_to_the_playground_and_lists_models(page, gateway: str) -> None:
    assert page.url.endswith("/ui")
    page.wait_for_selector("#model option[value='efficientnet_lite0']", state="attached")
    options = page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
    assert "efficientnet_lite0" in options
    assert page.title() == "visiongate playground"


def test_uploading_chelsea_shows_cat_labels_as_bars(page, tmp_path: Path, shots: Path,
                                                   chelsea_jpeg: bytes) -> None:
    page.wait_for_selector("#model option[value='efficientnet_lite0']", state="attached")
    page.select_option("#model", "efficientnet_lite0")
    upload(page, tmp_path, "chelsea.jpg", chelsea_jpeg)
    page.wait_for_selector(".bar", timeout=30_000)
    labels = page.eval_on_selector_all(".bar", "bars => bars.map(b => b.dataset.label)")
    assert len(labels) == 5 and labels[0] in CAT_LABELS
    widths = page.eval_on_selector_all(".bar .fill", "fs => fs.map(f => f.getBoundingClientRect().width)")
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]
    page.screenshot(path=str(shots / "playground-classify.png"), full_page=True)
    assert page.console_errors == []


def test_detections_are_drawn_on_the_image(page, gateway: str, tmp_path: Path, shots: Path,
                                           coffee_jpeg: bytes) -> None:
    model = served(gateway, "detect")
    page.wait_for_selector(f"#model option[value='{model}']", state="attached")
    page.select_option("#model", model)
    upload(page, tmp_path, "coffee.jpg", coffee_jpeg)
    page.wait_for_selector("#canvas:not([hidden])", timeout=30_000)
    size = page.eval_on_selector("#canvas", "c => [c.width, c.height, Number(c.dataset.detections)]")
    assert size[:2] == [600, 400] and size[2] >= 1
    page.screenshot(path=str(shots / "playground-detect.png"), full_page=True)
    assert page.console_errors == []


def test_super_resolution_shows_before_and_after_with_a_slider(page, gateway: str, tmp_path: Path,
                                                               shots: Path) -> None:
    model = served(gateway, "super_resolve")
    page.wait_for_selector(f"#model option[value='{model}']", state="attached")
    page.select_option("#model", model)
    upload(page, tmp_path, "chelsea-small.png", encode(photo("chelsea")[::4, ::4].copy(), "PNG"))
    page.wait_for_selector("#compare:not([hidden])", timeout=60_000)
    page.wait_for_function("document.getElementById('after').naturalWidth > 0")
    natural = page.eval_on_selector("#after", "i => [i.naturalWidth, i.naturalHeight]")
    assert natural[0] >= 2 * 113 and natural[1] >= 2 * 75
    page.fill("#slider", "20")
    clip = page.eval_on_selector("#before-clip", "c => c.style.width")
    assert clip == "20%"
    page.screenshot(path=str(shots / "playground-super-resolve.png"), full_page=True)
    assert page.console_errors == []


def test_a_non_image_shows_the_gateway_error(page, tmp_path: Path) -> None:
    page.wait_for_selector("#model option[value='efficientnet_lite0']", state="attached")
    page.select_option("#model", "efficientnet_lite0")
    upload(page, tmp_path, "notes.png", b"this is not a picture")
    page.wait_for_selector("#status.error", timeout=30_000)
    assert "InvalidImage" in page.inner_text("#status")
