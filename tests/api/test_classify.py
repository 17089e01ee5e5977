"""POST /v1/classify against a real gateway process serving real ImageNet weights."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from support import encode, photo

CATS = {"tabby", "tiger cat", "Egyptian cat"}


def classify(gateway: str, body: bytes, content_type: str = "image/jpeg", **params: object) -> httpx.Response:
    return httpx.post(f"{gateway}/v1/classify", content=body, headers={"content-type": content_type},
                      params=params, timeout=30)


def test_chelsea_is_a_cat(gateway: str, chelsea_jpeg: bytes) -> None:
    r = classify(gateway, chelsea_jpeg, top_k=3)
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


def test_probabilities_over_all_classes_sum_to_one(gateway: str, coffee_jpeg: bytes) -> None:
    preds = classify(gateway, coffee_jpeg, top_k=1000).json()["predictions"]
    assert len(preds) == 1000
    assert sum(p["score"] for p in preds) == pytest.approx(1.0, abs=1e-4)
    assert [p["score"] for p in preds] == sorted((p["score"] for p in preds), reverse=True)


def test_png_and_jpeg_of_the_same_photo_agree(gateway: str) -> None:
    rgb = photo("chelsea")
    a = classify(gateway, encode(rgb, "PNG"), "image/png", top_k=1).json()["predictions"][0]
    b = classify(gateway, encode(rgb, "JPEG", quality=95), top_k=1).json()["predictions"][0]
    assert a["label"] == b["label"]


def test_several_files_in_one_request_give_a_list_in_order(gateway: str, chelsea_jpeg: bytes,
                                                            coffee_jpeg: bytes) -> None:
    files = [("file", ("a.jpg", coffee_jpeg, "image/jpeg")), ("file", ("b.jpg", chelsea_jpeg, "image/jpeg"))]
    r = httpx.post(f"{gateway}/v1/classify", files=files, params={"top_k": 3}, timeout=30)
    assert r.status_code == 200
    first, second = r.json()
    assert first["predictions"][0]["label"] == "espresso"
    assert CATS & {p["label"] for p in second["predictions"]}


def test_concurrent_requests_all_succeed_with_their_own_answers(gateway: str, chelsea_jpeg: bytes,
                                                                coffee_jpeg: bytes) -> None:
    import asyncio

    async def run() -> list[str]:
        async with httpx.AsyncClient(base_url=gateway, timeout=60) as client:
            bodies = [chelsea_jpeg, coffee_jpeg] * 12
            rs = await asyncio.gather(*(client.post("/v1/classify", content=b, params={"top_k": 1},
                                                    headers={"content-type": "image/jpeg"}) for b in bodies))
            return [r.json()["predictions"][0]["label"] for r in rs]

    labels = asyncio.run(run())
    assert labels[1::2] == ["espresso"] * 12
    assert all(label in CATS for label in labels[0::2])


# ---- bad input: always a 4xx with a JSON body that says what was wrong ----

def assert_error(r: httpx.Response, status: int, kind: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["type"] == kind and error["message"]
    return error  # type: ignore[no-any-return]


def test_empty_body(gateway: str) -> None:
    assert_error(classify(gateway, b""), 400, "EmptyBody")


def test_not_an_image(gateway: str) -> None:
    assert_error(classify(gateway, b"<html>hello</html>"), 400, "InvalidImage")


def test_truncated_image(gateway: str, chelsea_jpeg: bytes) -> None:
    err = assert_error(classify(gateway, chelsea_jpeg[:4000]), 400, "InvalidImage")
    assert "truncated" in str(err["message"])


def test_unknown_model_is_404_and_lists_what_exists(gateway: str, chelsea_jpeg: bytes) -> None:
    err = assert_error(classify(gateway, chelsea_jpeg, model="resnet9000"), 404, "ModelNotFound")
    assert "efficientnet_lite0" in err["available"]  # type: ignore[operator]


def test_bad_top_k(gateway: str, chelsea_jpeg: bytes) -> None:
    assert_error(classify(gateway, chelsea_jpeg, top_k=0), 400, "InvalidArgument")
    assert_error(classify(gateway, chelsea_jpeg, top_k="many"), 400, "InvalidArgument")


def test_wrong_content_type_is_415(gateway: str, chelsea_jpeg: bytes) -> None:
    assert_error(classify(gateway, chelsea_jpeg, "text/plain"), 415, "UnsupportedMediaType")


def test_corrupt_multipart(gateway: str) -> None:
    r = classify(gateway, b"--xyz\r\nnonsense", "multipart/form-data; boundary=xyz")
    assert r.status_code == 400 and r.json()["error"]["message"]


@pytest.fixture(scope="module")
def strict_gateway(repository):  # type: ignore[no-untyped-def]
    """A gateway with small limits: 1 MB bodies, 1 MP images."""
    from support import GatewayProcess, wait_ready

    server = GatewayProcess(repository, env={"VISIONGATE_MAX_BODY_BYTES": "1000000",
                                             "VISIONGATE_MAX_IMAGE_PIXELS": "1000000"})
    try:
        wait_ready(server.url)
        yield server.url
    finally:
        server.stop()


def test_image_over_the_pixel_limit_is_413(strict_gateway: str) -> None:
    big = encode(np.zeros((1200, 1200, 3), np.uint8), "PNG")  # tiny file, 1.44 MP
    err = assert_error(classify(strict_gateway, big, "image/png"), 413, "ImageTooLarge")
    assert "1200x1200" in str(err["message"])


def test_body_over_the_size_limit_is_413_even_when_chunked(strict_gateway: str) -> None:
    assert_error(classify(strict_gateway, b"\xff" * 1_100_000), 413, "BodyTooLarge")

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"\xff" * 100_000

    r = httpx.post(f"{strict_gateway}/v1/classify", content=chunks(), headers={"content-type": "image/jpeg"})
    assert_error(r, 413, "BodyTooLarge")
