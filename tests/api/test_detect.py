"""POST /v1/detect against a real gateway process serving YOLOv3-tiny (COCO) on real photos."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from support import encode, photo

DETECTOR = "yolov3_tiny"
#: where the 256 px astronaut photo is pasted in the 1024x768 canvas: x0, y0, x1, y1
PASTED = (600, 300, 856, 556)
#: the astronaut herself inside it (the right third of the photo is a flag and a model shuttle)
ASTRONAUT = (600, 300, 785, 556)


@pytest.fixture(scope="module")
def gw(gateway: str) -> str:
    """The shared gateway: it serves every default model, this one included."""
    return gateway


def detect(gw: str, body: bytes, content_type: str = "image/jpeg", accept: str | None = None,
           **params: object) -> httpx.Response:
    headers = {"content-type": content_type, **({"accept": accept} if accept else {})}
    return httpx.post(f"{gw}/v1/detect", content=body, headers=headers, params=params, timeout=60)


def labels_of(body: dict) -> list[str]:  # type: ignore[type-arg]
    return [d["label"] for d in body["detections"]]


@pytest.fixture(scope="module")
def canvas() -> np.ndarray:
    """A 1024x768 grey canvas with a 256 px astronaut pasted at ``PASTED``."""
    out = np.full((768, 1024, 3), 128, np.uint8)
    small = np.asarray(Image.fromarray(photo("astronaut")).resize((256, 256), Image.Resampling.LANCZOS))
    x0, y0, x1, y1 = PASTED
    out[y0:y1, x0:x1] = small
    return out


def person_boxes(body: dict) -> np.ndarray:  # type: ignore[type-arg]
    """``[K, 4]`` boxes of the people found, best first."""
    people = [d["box"] for d in body["detections"] if d["label"] == "person"]
    assert people, body
    return np.array(people)


def assert_astronaut_found(body: dict) -> None:  # type: ignore[type-arg]
    boxes = person_boxes(body)
    # YOLOv3-tiny also boxes her upper body alone; one box must be all of her...
    assert np.abs(boxes - ASTRONAUT).max(axis=1).min() <= 30, boxes
    # ...and nothing is found outside the pasted photo
    x0, y0, x1, y1 = PASTED
    assert (boxes[:, :2] >= (x0 - 10, y0 - 10)).all() and (boxes[:, 2:] <= (x1 + 10, y1 + 10)).all(), boxes


def test_coffee_has_a_cup_and_its_box_lies_in_the_photo(gw: str) -> None:
    r = detect(gw, encode(photo("coffee")))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == DETECTOR and body["version"] >= 1 and body["box_format"] == "xyxy"
    assert body["image"] == {"width": 600, "height": 400}
    cup = next(d for d in body["detections"] if d["label"] == "cup")
    assert cup["class_id"] == 41 and 0.25 <= cup["score"] <= 1
    x0, y0, x1, y1 = cup["box"]
    assert 0 <= x0 < x1 <= 600 and 0 <= y0 < y1 <= 400
    assert x0 < 300 < x1 and y0 < 200 < y1  # the cup fills the middle of the photo


def test_motorcycle_is_a_motorcycle_with_the_coco_spelling(gw: str) -> None:
    body = detect(gw, encode(photo("motorcycle"))).json()
    assert "motorcycle" in labels_of(body)


def test_a_small_astronaut_pasted_into_a_large_canvas_is_found_where_it_was_pasted(gw: str,
                                                                                   canvas: np.ndarray) -> None:
    body = detect(gw, encode(canvas, quality=95)).json()
    assert body["image"] == {"width": 1024, "height": 768}
    assert_astronaut_found(body)


def test_an_exif_rotated_photo_gives_boxes_in_upright_pixels(gw: str, canvas: np.ndarray) -> None:
    # stored sideways (portrait) with orientation 6: viewers rotate it 90 degrees clockwise to upright
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(canvas, k=1)))
    exif = stored.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    rotated = detect(gw, buf.getvalue()).json()
    upright = detect(gw, encode(canvas, quality=95)).json()
    assert rotated["image"] == {"width": 1024, "height": 768}
    assert_astronaut_found(rotated)
    np.testing.assert_allclose(person_boxes(rotated), person_boxes(upright), atol=4)


def test_box_formats_agree_with_each_other(gw: str) -> None:
    body = encode(photo("coffee"))
    xyxy = np.array(detect(gw, body, format="xyxy").json()["detections"][0]["box"])
    xywh = np.array(detect(gw, body, format="xywh").json()["detections"][0]["box"])
    norm = detect(gw, body, format="normalized").json()
    assert norm["box_format"] == "normalized"
    np.testing.assert_allclose(xywh, [*xyxy[:2], *(xyxy[2:] - xyxy[:2])], atol=0.02)
    np.testing.assert_allclose(np.array(norm["detections"][0]["box"]) * [600, 400, 600, 400], xyxy, atol=0.02)


def test_annotated_true_returns_a_png_of_the_original_size_with_boxes_drawn(gw: str) -> None:
    rgb = photo("coffee")
    r = detect(gw, encode(rgb, quality=95), annotated="true")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert int(r.headers["x-detection-count"]) >= 1
    drawn = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    assert drawn.shape == rgb.shape
    assert np.abs(drawn.astype(int) - rgb.astype(int)).max() > 100  # coloured lines over the photo


def test_accept_image_jpeg_returns_an_annotated_jpeg(gw: str) -> None:
    r = detect(gw, encode(photo("motorcycle")), accept="image/jpeg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (741, 500)


def test_thresholds_limits_and_class_filter(gw: str) -> None:
    camera = encode(photo("camera"))
    assert len(detect(gw, camera).json()["detections"]) >= 2  # the cameraman, twice over
    assert len(detect(gw, camera, max_detections=1).json()["detections"]) == 1
    assert detect(gw, camera, score_threshold=0.95).json()["detections"] == []
    coffee = encode(photo("coffee"))
    assert set(labels_of(detect(gw, coffee, classes="cup").json())) == {"cup"}
    assert set(labels_of(detect(gw, coffee, classes="41").json())) == {"cup"}
    assert detect(gw, coffee, classes="person").json()["detections"] == []


def test_several_images_in_one_multipart_request_give_a_list_in_order(gw: str) -> None:
    files = [("file", ("a.jpg", encode(photo("motorcycle")), "image/jpeg")),
             ("file", ("b.jpg", encode(photo("coffee")), "image/jpeg"))]
    r = httpx.post(f"{gw}/v1/detect", files=files, timeout=60)
    first, second = r.json()
    assert "motorcycle" in labels_of(first) and "cup" in labels_of(second)


# ---- bad input: a 4xx that says what was wrong ----

def error_of(r: httpx.Response, status: int, kind: str) -> dict:  # type: ignore[type-arg]
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["type"] == kind and error["message"]
    return error  # type: ignore[no-any-return]


def test_detect_with_a_classifier_is_400_naming_the_detectors(gw: str) -> None:
    error = error_of(detect(gw, encode(photo("coffee")), model="efficientnet_lite0"), 400, "WrongTask")
    assert DETECTOR in error["message"] and DETECTOR in error["models"]


def test_unknown_class_and_out_of_range_parameters_are_400(gw: str) -> None:
    coffee = encode(photo("coffee"))
    assert "unicorn" in error_of(detect(gw, coffee, classes="cup,unicorn"), 400, "InvalidArgument")["message"]
    error_of(detect(gw, coffee, score_threshold=1.5), 400, "InvalidArgument")
    error_of(detect(gw, coffee, format="cxcywh"), 400, "InvalidArgument")
    error_of(detect(gw, coffee, max_detections=0), 400, "InvalidArgument")
