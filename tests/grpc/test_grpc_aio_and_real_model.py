"""tritonclient.grpc.aio (unary and streaming) against the fake gateway, and the real exported
efficientnet_lite0 end to end: the same logits over gRPC as over REST, photos sent encoded or as pixels."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.grpc.aio as tga
import tritonclient.http as th

from conftest import Gateway, start_gateway
from support import encode, photo

CAT_IDS = {281, 282, 285}  # ImageNet: tabby, tiger cat, Egyptian cat


def _pixels(batch: np.ndarray) -> tg.InferInput:
    inp = tg.InferInput("image", list(batch.shape), "UINT8")
    inp.set_data_from_numpy(batch)
    return inp


async def test_aio_client_unary_and_streaming(fake_gateway: Gateway) -> None:
    client = tga.InferenceServerClient(fake_gateway.grpc_url)
    try:
        assert await client.is_server_ready()
        meta = await client.get_model_metadata("fake_classifier", as_json=True)
        assert meta["inputs"][0]["name"] == "image"
        batch = np.full((2, 224, 224, 3), 51, np.uint8)
        result = await client.infer("fake_classifier", [_pixels(batch)])
        np.testing.assert_allclose(result.as_numpy("logits"), [[2, 2, 2, 5]] * 2, rtol=1e-6)

        async def requests() -> AsyncIterator[dict[str, Any]]:
            for i in range(5):
                yield {"model_name": "fake_classifier", "inputs": [_pixels(np.full((1, 224, 224, 3), 51 * i,
                                                                                   np.uint8))],
                       "request_id": str(i)}

        seen = {}
        async for answer, error in client.stream_infer(requests()):
            assert error is None
            seen[answer.get_response().id] = float(answer.as_numpy("logits")[0, 0])
        assert seen == pytest.approx({str(i): 2.0 * i for i in range(5)})
    finally:
        await client.close()


@pytest.fixture(scope="module")
def real_gateway(repository: Path) -> Iterator[Gateway]:
    yield from start_gateway(repository)


def test_real_model_grpc_and_rest_logits_are_bit_identical(real_gateway: Gateway) -> None:
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    with tg.InferenceServerClient(real_gateway.grpc_url) as c:
        via_grpc = c.infer("efficientnet_lite0", [_pixels(batch)]).as_numpy("logits")
    with th.InferenceServerClient(real_gateway.http_host) as h:
        inp = th.InferInput("image", list(batch.shape), "UINT8")
        inp.set_data_from_numpy(batch, binary_data=True)
        via_rest = h.infer("efficientnet_lite0", [inp]).as_numpy("logits")
    assert via_grpc.shape == (2, 1000)
    assert via_grpc.tobytes() == via_rest.tobytes()


def test_real_model_classifies_an_encoded_photo_over_grpc(real_gateway: Gateway) -> None:
    inp = tg.InferInput("image", [1], "BYTES")
    inp.set_data_from_numpy(np.array([encode(photo("chelsea"), quality=90)], dtype=np.object_))
    with tg.InferenceServerClient(real_gateway.grpc_url) as c:
        top = c.infer("efficientnet_lite0", [inp], outputs=[tg.InferRequestedOutput("logits", class_count=3)])
    rows = top.as_numpy("logits")[0]
    assert int(rows[0].split(b":")[1]) in CAT_IDS
    assert all(len(s.split(b":")) == 3 for s in rows)  # score:index:label, labels from labels.txt
