"""POST /v1/classify.

HTTP behaviour (answers, lists, errors, limits) against a real gateway process serving
``FakeBackend``: its ``fake_classifier`` scores an image by its mean colour, so every answer is
known in advance. Real predictions (chelsea is a cat) against real ImageNet weights.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from support import FAKE, encode, photo, running_gateway

CATS = {"tabby", "tiger cat", "Egyptian cat"}
FAKE_LABELS = ("red", "green", "blue", "gray")


def classify(gateway: str, body: bytes, content_type: str = "image/png", **params: object) -> httpx.Response:
    return httpx.post(f"{gateway}/v1/classify", content=body, headers={"content-type": content_type},
                      params=params, timeout=30)


def solid(r: int, g: int, b: int, width: int = 128, height: int = 96) -> bytes:
    """A PNG of one colour: the fake classifier's answer to it is exact."""
    return encode(np.full((height, width, 3), (r, g, b), np.uint8), "PNG")


def fake_probabilities(r: int, g: int, b: int) -> dict[str, float]:
    """What ``fake_classifier`` answers for a one-colour image: softmax of (mean r, g, b, 0.5) x 10."""
    logits = np.array([r / 255, g / 255, b / 255, 0.5]) * 10
    p = np.exp(logits - logits.max())
    return dict(zip(FAKE_LABELS, (p / p.sum()).tolist(), strict=True))


