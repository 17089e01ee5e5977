"""POST /v1/segment against a real gateway serving the real MediaPipe selfie model, on real photos."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from segment_models import SELFIE, segment_repository

from support import encode, photo, running_gateway

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return segment_repository(tmp_path_factory.mktemp("segment"))


@pytest.fixture(scope="module")
def gw(repo: Path) -> Iterator[str]:
    yield from running_gateway(repo)


def segment(
    gw: str, body: bytes, content_type: str = "image/jpeg", accept: str | None = None, **params: object
) -> httpx.Response:
    headers = {"content-type": content_type, **({"accept": accept} if accept else {})}
    return httpx.post(f"{gw}/v1/segment", content=body, headers=headers, params=params, timeout=60)


def class_map(result: dict) -> np.ndarray:  # type: ignore[type-arg]
    with Image.open(io.BytesIO(base64.b64decode(result["class_map"]))) as img:
        assert img.mode == "L"
        return np.asarray(img)


def reference(name: str) -> np.ndarray:
    with Image.open(DATA / f"astronaut_{name}_mask.png") as img:
        return np.asarray(img) > 0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_the_astronaut_is_segmented_like_the_reference_mask(gw: str) -> None:
    r = segment(gw, encode(photo("astronaut"), quality=92))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == SELFIE and body["kind"] == "semantic"
    assert body["image"] == {"width": 512, "height": 512}
    person = class_map(body) == 1
    assert person.shape == (512, 512)
    # The reference is her outline, drawn by eye (tests/data). The selfie model alone also marks the
    # helmet she holds (IoU 0.74 against her, 0.95 against her and the helmet); its person gate
    # (NanoDet's person box, test_segment_presence.py) cuts the helmet where it leaves her box.
    assert iou(person, reference("person")) >= 0.8
    assert (person & reference("person")).sum() / reference("person").sum() >= 0.95
    fractions = {c["label"]: c["fraction"] for c in body["classes"]}
    assert fractions["person"] == pytest.approx(person.mean(), abs=1e-6)
    assert sum(fractions.values()) == pytest.approx(1.0)


def test_a_photo_without_people_has_no_person_pixels(gw: str) -> None:
    body = segment(gw, encode(photo("rocket"), quality=92)).json()
    assert class_map(body).shape == (427, 640)
    assert (class_map(body) == 1).mean() < 0.01
    assert [c["label"] for c in body["classes"]] == ["background"]


def test_exif_orientation_is_applied_before_the_masks_are_placed(gw: str) -> None:
    upright = class_map(segment(gw, encode(photo("camera"), "PNG")).json())
    rotated = np.ascontiguousarray(np.rot90(photo("camera")))  # stored turned left, EXIF says turn right
    exif = Image.Exif()
    exif[0x0112] = 6
    r = segment(gw, encode(rotated, "JPEG", quality=95, exif=exif))
    body = r.json()
    assert body["image"] == {"width": 512, "height": 512}
    assert iou(class_map(body) == 1, upright == 1) >= 0.95


def test_a_non_square_photo_is_letterboxed_and_mapped_back(gw: str) -> None:
    wide = np.full((512, 704, 3), 40, np.uint8)  # grey bands beside her, letterboxed top and bottom
    wide[:, 96:608] = photo("astronaut")
    body = segment(gw, encode(wide, "PNG")).json()
    person = class_map(body) == 1
    assert person.shape == (512, 704)
    assert person[:, :80].mean() < 0.02 and person[:, 624:].mean() < 0.02
    assert iou(person[:, 96:608], reference("person")) >= 0.8


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (17, 5)])
def test_tiny_images_get_a_class_map_of_their_size(gw: str, size: tuple[int, int]) -> None:
    w, h = size
    img = np.asarray(Image.fromarray(photo("astronaut")).resize((w, h)))
    body = segment(gw, encode(img, "PNG")).json()
    assert class_map(body).shape == (h, w)


def test_probability_maps_only_when_asked(gw: str) -> None:
    jpeg = encode(photo("astronaut"), quality=92)
    assert segment(gw, jpeg).json()["probabilities"] is None
    body = segment(gw, jpeg, probabilities="true").json()
    maps = {
        p["label"]: np.asarray(Image.open(io.BytesIO(base64.b64decode(p["png"]))))
        for p in body["probabilities"]
    }
    assert set(maps) == {"background", "person"}
    total = maps["background"].astype(int) + maps["person"]
    assert np.abs(total - 255).max() <= 2  # two probabilities that add up to one
    assert ((maps["person"] > 127) == (class_map(body) == 1)).mean() > 0.999


def test_every_way_of_sending_images_and_lists(gw: str) -> None:
    jpeg = encode(photo("camera"), quality=90)
    one = segment(gw, jpeg).json()
    files = [
        ("file", ("a.jpg", jpeg, "image/jpeg")),
        ("file", ("b.png", encode(photo("rocket"), "PNG"), "image/png")),
    ]
    two = httpx.post(f"{gw}/v1/segment", files=files, timeout=60).json()
    assert isinstance(two, list) and len(two) == 2
    assert (class_map(two[0]) == class_map(one)).all()
    as_json = httpx.post(
        f"{gw}/v1/segment", timeout=60, json={"images": [base64.b64encode(jpeg).decode()]}
    ).json()
    assert isinstance(as_json, list) and (class_map(as_json[0]) == class_map(one)).all()


def test_annotated_answer_is_the_photo_with_the_mask_painted(gw: str) -> None:
    rgb = photo("astronaut")
    r = segment(gw, encode(rgb, "PNG"), annotated="true")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    drawn = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
    assert drawn.shape == rgb.shape
    changed = np.abs(drawn - rgb).sum(-1) > 30
    person = reference("person")
    assert changed[person].mean() > 0.8  # painted over her...
    assert changed[:250, 340:].mean() < 0.05  # ...not on the wall and the shuttle beside her
    jpeg = segment(gw, encode(rgb, "PNG"), accept="image/jpeg")
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.headers["X-Segment-Count"] == "2"


@pytest.mark.parametrize(
    "params,fragment",
    [
        ({"mask_format": "svg"}, "mask_format"),
        ({"model": "no_such_model"}, "no_such_model"),
        ({"polygon_tolerance": "-1"}, "polygon_tolerance"),
    ],
)
def test_bad_parameters_are_400s_that_say_what(gw: str, params: dict[str, str], fragment: str) -> None:
    r = segment(gw, encode(photo("camera")), **params)
    assert r.status_code in (400, 404), r.text
    assert fragment in json.dumps(r.json())


def test_not_an_image_is_a_400(gw: str) -> None:
    r = segment(gw, b"certainly not a photo")
    assert r.status_code == 400 and r.json()["error"]["type"] == "InvalidImage"


@pytest.fixture(scope="module")
def small_limit_gw(repo: Path) -> Iterator[str]:
    yield from running_gateway(repo, env={"VISIONGATE_MAX_MASK_PIXELS": "300000"})


def test_mask_output_limit(small_limit_gw: str) -> None:
    jpeg = encode(photo("astronaut"), quality=90)  # 512 x 512 = 262 144 mask pixels
    assert segment(small_limit_gw, jpeg).status_code == 200
    r = segment(small_limit_gw, jpeg, probabilities="true")  # x3 with two probability maps
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "OutputTooLarge" and "VISIONGATE_MAX_MASK_PIXELS" in r.text
    huge = encode(np.zeros((1000, 1000, 3), np.uint8), "PNG")
    r = segment(small_limit_gw, huge)
    assert r.status_code == 413 and "1000x1000" in r.json()["error"]["message"]
