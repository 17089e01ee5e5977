"""The OIP /v2 infer of the selfie segmenter gives the raw score tensor, and its arg-max is /v1/segment's class map.

A real gateway serving the real MediaPipe selfie model; the photo is sent at the network's own size
(256x256), so the placement is the identity and the two answers must agree pixel for pixel.
"""

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
from visiongate.service.vision.masks import inside_boxes


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    repo: Path = segment_repository(tmp_path_factory.mktemp("segment-v2"))
    yield from running_gateway(repo)


def v2_scores(gw: str, pixels: np.ndarray) -> np.ndarray:
    """The raw ``scores`` for one NHWC uint8 image, sent and answered in the binary tensor extension."""
    header = json.dumps({
        "inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, *pixels.shape],
                    "parameters": {"binary_data_size": pixels.nbytes}}],
        "outputs": [{"name": "scores", "parameters": {"binary_data": True}}],
    }).encode()
    r = httpx.post(f"{gw}/v2/models/{SELFIE}/infer", content=header + pixels.tobytes(),
                   headers={"Inference-Header-Content-Length": str(len(header))}, timeout=60)
    assert r.status_code == 200, r.text
    size = int(r.headers["Inference-Header-Content-Length"])
    meta = json.loads(r.content[:size])
    (out,) = meta["outputs"]
    assert out["name"] == "scores" and out["datatype"] == "FP32"
    data = r.content[size:size + out["parameters"]["binary_data_size"]]
    return np.frombuffer(data, np.float32).reshape(out["shape"])


def test_v2_raw_scores_argmax_is_the_v1_class_map(gw: str) -> None:
    rgb = np.asarray(Image.fromarray(photo("astronaut")).resize((256, 256), Image.Resampling.BILINEAR))
    scores = v2_scores(gw, np.ascontiguousarray(rgb))
    assert scores.shape == (1, 2, 256, 256)
    assert np.all((scores >= 0) & (scores <= 1)) and np.allclose(scores.sum(axis=1), 1, atol=1e-4)
    r = httpx.post(f"{gw}/v1/segment", content=encode(rgb, "PNG"), headers={"content-type": "image/png"},
                   timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"] == {"width": 256, "height": 256}
    with Image.open(io.BytesIO(base64.b64decode(body["class_map"]))) as img:
        ids = np.asarray(img)
    raw = scores[0].argmax(axis=0)
    decided = np.abs(scores[0, 1] - scores[0, 0]) > 1e-4  # ties may fall either way
    assert 0.2 < float((raw == 1).mean()) < 0.8, "the astronaut is found"
    # /v1 applies the model's person gate (its detector's boxes, grown by 10%); /v2 is the raw tensor
    boxes = np.array([d["box"] for d in body["presence"]["detections"]], np.float32)
    gated = inside_boxes((256, 256), boxes, margin=0.1)
    np.testing.assert_array_equal(ids[decided & gated], raw[decided & gated])
    assert not ids[~gated].any()
