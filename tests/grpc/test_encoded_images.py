"""Encoded images on /v2 (REST binary) and gRPC, sent by the unmodified tritonclient: a BYTES tensor named
like the model's image input, one JPEG/PNG/WebP file per element, decoded and pre-processed by the
gateway with the model's own parameters. Checked against the same pixels pre-processed here with the
gateway's own ``service.inference.prepare`` and sent as a UINT8 tensor."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from conftest import Gateway
from support import encode, photo
from visiongate.service.backends.fake import FAKE_CONFIGS, FAKE_LABELS
from visiongate.service.inference import prepare
from visiongate.service.repository import spec_from_config
from visiongate.service.settings import Settings

SPEC = spec_from_config(FAKE_CONFIGS["fake_classifier"], labels=FAKE_LABELS["fake_classifier"], versions=(1,))


@pytest.fixture(scope="module")
def files() -> list[bytes]:
    return [encode(photo("coffee"), "JPEG", quality=90), encode(photo("chelsea"), "PNG"),
            encode(photo("astronaut"), "WEBP", quality=90)]


@pytest.fixture(scope="module")
def expected(files: list[bytes], fake_gateway: Gateway) -> np.ndarray:
    """The logits of the same images pre-processed here and sent as pixels."""
    pixels = np.stack([prepare(f, SPEC, Settings()).tensor for f in files])
    with tg.InferenceServerClient(fake_gateway.grpc_url) as c:
        inp = tg.InferInput("image", list(pixels.shape), "UINT8")
        inp.set_data_from_numpy(pixels)
        return c.infer("fake_classifier", [inp]).as_numpy("logits")


def _grpc_input(files: list[bytes]) -> tg.InferInput:
    inp = tg.InferInput("image", [len(files)], "BYTES")
    inp.set_data_from_numpy(np.array(files, dtype=np.object_))
    return inp


def _http_input(files: list[bytes], shape: list[int] | None = None) -> th.InferInput:
    inp = th.InferInput("image", shape or [len(files)], "BYTES")
    inp.set_data_from_numpy(np.array(files, dtype=np.object_).reshape(shape or [len(files)]), binary_data=True)
    return inp


def test_grpc_encoded_images_give_the_logits_of_their_preprocessed_pixels(
        fake_gateway: Gateway, files: list[bytes], expected: np.ndarray) -> None:
    with tg.InferenceServerClient(fake_gateway.grpc_url) as c:
        got = c.infer("fake_classifier", [_grpc_input(files)]).as_numpy("logits")
    assert got.shape == (3, 4)
    assert got.tobytes() == expected.tobytes()


def test_rest_encoded_images_give_the_same_logits(fake_gateway: Gateway, files: list[bytes],
                                                  expected: np.ndarray) -> None:
    with th.InferenceServerClient(fake_gateway.http_host) as c:
        got = c.infer("fake_classifier", [_http_input(files, [3, 1])]).as_numpy("logits")
    assert got.tobytes() == expected.tobytes()


def test_encoded_images_with_the_classification_extension(fake_gateway: Gateway, files: list[bytes],
                                                          expected: np.ndarray) -> None:
    with tg.InferenceServerClient(fake_gateway.grpc_url) as c:
        out = tg.InferRequestedOutput("logits", class_count=1)
        got = c.infer("fake_classifier", [_grpc_input(files[:1])], outputs=[out]).as_numpy("logits")
    top = int(np.argmax(expected[0]))
    assert got.tolist() == [[f"{expected[0, top]:f}:{top}:{FAKE_LABELS['fake_classifier'][top]}".encode()]]


def test_grpc_streaming_takes_encoded_images(fake_gateway: Gateway, files: list[bytes],
                                             expected: np.ndarray) -> None:
    import queue

    answers: queue.Queue[tuple[object, object]] = queue.Queue()
    with tg.InferenceServerClient(fake_gateway.grpc_url) as c:
        c.start_stream(callback=lambda result, error: answers.put((result, error)))
        c.async_stream_infer("fake_classifier", [_grpc_input(files)], request_id="jpeg")
        result, error = answers.get(timeout=30)
        c.stop_stream()
    assert error is None
    assert result.as_numpy("logits").tobytes() == expected.tobytes()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("data", "status", "fragment"), [
    ([b"not an image"], "StatusCode.INVALID_ARGUMENT", "not an image"),
    ([b""], "StatusCode.INVALID_ARGUMENT", "image 0 is empty"),
    ([b"x"] * 9, "StatusCode.INVALID_ARGUMENT", "9 images"),
])
def test_bad_encoded_images_are_refused_naming_why(fake_gateway: Gateway, data: list[bytes], status: str,
                                                   fragment: str) -> None:
    with tg.InferenceServerClient(fake_gateway.grpc_url) as c, pytest.raises(InferenceServerException) as err:
        c.infer("fake_classifier", [_grpc_input(data)])
    assert err.value.status() == status
    assert fragment in err.value.message()
    with th.InferenceServerClient(fake_gateway.http_host) as c, pytest.raises(InferenceServerException) as err:
        c.infer("fake_classifier", [_http_input(data)])
    assert err.value.status() == "400"
    assert fragment in err.value.message()


def test_an_image_over_the_pixel_limit_is_refused(fake_gateway: Gateway) -> None:
    huge = encode(np.zeros((7000, 6000, 3), np.uint8), "PNG")  # 42 MP > the 40 MP default
    with tg.InferenceServerClient(fake_gateway.grpc_url) as c, pytest.raises(InferenceServerException) as err:
        c.infer("fake_classifier", [_grpc_input([huge])])
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "VISIONGATE_MAX_IMAGE_PIXELS" in err.value.message()
