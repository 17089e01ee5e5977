"""POST /v1/detect.

HTTP behaviour (box formats, annotated images, thresholds, lists, errors) against a real gateway
process serving ``FakeBackend``: its ``fake_detector`` boxes the pixels brighter than the image's
mean (``bright``, 0.9) and the whole image (``dark``, 0.3), so every box is known in advance. Real
predictions (coffee has a cup) against YOLOv3-tiny (COCO) on real photos.
"""

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
#: a 400x300 dark picture with a white rectangle here: the fake detector's ``bright`` box
WHITE = (100, 50, 300, 250)


def detect(gw: str, body: bytes, content_type: str = "image/png", accept: str | None = None,
           **params: object) -> httpx.Response:
    headers = {"content-type": content_type, **({"accept": accept} if accept else {})}
    return httpx.post(f"{gw}/v1/detect", content=body, headers=headers, params=params, timeout=60)


def labels_of(body: dict) -> list[str]:  # type: ignore[type-arg]
    return [d["label"] for d in body["detections"]]


def boxes_of(r: httpx.Response) -> dict[str, list[float]]:
    assert r.status_code == 200, r.text
    return {d["label"]: d["box"] for d in r.json()["detections"]}


def white_on_dark(width: int = 400, height: int = 300,
                  white: tuple[int, int, int, int] = WHITE) -> np.ndarray:
    out = np.full((height, width, 3), 60, np.uint8)
    x0, y0, x1, y1 = white
    out[y0:y1, x0:x1] = 255
    return out


@pytest.fixture(scope="module")
def picture() -> bytes:
    return encode(white_on_dark(), "PNG")


# ---- boxes, on the fake backend ----

def test_boxes_are_in_the_original_image_s_pixels_best_first(fake_gateway: str, picture: bytes) -> None:
    r = detect(fake_gateway, picture)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert (body["model"], body["version"], body["box_format"]) == ("fake_detector", 1, "xyxy")
    assert body["image"] == {"width": 400, "height": 300}
    found = [(d["label"], d["class_id"], round(d["score"], 3)) for d in body["detections"]]
    assert found == [("bright", 0, 0.9), ("dark", 1, 0.3)]
    np.testing.assert_allclose(boxes_of(r)["bright"], WHITE, atol=0.5)
    np.testing.assert_allclose(boxes_of(r)["dark"], [0, 0, 400, 300], atol=0.5)


def test_box_formats_xywh_and_normalized_describe_the_same_box(fake_gateway: str, picture: bytes) -> None:
    xywh = detect(fake_gateway, picture, format="xywh")
    norm = detect(fake_gateway, picture, format="normalized")
    assert (xywh.json()["box_format"], norm.json()["box_format"]) == ("xywh", "normalized")
    np.testing.assert_allclose(boxes_of(xywh)["bright"], [100, 50, 200, 200], atol=0.5)
    np.testing.assert_allclose(boxes_of(norm)["bright"], [0.25, 50 / 300, 0.75, 250 / 300], atol=2e-3)
    np.testing.assert_allclose(boxes_of(norm)["dark"], [0, 0, 1, 1], atol=2e-3)


def test_an_exif_rotated_image_gives_boxes_in_upright_pixels(fake_gateway: str) -> None:
    upright = white_on_dark()
    # stored sideways (portrait) with orientation 6: viewers rotate it 90 degrees clockwise to upright
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1)))
    exif = stored.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, format="PNG", exif=exif.tobytes())
    r = detect(fake_gateway, buf.getvalue())
    assert r.json()["image"] == {"width": 400, "height": 300}
    np.testing.assert_allclose(boxes_of(r)["bright"], WHITE, atol=0.5)


def test_annotated_true_returns_a_png_of_the_original_size_with_the_boxes_drawn(fake_gateway: str,
                                                                                 picture: bytes) -> None:
    r = detect(fake_gateway, picture, annotated="true")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-detection-count"] == "2"
    drawn = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
    original = white_on_dark().astype(int)
    assert drawn.shape == original.shape
    changed = np.abs(drawn - original).max(axis=2) > 40
    x0, y0, x1, y1 = WHITE
    assert changed[y0:y1, x0 - 1:x0 + 2].any(axis=1).all()  # the bright box's left edge is drawn...
    assert not changed[y0 + 20:y1 - 20, x0 + 20:x1 - 20].any()  # ...over an untouched inside


@pytest.mark.parametrize("accept, media, fmt", [("image/jpeg", "image/jpeg", "JPEG"),
                                                ("image/png", "image/png", "PNG"),
                                                ("image/webp", "image/png", "PNG")])
def test_an_image_accept_header_returns_an_annotated_jpeg_or_else_png(fake_gateway: str, picture: bytes,
                                                                          accept: str, media: str,
                                                                          fmt: str) -> None:
    r = detect(fake_gateway, picture, accept=accept)
    assert r.status_code == 200 and r.headers["content-type"] == media
    img = Image.open(io.BytesIO(r.content))
    assert (img.format, img.size) == (fmt, (400, 300))