def top_label(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    return str(r.json()["predictions"][0]["label"])


# ---- answers, on the fake backend ----

def test_a_red_image_is_red_and_the_answer_names_the_model_and_version(fake_gateway: str) -> None:
    r = classify(fake_gateway, solid(200, 0, 0), top_k=1)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert (body["model"], body["version"]) == ("fake_classifier", 1)
    assert [(p["label"], p["class_id"]) for p in body["predictions"]] == [("red", 0)]


def test_scores_are_probabilities_over_every_label_best_first(fake_gateway: str) -> None:
    preds = classify(fake_gateway, solid(40, 180, 90), top_k=4).json()["predictions"]
    expected = fake_probabilities(40, 180, 90)
    assert [p["label"] for p in preds] == sorted(expected, key=expected.__getitem__, reverse=True)
    assert {p["label"]: p["score"] for p in preds} == pytest.approx(expected, abs=1e-6)
    assert [p["class_id"] for p in preds] == [FAKE_LABELS.index(p["label"]) for p in preds]


def test_top_k_past_the_number_of_labels_returns_every_label(fake_gateway: str) -> None:
    preds = classify(fake_gateway, solid(0, 0, 255), top_k=50).json()["predictions"]
    assert sorted(p["label"] for p in preds) == sorted(FAKE_LABELS)
    assert sum(p["score"] for p in preds) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("fmt, content_type", [("PNG", "image/png"), ("JPEG", "image/jpeg"),
                                               ("WEBP", "image/webp"), ("BMP", "image/bmp"),
                                               ("PNG", "application/octet-stream")])
def test_every_raw_image_content_type_is_accepted(fake_gateway: str, fmt: str, content_type: str) -> None:
    blue = encode(np.full((64, 80, 3), (10, 20, 230), np.uint8), fmt)
    assert top_label(classify(fake_gateway, blue, content_type)) == "blue"


def test_a_multipart_upload_gets_the_same_answer_as_a_raw_body(fake_gateway: str) -> None:
    green = solid(30, 200, 60)
    r = httpx.post(f"{fake_gateway}/v1/classify", files={"file": ("green.png", green, "image/png")},
                   params={"model": "fake_classifier", "top_k": 4}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == classify(fake_gateway, green, top_k=4).json()
    assert r.json()["predictions"][0]["label"] == "green"


def test_several_files_in_one_request_give_a_list_in_order(fake_gateway: str) -> None:
    files = [("file", (f"{i}.png", solid(*rgb), "image/png"))
             for i, rgb in enumerate([(0, 0, 250), (250, 0, 0), (0, 250, 0), (100, 100, 100)])]
    r = httpx.post(f"{fake_gateway}/v1/classify", files=files, params={"top_k": 1}, timeout=30)
    assert r.status_code == 200, r.text
    assert [one["predictions"][0]["label"] for one in r.json()] == ["blue", "red", "green", "gray"]


def test_one_file_in_a_multipart_request_gives_one_object_not_a_list(fake_gateway: str) -> None:
    r = httpx.post(f"{fake_gateway}/v1/classify", files=[("file", ("a.png", solid(250, 0, 0), "image/png"))],
                   timeout=30)
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "red"


def test_concurrent_requests_each_get_their_own_answer(fake_gateway: str) -> None:
    red, blue = solid(220, 10, 10), solid(10, 10, 220)

    async def run() -> list[str]:
        async with httpx.AsyncClient(base_url=fake_gateway, timeout=60) as client:
            rs = await asyncio.gather(*(client.post("/v1/classify", content=b, params={"top_k": 1},
                                                    headers={"content-type": "image/png"})
                                        for b in [red, blue] * 16))
            return [top_label(r) for r in rs]

    assert asyncio.run(run()) == ["red", "blue"] * 16


# ---- bad input: always a 4xx with a JSON body that says what was wrong ----

def assert_error(r: httpx.Response, status: int, kind: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["type"] == kind and error["message"]
    return error  # type: ignore[no-any-return]


def test_an_empty_body_is_400_empty_body(fake_gateway: str) -> None:
    assert_error(classify(fake_gateway, b""), 400, "EmptyBody")


def test_bytes_that_are_not_an_image_are_400_invalid_image(fake_gateway: str) -> None:
    assert_error(classify(fake_gateway, b"<html>hello</html>", "image/jpeg"), 400, "InvalidImage")


def test_a_truncated_jpeg_is_400_saying_truncated(fake_gateway: str, chelsea_jpeg: bytes) -> None:
    err = assert_error(classify(fake_gateway, chelsea_jpeg[:4000], "image/jpeg"), 400, "InvalidImage")
    assert "truncated" in str(err["message"])


def test_an_unknown_model_is_404_and_lists_what_exists(fake_gateway: str) -> None:
    err = assert_error(classify(fake_gateway, solid(1, 2, 3), model="resnet9000"), 404, "ModelNotFound")
    assert "resnet9000" in str(err["message"])
    assert "fake_classifier" in err["available"]  # type: ignore[operator]


def test_classify_with_a_detector_is_400_naming_the_classifiers(fake_gateway: str) -> None:
    err = assert_error(classify(fake_gateway, solid(1, 2, 3), model="fake_detector"), 400, "WrongTask")
    assert "fake_classifier" in str(err["message"])


@pytest.mark.parametrize("top_k", [0, -1, "many"])
def test_top_k_must_be_a_positive_integer(fake_gateway: str, top_k: object) -> None:
    err = assert_error(classify(fake_gateway, solid(1, 2, 3), top_k=top_k), 400, "InvalidArgument")
    assert "top_k" in str(err["message"])


def test_a_text_content_type_is_415_listing_what_is_accepted(fake_gateway: str) -> None:
    err = assert_error(classify(fake_gateway, solid(1, 2, 3), "text/plain"), 415, "UnsupportedMediaType")
    assert "multipart/form-data" in err["accepted"]  # type: ignore[operator]


def test_a_corrupt_multipart_body_is_400(fake_gateway: str) -> None:
    r = classify(fake_gateway, b"--xyz\r\nnonsense", "multipart/form-data; boundary=xyz")
    assert r.status_code == 400 and r.json()["error"]["message"]


@pytest.fixture(scope="module")
def strict_fake_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fake backend behind small limits: 1 MB bodies, 1 MP images."""
    yield from running_gateway(tmp_path_factory.mktemp("empty"), {
        **FAKE, "VISIONGATE_MAX_BODY_BYTES": "1000000", "VISIONGATE_MAX_IMAGE_PIXELS": "1000000"})


def test_an_image_over_the_pixel_limit_is_413_naming_its_size(strict_fake_gateway: str) -> None:
    big = encode(np.zeros((1200, 1200, 3), np.uint8), "PNG")  # a tiny file, 1.44 MP
    err = assert_error(classify(strict_fake_gateway, big), 413, "ImageTooLarge")
    assert "1200x1200" in str(err["message"])
    assert top_label(classify(strict_fake_gateway, solid(0, 250, 0, 1000, 1000))) == "green"  # 1 MP is fine


def test_a_body_over_the_size_limit_is_413_even_when_chunked(strict_fake_gateway: str) -> None:
    assert_error(classify(strict_fake_gateway, b"\xff" * 1_100_000, "image/jpeg"), 413, "BodyTooLarge")

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"\xff" * 100_000

    r = httpx.post(f"{strict_fake_gateway}/v1/classify", content=chunks(),
                   headers={"content-type": "image/jpeg"})
    assert_error(r, 413, "BodyTooLarge")


# ---- real predictions, on real ImageNet weights ----

def test_chelsea_is_a_cat(gateway: str, chelsea_jpeg: bytes) -> None:
    r = classify(gateway, chelsea_jpeg, "image/jpeg", top_k=3)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "efficientnet_lite0" and body["version"] >= 1
    assert CATS & {p["label"] for p in body["predictions"]}


def test_coffee_is_espresso_as_a_multipart_upload(gateway: str, coffee_jpeg: bytes) -> None:
    r = httpx.post(f"{gateway}/v1/classify", files={"file": ("coffee.jpg", coffee_jpeg, "image/jpeg")},
                   params={"model": "efficientnet_lite0", "top_k": 1}, timeout=30)
    assert r.status_code == 200, r.text
    top = r.json()["predictions"][0]
    assert (top["label"], top["class_id"]) == ("espresso", 967) and top["score"] > 0.5


def test_the_real_model_scores_all_1000_imagenet_classes(gateway: str, coffee_jpeg: bytes) -> None:
    preds = classify(gateway, coffee_jpeg, "image/jpeg", top_k=1000).json()["predictions"]
    assert len(preds) == 1000
    assert sum(p["score"] for p in preds) == pytest.approx(1.0, abs=1e-4)
    assert [p["score"] for p in preds] == sorted((p["score"] for p in preds), reverse=True)


def test_png_and_jpeg_of_the_same_photo_get_the_same_real_label(gateway: str) -> None:
    rgb = photo("chelsea")
    a = classify(gateway, encode(rgb, "PNG"), "image/png", top_k=1).json()["predictions"][0]
    b = classify(gateway, encode(rgb, "JPEG", quality=95), "image/jpeg", top_k=1).json()["predictions"][0]
    assert a["label"] == b["label"]


def test_real_photos_batched_together_each_get_their_own_real_label(gateway: str, chelsea_jpeg: bytes,
                                                                    coffee_jpeg: bytes) -> None:
    files = [("file", ("a.jpg", coffee_jpeg, "image/jpeg")), ("file", ("b.jpg", chelsea_jpeg, "image/jpeg"))]
    r = httpx.post(f"{gateway}/v1/classify", files=files, params={"top_k": 3}, timeout=30)
    assert r.status_code == 200, r.text
    first, second = r.json()
    assert first["predictions"][0]["label"] == "espresso"
    assert CATS & {p["label"] for p in second["predictions"]}
