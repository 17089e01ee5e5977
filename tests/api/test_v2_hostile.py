"""The OIP's answers to hostile requests: a 400 naming what is wrong, never a 500 or invalid JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from support import GatewayProcess, wait_ready

IMAGE = {"name": "image", "shape": [1, 224, 224, 3], "datatype": "UINT8", "data": [0] * (224 * 224 * 3)}


def infer(url: str, body: object, headers: dict[str, str | bytes] | None = None, model: str = "fake_classifier",
          ) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}/v2/models/{model}/infer", content=content, headers=headers, timeout=30)


@pytest.mark.parametrize("body, fragment", [
    ({"inputs": [{**IMAGE, "parameters": []}]}, "parameters must be a JSON object"),
    ({"inputs": [{**IMAGE, "parameters": "binary"}]}, "parameters must be a JSON object"),
    ({"inputs": [IMAGE], "parameters": [1]}, "parameters must be a JSON object"),
    ({"inputs": [IMAGE], "outputs": [{"name": "logits", "parameters": "x"}]}, "parameters must be a JSON object"),
    ({"inputs": [IMAGE], "outputs": {"name": "logits"}}, "'outputs' must be a list"),
    ({"inputs": [{**IMAGE, "shape": [True, 224, 224, 3]}]}, "shape must be a list of non-negative integers"),
    ({"inputs": [{**IMAGE, "parameters": {"binary_data_size": True}}]}, "binary_data_size"),
])
def test_fields_of_the_wrong_type_are_400_naming_the_field(fake_gateway: str, body: object, fragment: str) -> None:
    r = infer(fake_gateway, body)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]


def test_a_header_length_in_non_ascii_digits_is_400(fake_gateway: str) -> None:
    r = infer(fake_gateway, {"inputs": [IMAGE]}, {"Inference-Header-Content-Length": "\u00b2".encode("latin-1")})
    assert r.status_code == 400 and "Inference-Header-Content-Length" in r.json()["error"]


def test_deeply_nested_json_is_400_not_a_recursion_error(fake_gateway: str) -> None:
    r = infer(fake_gateway, b'{"inputs":' + b"[" * 1100 + b"]" * 1100 + b"}")
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]


def test_fp32_values_that_overflow_or_are_not_numbers_are_refused() -> None:
    from visiongate.service.api.v2_codec import decode_request
    from visiongate.service.errors import InvalidArgument

    for value in ("1e39", "NaN", "Infinity"):
        body = ('{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[' + value + "]}]}").encode()
        with pytest.raises(InvalidArgument, match="finite"):
            decode_request(body, None)


def test_outputs_that_are_not_finite_are_never_written_as_json() -> None:
    from visiongate.service.api.v2_codec import encode_response
    from visiongate.service.errors import NonFiniteOutput

    with pytest.raises(NonFiniteOutput, match="binary_data"):
        encode_response({"model_name": "m"}, [("y", "FP32", np.array([1.0, np.nan], np.float32), False)])
    # as binary data they travel as they are (a client asked for raw tensors)
    body, length = encode_response({"model_name": "m"}, [("y", "FP32", np.array([np.inf], np.float32), True)])
    assert length is not None and json.loads(body[:length])["outputs"][0]["parameters"]["binary_data_size"] == 4


@pytest.fixture(scope="module")
def small_output_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = GatewayProcess(Path(tmp_path_factory.mktemp("repo")), env={
        "VISIONGATE_BACKEND": "fake", "VISIONGATE_MAX_OUTPUT_PIXELS": "100000"})
    try:
        wait_ready(server.url)
        yield server.url
    finally:
        server.stop()


def test_v2_super_resolution_obeys_the_output_pixel_limit(small_output_gateway: str) -> None:
    big = np.zeros((1, 700, 700, 3), np.uint8)
    header = json.dumps({"inputs": [{"name": "image", "shape": [1, 700, 700, 3], "datatype": "UINT8",
                                     "parameters": {"binary_data_size": big.nbytes}}]}).encode()
    r = infer(small_output_gateway, header + big.tobytes(), {"Inference-Header-Content-Length": str(len(header))},
              model="fake_upscaler")
    assert r.status_code == 413, r.text
    assert "VISIONGATE_MAX_OUTPUT_PIXELS" in r.json()["error"]
    small = np.zeros((1, 100, 100, 3), np.uint8)
    header = json.dumps({"inputs": [{"name": "image", "shape": [1, 100, 100, 3], "datatype": "UINT8",
                                     "parameters": {"binary_data_size": small.nbytes}}]}).encode()
    r = infer(small_output_gateway, header + small.tobytes(),
              {"Inference-Header-Content-Length": str(len(header))}, model="fake_upscaler")
    assert r.status_code == 200, r.text