def test_score_threshold_max_detections_and_classes_filter_the_boxes(fake_gateway: str,
                                                                     picture: bytes) -> None:
    assert list(boxes_of(detect(fake_gateway, picture))) == ["bright", "dark"]
    assert list(boxes_of(detect(fake_gateway, picture, score_threshold=0.5))) == ["bright"]
    assert list(boxes_of(detect(fake_gateway, picture, score_threshold=0.95))) == []
    assert list(boxes_of(detect(fake_gateway, picture, max_detections=1))) == ["bright"]
    assert list(boxes_of(detect(fake_gateway, picture, classes="dark"))) == ["dark"]
    assert list(boxes_of(detect(fake_gateway, picture, classes="1"))) == ["dark"]
    assert list(boxes_of(detect(fake_gateway, picture, classes="bright,dark"))) == ["bright", "dark"]


def test_several_images_in_one_multipart_request_give_a_list_in_order(fake_gateway: str) -> None:
    left, right = (20, 40, 120, 140), (200, 100, 300, 220)  # square images: no letterbox padding
    files = [("file", (f"{i}.png", encode(white_on_dark(320, 320, box), "PNG"), "image/png"))
             for i, box in enumerate([left, right, left])]
    r = httpx.post(f"{fake_gateway}/v1/detect", files=files, timeout=60)
    assert r.status_code == 200, r.text
    bright = [next(d["box"] for d in one["detections"] if d["label"] == "bright") for one in r.json()]
    np.testing.assert_allclose(bright, [left, right, left], atol=1.5)


# ---- bad input: a 4xx that says what was wrong ----

def error_of(r: httpx.Response, status: int, kind: str) -> dict:  # type: ignore[type-arg]
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["type"] == kind and error["message"]
    return error  # type: ignore[no-any-return]


def test_detect_with_a_classifier_is_400_naming_the_detectors(fake_gateway: str, picture: bytes) -> None:
    error = error_of(detect(fake_gateway, picture, model="fake_classifier"), 400, "WrongTask")
    assert "fake_detector" in error["message"] and "fake_detector" in error["models"]


def test_a_class_the_model_does_not_know_is_400_naming_it(fake_gateway: str, picture: bytes) -> None:
    error = error_of(detect(fake_gateway, picture, classes="bright,unicorn"), 400, "InvalidArgument")
    assert "unicorn" in error["message"]
    assert "7" in error_of(detect(fake_gateway, picture, classes="7"), 400, "InvalidArgument")["message"]


@pytest.mark.parametrize("param, value", [("score_threshold", 1.5), ("score_threshold", -0.1),
                                          ("iou_threshold", 2), ("format", "cxcywh"), ("max_detections", 0),
                                          ("annotated", "maybe")])
def test_out_of_range_parameters_are_400_naming_the_parameter(fake_gateway: str, picture: bytes, param: str,
                                                              value: object) -> None:
    error = error_of(detect(fake_gateway, picture, **{param: value}), 400, "InvalidArgument")
    assert param in error["message"]


# ---- real predictions, on YOLOv3-tiny ----

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


def test_coffee_has_a_cup_and_its_box_lies_in_the_photo(gateway: str) -> None:
    r = detect(gateway, encode(photo("coffee")), "image/jpeg")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == DETECTOR and body["version"] >= 1 and body["box_format"] == "xyxy"
    assert body["image"] == {"width": 600, "height": 400}
    cup = next(d for d in body["detections"] if d["label"] == "cup")
    assert cup["class_id"] == 41 and 0.25 <= cup["score"] <= 1
    x0, y0, x1, y1 = cup["box"]
    assert 0 <= x0 < x1 <= 600 and 0 <= y0 < y1 <= 400
    assert x0 < 300 < x1 and y0 < 200 < y1  # the cup fills the middle of the photo


def test_motorcycle_is_a_motorcycle_with_the_coco_spelling(gateway: str) -> None:
    body = detect(gateway, encode(photo("motorcycle")), "image/jpeg").json()
    assert "motorcycle" in labels_of(body)


def test_a_small_astronaut_pasted_into_a_large_canvas_is_found_where_it_was_pasted(
        gateway: str, canvas: np.ndarray) -> None:
    body = detect(gateway, encode(canvas, quality=95), "image/jpeg").json()
    assert body["image"] == {"width": 1024, "height": 768}
    assert_astronaut_found(body)


def test_an_exif_rotated_photo_gives_boxes_in_upright_pixels(gateway: str, canvas: np.ndarray) -> None:
    # stored sideways (portrait) with orientation 6: viewers rotate it 90 degrees clockwise to upright
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(canvas, k=1)))
    exif = stored.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    rotated = detect(gateway, buf.getvalue(), "image/jpeg").json()
    upright = detect(gateway, encode(canvas, quality=95), "image/jpeg").json()
    assert rotated["image"] == {"width": 1024, "height": 768}
    assert_astronaut_found(rotated)
    np.testing.assert_allclose(person_boxes(rotated), person_boxes(upright), atol=4)


def test_the_class_filter_takes_coco_names_and_ids(gateway: str) -> None:
    coffee = encode(photo("coffee"))
    assert set(labels_of(detect(gateway, coffee, "image/jpeg", classes="cup").json())) == {"cup"}
    assert set(labels_of(detect(gateway, coffee, "image/jpeg", classes="41").json())) == {"cup"}
    assert detect(gateway, coffee, "image/jpeg", classes="person").json()["detections"] == []
