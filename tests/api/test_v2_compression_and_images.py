"""/v2 with what tritonclient.http sends and asks for: gzip/deflate bodies both ways, and encoded photos
(a BYTES input holding JPEG bytes) on the real exported efficientnet_lite0."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as th

from support import encode, photo

MODEL = "efficientnet_lite0"
CAT_IDS = {281, 282, 285}  # ImageNet: tabby, tiger cat, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def client(gateway: str) -> Iterator[th.InferenceServerClient]:
    c = th.InferenceServerClient(gateway.removeprefix("http://"))
    yield c
    c.close()


def _jpegs(*names: str) -> th.InferInput:
    inp = th.InferInput("image", [len(names)], "BYTES")
    inp.set_data_from_numpy(np.array([encode(photo(n), quality=90) for n in names], dtype=np.object_),
                            binary_data=True)
    return inp


def test_encoded_photos_are_classified(client: th.InferenceServerClient) -> None:
    logits = client.infer(MODEL, [_jpegs("chelsea", "coffee")]).as_numpy("logits")
    assert logits.shape == (2, 1000)
    assert int(logits[0].argmax()) in CAT_IDS
    assert int(logits[1].argmax()) == ESPRESSO


@pytest.mark.parametrize(("request_algorithm", "response_algorithm"), [("gzip", "gzip"), ("deflate", "deflate"),
                                                                       (None, "gzip"), ("gzip", None)])
def test_compressed_requests_and_responses(client: th.InferenceServerClient, request_algorithm: str | None,
                                           response_algorithm: str | None) -> None:
    plain = client.infer(MODEL, [_jpegs("chelsea")]).as_numpy("logits")
    got = client.infer(MODEL, [_jpegs("chelsea")], request_compression_algorithm=request_algorithm,
                       response_compression_algorithm=response_algorithm).as_numpy("logits")
    assert got.tobytes() == plain.tobytes()


def test_the_response_is_compressed_only_when_asked(gateway: str) -> None:
    body = {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 224, 224, 3],
                        "data": [0] * (224 * 224 * 3)}]}
    url = f"{gateway}/v2/models/{MODEL}/infer"
    with httpx.Client(timeout=30) as http:
        raw = http.post(url, json=body, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in raw.headers
        packed = http.post(url, content=gzip.compress(raw.request.content),
                           headers={"Content-Encoding": "gzip", "Accept-Encoding": "gzip;q=0, deflate",
                                    "Content-Type": "application/json"})
    assert packed.headers["content-encoding"] == "deflate"
    # httpx inflates it; the document is the same as the uncompressed one
    assert packed.json() == raw.json()


def test_a_corrupt_gzip_body_is_a_400(gateway: str) -> None:
    r = httpx.post(f"{gateway}/v2/models/{MODEL}/infer", content=b"\x1f\x8bnot gzip",
                   headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400
    assert "cannot be decompressed" in r.json()["error"]
