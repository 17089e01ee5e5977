"""The person gate of the selfie model (parameters.presence_model), on a real gateway and real photos.

MediaPipe's selfie model marks the main subject of any photo as "person": alone it paints the cup
in ``coffee`` and the cat in ``chelsea``. Its built-in config gates it with NanoDet: "person"
pixels stay only inside NanoDet's person boxes (score >= 0.5, grown by 10%).
"""

from __future__ import annotations

import base64
import io
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from segment_models import GATE, SELFIE, segment_repository

from support import GatewayProcess, encode, photo, running_gateway, wait_ready
from visiongate.service.security.keys import make_entry, new_key, write_file

#: copies of the selfie model whose gate is misconfigured, served beside the real one
NO_DETECTOR = "selfie_gated_by_a_missing_model"
UNKNOWN_LABEL = "selfie_gated_by_an_unknown_label"


def _copy(repo: Path, name: str, parameters: dict[str, str]) -> None:
    shutil.copytree(repo / SELFIE, repo / name)
    config = (repo / name / "config.pbtxt").read_text().replace(f'name: "{SELFIE}"', f'name: "{name}"')
    for key, value in parameters.items():
        config = re.sub(rf'(key: "{key}"\s*value \{{\s*string_value: )"[^"]*"', rf'\1"{value}"', config)
    (repo / name / "config.pbtxt").write_text(config)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    repo = segment_repository(tmp_path_factory.mktemp("presence"))
    _copy(repo, NO_DETECTOR, {"presence_model": "no_such_detector"})
    _copy(repo, UNKNOWN_LABEL, {"presence_classes": "person=astronaut"})
    yield from running_gateway(repo)


def segment(gw: str, name: str, fmt: str = "JPEG", model: str = SELFIE) -> httpx.Response:
    body = encode(photo(name), fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return httpx.post(f"{gw}/v1/segment", params={"model": model}, content=body,
                      headers={"content-type": f"image/{fmt.lower()}"}, timeout=60)


def person_pixels(body: dict) -> np.ndarray:  # type: ignore[type-arg]
    with Image.open(io.BytesIO(base64.b64decode(body["class_map"]))) as img:
        return np.asarray(img) == 1


@pytest.mark.parametrize("name", ["coffee", "rocket", "hubble_deep_field", "immunohistochemistry"])
def test_photos_without_people_have_no_person_pixels(gw: str, name: str) -> None:
    for fmt in ("JPEG", "PNG"):
        r = segment(gw, name, fmt)
        assert r.status_code == 200, r.text
        body = r.json()
        assert not person_pixels(body).any()
        assert [c["label"] for c in body["classes"]] == ["background"]
        assert body["presence"]["model"] == GATE and body["presence"]["detections"] == []


def test_person_pixels_stay_inside_the_detectors_person_box(gw: str) -> None:
    body = segment(gw, "astronaut").json()
    (found,) = body["presence"]["detections"]
    assert found["label"] == "person" and found["score"] >= body["presence"]["score_threshold"] == 0.5
    x0, y0, x1, y1 = found["box"]
    grow_x, grow_y = (x1 - x0) * 0.1, (y1 - y0) * 0.1
    ys, xs = np.nonzero(person_pixels(body))
    assert xs.size > 0.3 * 512 * 512
    assert xs.min() >= np.floor(x0 - grow_x) and xs.max() < np.ceil(x1 + grow_x)
    assert ys.min() >= np.floor(y0 - grow_y) and ys.max() < np.ceil(y1 + grow_y)


def test_the_gate_keeps_a_person_the_detector_finds(gw: str) -> None:
    body = segment(gw, "camera").json()
    assert body["presence"]["detections"][0]["score"] > 0.8
    assert 0.25 < person_pixels(body).mean() < 0.45  # the cameraman and his coat


def test_a_missing_gate_detector_is_a_503_that_names_it(gw: str) -> None:
    r = segment(gw, "coffee", model=NO_DETECTOR)
    assert r.status_code == 503 and "retry-after" in r.headers
    assert "no_such_detector" in r.json()["error"]["message"]
    assert "presence_model" in r.json()["error"]["message"]


def test_a_gated_label_the_detector_lacks_is_a_502_that_names_it(gw: str) -> None:
    r = segment(gw, "coffee", model=UNKNOWN_LABEL)
    assert r.status_code == 502
    assert "presence_classes" in r.json()["error"]["message"] and "astronaut" in r.json()["error"]["message"]


def test_v2_answers_the_segmenters_raw_scores_without_the_gate(gw: str) -> None:
    """The OIP serves tensors: the selfie model's own scores still mark the cup (its known failure)."""
    r = segment(gw, "coffee")
    assert not person_pixels(r.json()).any()
    pixels = np.asarray(Image.fromarray(photo("coffee")).resize((256, 256)), np.uint8)[None]
    raw = httpx.post(f"{gw}/v2/models/{SELFIE}/infer", timeout=60, json={"inputs": [
        {"name": "image", "shape": list(pixels.shape), "datatype": "UINT8", "data": pixels.ravel().tolist()}]})
    assert raw.status_code == 200, raw.text
    (scores,) = raw.json()["outputs"]
    person = np.asarray(scores["data"], np.float32).reshape(scores["shape"])[0, 1]
    assert (person > 0.5).mean() > 0.05


def test_a_gated_request_charges_its_key_once_and_logs_the_segmenter(tmp_path: Path) -> None:
    """The detector runs on the request's behalf: its images are not charged to the key again, and
    the request's log line names the model that answered, with the gate beside it."""
    repo = segment_repository(tmp_path)
    key = new_key()
    write_file(tmp_path / "keys.json", [make_entry("cam", key, ["infer"], images_per_min=3)])
    server = GatewayProcess(repo, env={"VISIONGATE_API_KEYS_FILE": str(tmp_path / "keys.json"),
                                       "VISIONGATE_LOG_LEVEL": "info"})
    try:
        wait_ready(server.url)
        body, auth = encode(photo("coffee"), quality=92), {"Authorization": f"Bearer {key}"}
        answers = [httpx.post(f"{server.url}/v1/segment", content=body, timeout=60,
                              headers={"content-type": "image/jpeg", **auth}) for _ in range(4)]
    finally:
        log = server.stop()
    assert [r.status_code for r in answers] == [200, 200, 200, 429]  # 3 images a minute, each charged once
    assert answers[0].json()["presence"]["model"] == GATE
    lines = [line for line in log.splitlines() if "POST /v1/segment 200" in line]
    assert len(lines) == 3 and all(f"model={SELFIE}" in line and f"presence_model={GATE}" in line for line in lines)
