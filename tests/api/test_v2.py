"""The Open Inference Protocol v2 REST API, driven by the real ``tritonclient.http`` client.

A client written for Triton must work unchanged against the gateway: metadata, readiness, inference
with JSON and binary tensors, and the classification extension. Errors come back in the protocol's
``{"error": "..."}`` shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

tritonclient_http = pytest.importorskip("tritonclient.http")
skdata = pytest.importorskip("skimage.data")

MODEL = "efficientnet_lite0"
# ImageNet ids for tabby / tiger cat / Egyptian cat
CAT_IDS = {281, 282, 285}


@pytest.fixture(scope="module")
def gateway_url(gateway: str) -> str:
    """host:port of the real gateway process (tritonclient takes no scheme)."""
    return gateway.removeprefix("http://")


@pytest.fixture(scope="module")
def client(gateway_url: str) -> Iterator[object]:
    c = tritonclient_http.InferenceServerClient(gateway_url)
    yield c
    c.close()


def chelsea_224() -> np.ndarray:
    """scikit-image's cat photo, centre-cropped and resized to the model's uint8 [1, 224, 224, 3] input."""
    img = Image.fromarray(skdata.chelsea())
    w, h = img.size
    side = min(w, h)
    img = img.crop(((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)).resize((224, 224))
    return np.asarray(img, dtype=np.uint8)[None]


def coffee_224() -> np.ndarray:
    return np.asarray(Image.fromarray(skdata.coffee()).resize((224, 224)), dtype=np.uint8)[None]


def test_server_is_live_and_ready(client) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready("no_such_model")


def test_server_metadata_lists_the_supported_extensions(client) -> None:
    meta = client.get_server_metadata()
    assert meta["name"] == "visiongate"
    assert {"binary_tensor_data", "classification"} <= set(meta["extensions"])


def test_model_metadata_describes_tensors_with_a_dynamic_batch_axis(client) -> None:
    meta = client.get_model_metadata(MODEL)
    assert meta["name"] == MODEL
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 224, 224, 3]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]}]
    assert client.get_model_metadata(MODEL, "1") == meta
    config = client.get_model_config(MODEL)
    assert config["max_batch_size"] == 8 and config["input"][0]["data_type"] == "TYPE_UINT8"


@pytest.mark.parametrize("binary", [True, False], ids=["binary tensors", "JSON tensors"])
def test_infer_classifies_chelsea_as_a_cat(client, binary: bool) -> None:
    image = tritonclient_http.InferInput("image", [1, 224, 224, 3], "UINT8")
    image.set_data_from_numpy(chelsea_224(), binary_data=binary)
    wanted = tritonclient_http.InferRequestedOutput("logits", binary_data=binary)
    result = client.infer(MODEL, [image], outputs=[wanted], request_id="cat-1")
    logits = result.as_numpy("logits")
    assert logits.shape == (1, 1000) and logits.dtype == np.float32
    assert int(logits.argmax()) in CAT_IDS
    response = result.get_response()
    assert response["model_name"] == MODEL and response["model_version"] == "1" and response["id"] == "cat-1"


def test_binary_and_json_tensors_give_the_same_logits(client) -> None:
    outs = []
    for binary in (True, False):
        image = tritonclient_http.InferInput("image", [1, 224, 224, 3], "UINT8")
        image.set_data_from_numpy(coffee_224(), binary_data=binary)
        outs.append(client.infer(MODEL, [image], outputs=[
            tritonclient_http.InferRequestedOutput("logits", binary_data=not binary)]).as_numpy("logits"))
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    assert int(outs[0].argmax()) == 967  # espresso


def test_a_batch_of_two_photos_returns_one_row_each(client) -> None:
    batch = np.concatenate([chelsea_224(), coffee_224()])
    image = tritonclient_http.InferInput("image", list(batch.shape), "UINT8")
    image.set_data_from_numpy(batch)
    logits = client.infer(MODEL, [image], model_version="1").as_numpy("logits")
    assert logits.shape == (2, 1000)
    assert int(logits[0].argmax()) in CAT_IDS and int(logits[1].argmax()) == 967


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "JSON"])
def test_classification_extension_returns_score_index_label_strings(client, repository: Path, binary: bool) -> None:
    image = tritonclient_http.InferInput("image", [1, 224, 224, 3], "UINT8")
    image.set_data_from_numpy(chelsea_224())
    wanted = tritonclient_http.InferRequestedOutput("logits", binary_data=binary, class_count=3)
    result = client.infer(MODEL, [image], outputs=[wanted])
    classes = result.as_numpy("logits")
    assert classes.shape == (1, 3) and classes.dtype == np.object_
    rows = [c.decode() if isinstance(c, bytes) else c for c in classes[0]]
    plain = tritonclient_http.InferRequestedOutput("logits")
    logits = client.infer(MODEL, [image], outputs=[plain]).as_numpy("logits")[0]
    top3 = np.argsort(-logits)[:3]
    labels = (repository / MODEL / "labels.txt").read_text().splitlines()
    for text, idx in zip(rows, top3, strict=True):
        score, index, label = text.split(":", 2)
        assert int(index) == idx and label == labels[idx]
        assert score == f"{logits[idx]:f}"  # Triton prints the raw output value like C's %f
    assert int(rows[0].split(":")[1]) in CAT_IDS


def test_wrong_dtype_is_a_400_in_the_protocol_error_shape(gateway_url: str, client) -> None:
    image = tritonclient_http.InferInput("image", [1, 224, 224, 3], "FP32")
    image.set_data_from_numpy(chelsea_224().astype(np.float32))
    with pytest.raises(tritonclient_http.InferenceServerException) as err:
        client.infer(MODEL, [image])
    assert err.value.status() == "400" and "datatype FP32" in err.value.message()


@pytest.mark.parametrize("body, fragment", [
    ({"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 100, 100, 3], "data": [0] * 30000}]},
     "does not match [-1, 224, 224, 3]"),
    ({"inputs": [{"name": "image", "datatype": "UINT8", "shape": [9, 224, 224, 3],
                  "parameters": {"binary_data_size": 10}}]}, "runs past the body"),
    ({"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1], "data": [1]}]}, "takes inputs"),
    ({"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 224, 224, 3], "data": [1, 2]}]},
     "needs 150528 values"),
    ({"inputs": []}, "non-empty 'inputs'"),
])
def test_malformed_requests_are_400_with_a_plain_error_string(gateway_url: str, body: dict, fragment: str) -> None:
    r = httpx.post(f"http://{gateway_url}/v2/models/{MODEL}/infer", json=body)
    assert r.status_code == 400
    assert isinstance(r.json()["error"], str) and fragment in r.json()["error"]


def test_batch_over_max_batch_size_is_refused(gateway_url: str) -> None:
    header = b'{"inputs":[{"name":"image","datatype":"UINT8","shape":[9,224,224,3],' \
             b'"parameters":{"binary_data_size":1354752}}]}'
    r = httpx.post(f"http://{gateway_url}/v2/models/{MODEL}/infer", content=header + bytes(9 * 224 * 224 * 3),
                   headers={"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 400 and "max_batch_size" in r.json()["error"]


def test_unknown_model_and_version_are_404(gateway_url: str) -> None:
    base = f"http://{gateway_url}/v2/models"
    for url in (f"{base}/nope", f"{base}/{MODEL}/versions/7", f"{base}/nope/ready"):
        r = httpx.get(url)
        assert r.status_code == 404 and isinstance(r.json()["error"], str), url
    r = httpx.post(f"{base}/{MODEL}/versions/7/infer", json={"inputs": []})
    assert r.status_code == 404 and "no version 7" in r.json()["error"]


def test_a_non_numeric_version_is_400_in_the_protocol_shape(gateway_url: str) -> None:
    r = httpx.get(f"http://{gateway_url}/v2/models/{MODEL}/versions/latest")
    assert r.status_code == 400 and isinstance(r.json()["error"], str)


def test_unknown_requested_output_is_400(client) -> None:
    image = tritonclient_http.InferInput("image", [1, 224, 224, 3], "UINT8")
    image.set_data_from_numpy(chelsea_224())
    with pytest.raises(tritonclient_http.InferenceServerException, match="no output 'boxes'"):
        client.infer(MODEL, [image], outputs=[tritonclient_http.InferRequestedOutput("boxes")])


def test_gzip_compressed_requests_are_accepted(client) -> None:
    image = tritonclient_http.InferInput("image", [1, 224, 224, 3], "UINT8")
    image.set_data_from_numpy(chelsea_224())
    logits = client.infer(MODEL, [image], request_compression_algorithm="gzip").as_numpy("logits")
    assert int(logits.argmax()) in CAT_IDS
