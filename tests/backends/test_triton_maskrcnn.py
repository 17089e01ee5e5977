"""torchvision's Mask R-CNN (``max_batch_size: 0``: one ``uint8 [H, W, 3]`` image per call, the ``pasted`` head)
exported by ``visiongate export`` and served by a real Triton answers what the embedded runtime answers.

The checkpoint is the untrained ``maskrcnn_resnet50_fpn`` of tests/export/test_torchvision_instance.py (no
weights can be downloaded here): 100 instances per photo with masks near 0.5, meaningless as predictions but
a full exercise of the path. Triton serves it through the python backend running the same ``model.onnx`` with
onnxruntime on the same CPU; answers are compared exactly (labels, scores, boxes, RLE and polygon masks), as
for the other Triton segmenters: both sides run one graph on one runtime, so any difference is the Triton
path's (transport, the absent batch axis, output shapes), not float noise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from triton_server import TritonInstall, TritonServer, python_repository, running_triton

from support import encode, photo, running_gateway

pytestmark = [pytest.mark.triton, pytest.mark.export, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")]

PROTOCOLS = ("grpc", "http")
MODEL = "mrcnn"
SIZE = 320
OUTPUTS = {"boxes": "FP32", "labels": "INT64", "scores": "FP32", "masks": "FP32"}
DTYPES = {"FP32": np.float32, "INT64": np.int64}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torchvision", reason="pip install -e '.[export]'")
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    from visiongate.service.cli import main

    work = tmp_path_factory.mktemp("triton-maskrcnn")
    torch.manual_seed(0)
    state = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).state_dict()
    torch.save({"model": state, "epoch": 12}, work / "train_ckpt.pth")
    photos = work / "photos"
    photos.mkdir()
    (photos / "coffee.jpg").write_bytes(encode(photo("coffee")))
    assert main(["export", "--repository", str(work / "repo"), "--arch", "torchvision:maskrcnn_resnet50_fpn",
                 "--checkpoint", str(work / "train_ckpt.pth"), "--input-size", str(SIZE), str(SIZE),
                 "--images", str(photos), "--name", MODEL, "--no-progress"]) == 0
    return work / "repo"


@pytest.fixture(scope="module")
def mrcnn_triton(triton_install: TritonInstall, exported: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    work = tmp_path_factory.mktemp("triton-maskrcnn-run")
    assert python_repository(exported, work / "repo", [MODEL]) == [MODEL]
    yield from running_triton(work / "repo", work, triton_install)


@pytest.fixture(scope="module")
def local(exported: Path) -> Iterator[str]:
    yield from running_gateway(exported)


@pytest.fixture(scope="module", params=PROTOCOLS)
def remote(request: pytest.FixtureRequest, mrcnn_triton: TritonServer, exported: Path) -> Iterator[str]:
    yield from running_gateway(exported, env=mrcnn_triton.gateway_env(str(request.param)))


def segment(url: str, rgb: np.ndarray, **params: object) -> dict[str, Any]:
    r = httpx.post(f"{url}/v1/segment", params={"model": MODEL, **params}, content=encode(rgb, "PNG"),
                   headers={"content-type": "image/png"}, timeout=120)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_served_as_an_instance_segmenter_of_one_image_per_call_by_both(remote: str, local: str) -> None:
    assert httpx.get(f"{remote}/readyz").json()["backend"] == "triton"
    info, want = (httpx.get(f"{u}/v1/models/{MODEL}").json() for u in (remote, local))
    for key in ("task", "input_size", "max_batch_size", "labels", "state"):
        assert info[key] == want[key], key
    assert info["max_batch_size"] == 0 and info["state"] == "READY"
    assert {k: v for k, v in info["parameters"].items() if k != "EXECUTION_ENV_PATH"} == want["parameters"]
    assert (info["parameters"]["segment_kind"], info["parameters"]["head"]) == ("instance", "pasted")


@pytest.mark.parametrize("name", ["astronaut", "coffee"])  # 512x512, and 600x400 (the letterbox pads below)
def test_same_instances_and_rle_masks_as_the_embedded_runtime(remote: str, local: str, name: str) -> None:
    rgb = photo(name)
    got, want = segment(remote, rgb), segment(local, rgb)
    assert got["image"] == want["image"] == {"width": rgb.shape[1], "height": rgb.shape[0]}
    assert got["kind"] == "instance" and want["instances"], "the untrained model answers instances"
    assert got == want


def test_several_photos_in_one_request_and_concurrent_requests_answer_alike(remote: str, local: str) -> None:
    # no batch axis: the gateway sends a request's photos one call each, and Triton's python model gets
    # concurrent requests that must not be joined into one image
    names = ("coffee", "astronaut")
    files = [("file", (f"{n}.png", encode(photo(n), "PNG"), "image/png")) for n in names]
    got, want = (httpx.post(f"{u}/v1/segment", params={"model": MODEL}, files=files, timeout=120)
                 for u in (remote, local))
    assert got.status_code == want.status_code == 200, got.text
    assert len(want.json()) == 2 and got.json() == want.json()
    with ThreadPoolExecutor(len(names)) as pool:
        answers = list(pool.map(lambda n: segment(remote, photo(n)), names))
    assert answers == want.json()

def test_same_polygons_as_the_embedded_runtime(remote: str, local: str) -> None:
    # the untrained model's ragged masks are slow to trace: the ten best are enough
    rgb = photo("coffee")
    got, want = (segment(u, rgb, mask_format="polygon", max_detections=10) for u in (remote, local))
    assert len(want["instances"]) == 10 and all(isinstance(i["mask"], list) for i in want["instances"])
    assert got == want


def v2_outputs(url: str, image: np.ndarray) -> dict[str, tuple[list[int], np.ndarray]]:
    """Every raw output of ``/v2/.../infer`` for one ``uint8 [H, W, 3]`` image (no batch axis), binary."""
    header = json.dumps({
        "inputs": [{"name": "image", "datatype": "UINT8", "shape": list(image.shape),
                    "parameters": {"binary_data_size": image.nbytes}}],
        "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in OUTPUTS],
    }).encode()
    r = httpx.post(f"{url}/v2/models/{MODEL}/infer", content=header + image.tobytes(), timeout=120,
                   headers={"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 200, r.text
    size = int(r.headers["Inference-Header-Content-Length"])
    out, offset = {}, size
    for entry in json.loads(r.content[:size])["outputs"]:
        assert entry["datatype"] == OUTPUTS[entry["name"]]
        n = entry["parameters"]["binary_data_size"]
        out[entry["name"]] = (entry["shape"], np.frombuffer(r.content[offset:offset + n], DTYPES[entry["datatype"]]))
        offset += n
    return out


def test_v2_raw_outputs_agree(remote: str, local: str) -> None:
    image = np.ascontiguousarray(photo("astronaut")[:SIZE, :SIZE])
    got, want = v2_outputs(remote, image), v2_outputs(local, image)
    assert got.keys() == want.keys() == set(OUTPUTS)
    n = want["scores"][0][0]
    assert n > 0
    assert {k: s for k, (s, _) in got.items()} == {k: s for k, (s, _) in want.items()} == {
        "boxes": [n, 4], "labels": [n], "scores": [n], "masks": [n, 1, SIZE, SIZE]}
    for name in OUTPUTS:
        np.testing.assert_array_equal(got[name][1], want[name][1], err_msg=name)


# --- labels when the gateway cannot see the repository --------------------------------------------

def test_class_ids_of_fewer_detections_than_label_lines_give_no_labels() -> None:
    from visiongate.service.backends.triton import parse_classification

    # Triton's classification of the "labels" output (one class id per detection) names entry k after label
    # line k: three detections name lines 0..2 only, which is not the 91-line label file
    few = np.array([b"71:2:bicycle", b"32:0:__background__", b"24:1:person"], dtype=object)
    assert parse_classification(few, None) is None
    # more detections than lines: the entries past the file come back unlabelled, so the file is whole
    assert parse_classification(np.array([*few, b"5:3"], dtype=object), None) == (
        "__background__", "person", "bicycle")


async def test_labels_come_from_triton_when_the_repository_is_not_visible(
        mrcnn_triton: TritonServer, exported: Path, tmp_path: Path) -> None:
    # the untrained model answers 100 detections on the blank probe, more than the 91 label lines
    from visiongate.service.backends.triton import TritonBackend
    from visiongate.service.repository import read_labels
    from visiongate.service.settings import Settings

    backend = TritonBackend(Settings(backend="triton", triton_url=mrcnn_triton.grpc_url,
                                     repository=tmp_path / "not-mounted"))
    await backend.start()
    try:
        spec = backend.describe(MODEL)
    finally:
        await backend.close()
    assert spec.max_batch_size == 0 and spec.labels == read_labels(exported / MODEL / "labels.txt")
    assert spec.labels is not None and len(spec.labels) == 91
