"""/v1/segment and /v2 of the selfie segmenter through a real Triton answer what the embedded runtime answers.

Two real gateways over one real tritonserver (gRPC and HTTP, python backend running the same
``model.onnx`` with onnxruntime) and one gateway on the embedded runtime, all serving the real
MediaPipe selfie model and its person gate (NanoDet, whose person boxes keep the "person" pixels;
through Triton too), on real photos. Answers are compared exactly: both backends run the same graph
with the same onnxruntime on the same CPU, and the tensors came out bit-identical here, so any
difference is the Triton path's (transport, batching, output shapes), not float noise.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from segment_models import GATE, SELFIE, segment_repository
from triton_server import TritonInstall, TritonServer, python_repository, running_triton

from support import encode, photo, running_gateway
from visiongate.service.backends.triton import TritonBackend, parse_classification, probe_shape
from visiongate.service.repository import read_labels, spec_from_config
from visiongate.service.settings import Settings

# tritonclient.http.aio posts one bytes object; aiohttp warns (ResourceWarning) above 1 MiB
pytestmark = [pytest.mark.triton, pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")]

PROTOCOLS = ("grpc", "http")


@pytest.fixture(scope="module")
def seg_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return segment_repository(tmp_path_factory.mktemp("triton-segment"))


@pytest.fixture(scope="module")
def seg_triton(triton_install: TritonInstall, seg_repo: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    work = tmp_path_factory.mktemp("triton-segment-run")
    # the selfie model's person pixels are gated by a detector's person boxes (parameters.presence_model)
    assert python_repository(seg_repo, work / "repo", [SELFIE, GATE]) == sorted([SELFIE, GATE])
    yield from running_triton(work / "repo", work, triton_install)


@pytest.fixture(scope="module")
def local(seg_repo: Path) -> Iterator[str]:
    yield from running_gateway(seg_repo)


@pytest.fixture(scope="module", params=PROTOCOLS)
def remote(request: pytest.FixtureRequest, seg_triton: TritonServer, seg_repo: Path) -> Iterator[str]:
    yield from running_gateway(seg_repo, env=seg_triton.gateway_env(str(request.param)))


def segment(url: str, body: bytes, content_type: str = "image/jpeg", **params: object) -> httpx.Response:
    return httpx.post(f"{url}/v1/segment", content=body, headers={"content-type": content_type},
                      params={"model": SELFIE, **params}, timeout=60)


def class_map(result: dict[str, Any]) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(result["class_map"]))) as img:
        assert img.mode == "L"
        return np.asarray(img)


def rotated_camera() -> bytes:
    """The camera photo stored turned left, with EXIF orientation 6 saying "turn it right"."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(np.ascontiguousarray(np.rot90(photo("camera"))), "JPEG", quality=95, exif=exif)


def tiny(w: int, h: int) -> bytes:
    return encode(np.asarray(Image.fromarray(photo("astronaut")).resize((w, h))), "PNG")


IMAGES = {
    "astronaut": lambda: encode(photo("astronaut"), quality=92),
    "coffee": lambda: encode(photo("coffee"), quality=92),
    "rotated-exif": rotated_camera,
    "tiny-1x1": lambda: tiny(1, 1),
    "tiny-17x5": lambda: tiny(17, 5),
}


def assert_same_answer(remote: dict[str, Any], local: dict[str, Any]) -> None:
    assert {k: v for k, v in remote.items() if k != "class_map"} == \
           {k: v for k, v in local.items() if k != "class_map"}
    np.testing.assert_array_equal(class_map(remote), class_map(local))


@pytest.mark.parametrize("name", IMAGES)
def test_same_class_map_and_classes_as_the_embedded_runtime(remote: str, local: str, name: str) -> None:
    body = IMAGES[name]()
    kind = "image/png" if body.startswith(b"\x89PNG") else "image/jpeg"
    r, want = segment(remote, body, kind), segment(local, body, kind)
    assert r.status_code == want.status_code == 200, r.text
    assert_same_answer(r.json(), want.json())
    labels = [c["label"] for c in r.json()["classes"]]
    # the gate ran through Triton too: the cup the selfie model alone paints as "person" is background
    if name in ("astronaut", "coffee"):
        assert labels == (["background", "person"] if name == "astronaut" else ["background"]), labels


def test_several_images_in_one_request_are_answered_in_order(remote: str, local: str) -> None:
    # five images against max_batch_size 4: Triton gets a full batch and a single, concurrently
    names = ("astronaut", "coffee", "camera", "rocket", "chelsea")
    files = [("file", (f"{n}.jpg", encode(photo(n), quality=90), "image/jpeg")) for n in names]
    r = httpx.post(f"{remote}/v1/segment", params={"model": SELFIE}, files=files, timeout=120)
    want = httpx.post(f"{local}/v1/segment", params={"model": SELFIE}, files=files, timeout=120)
    assert r.status_code == want.status_code == 200, r.text
    assert len(r.json()) == len(want.json()) == len(names)
    for got, expected in zip(r.json(), want.json(), strict=True):
        assert_same_answer(got, expected)
    sizes = [(b["image"]["height"], b["image"]["width"]) for b in r.json()]
    assert sizes == [photo(n).shape[:2] for n in names]


def test_same_probability_maps(remote: str, local: str) -> None:
    jpeg = encode(photo("astronaut"), quality=92)
    r, want = segment(remote, jpeg, probabilities="true"), segment(local, jpeg, probabilities="true")
    assert r.status_code == want.status_code == 200, r.text
    assert [p["label"] for p in r.json()["probabilities"]] == ["background", "person"]
    assert_same_answer(r.json(), want.json())  # the maps are PNGs: equal bytes, equal pixels


def test_same_annotated_image(remote: str, local: str) -> None:
    png = encode(photo("astronaut"), "PNG")
    r, want = segment(remote, png, "image/png", annotated="true"), segment(local, png, "image/png", annotated="true")
    assert r.status_code == want.status_code == 200, r.text
    assert r.headers["content-type"] == want.headers["content-type"] == "image/png"
    assert r.headers["X-Segment-Count"] == want.headers["X-Segment-Count"] == "2"
    assert r.content == want.content


def v2_infer(url: str, pixels: np.ndarray, binary: bool) -> tuple[dict[str, Any], np.ndarray]:
    """``/v2/.../infer`` of a uint8 NHWC batch; the answer's output entry and its ``scores``."""
    inputs = {"name": "image", "datatype": "UINT8", "shape": list(pixels.shape)}
    if not binary:
        r = httpx.post(f"{url}/v2/models/{SELFIE}/infer", timeout=120, json={
            "inputs": [{**inputs, "data": pixels.reshape(-1).tolist()}], "outputs": [{"name": "scores"}]})
        assert r.status_code == 200, r.text
        (out,) = r.json()["outputs"]
        return out, np.asarray(out.pop("data"), np.float32).reshape(out["shape"])
    header = json.dumps({
        "inputs": [{**inputs, "parameters": {"binary_data_size": pixels.nbytes}}],
        "outputs": [{"name": "scores", "parameters": {"binary_data": True}}],
    }).encode()
    r = httpx.post(f"{url}/v2/models/{SELFIE}/infer", content=header + pixels.tobytes(), timeout=120,
                   headers={"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 200, r.text
    size = int(r.headers["Inference-Header-Content-Length"])
    (out,) = json.loads(r.content[:size])["outputs"]
    data = r.content[size:size + out["parameters"]["binary_data_size"]]
    return out, np.frombuffer(data, np.float32).reshape(out["shape"])


def network_sized(name: str) -> np.ndarray:
    return np.asarray(Image.fromarray(photo(name)).resize((256, 256), Image.Resampling.BILINEAR))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_v2_raw_score_tensors_agree(remote: str, local: str, binary: bool) -> None:
    pixels = np.stack([network_sized(n) for n in ("astronaut", "coffee", "camera")])
    out, scores = v2_infer(remote, pixels, binary)
    want_out, want = v2_infer(local, pixels, binary)
    assert out == want_out
    assert out["datatype"] == "FP32" and out["shape"] == [3, 2, 256, 256]
    np.testing.assert_array_equal(scores, want)
    assert 0.2 < float((scores[0].argmax(axis=0) == 1).mean()) < 0.8  # the astronaut is there


def test_v2_metadata_and_model_info_agree(remote: str, local: str) -> None:
    assert httpx.get(f"{remote}/readyz").json()["backend"] == "triton"
    meta, want = (httpx.get(f"{u}/v2/models/{SELFIE}").json() for u in (remote, local))
    assert meta["platform"] == "python" and want["platform"] == "onnxruntime_onnx"
    assert {k: v for k, v in meta.items() if k != "platform"} == {k: v for k, v in want.items() if k != "platform"}
    assert meta["outputs"] == [{"name": "scores", "datatype": "FP32", "shape": [-1, 2, -1, -1]}]
    info, want_info = (httpx.get(f"{u}/v1/models/{SELFIE}").json() for u in (remote, local))
    for key in ("task", "input_size", "max_batch_size", "labels", "versions", "state"):
        assert info[key] == want_info[key], key


# --- labels when the gateway cannot see the repository --------------------------------------------

def test_classification_strings_of_a_flattened_output_give_the_label_file() -> None:
    # what Triton's classification extension answers for a [2, H, W] item: entries past the label file
    # carry no label, and the order is the scores', not the indices'
    entries = np.array([b"1.0:43688", b"1.0:1:person", b"0.9:7", b"0.0:0:background", b"0.0:5"], dtype=object)
    assert parse_classification(entries, None) == ("background", "person")
    assert parse_classification(entries[:3], None) is None  # line 0 missing: no partial list
    assert parse_classification(np.array([b"1.0:3"], dtype=object), None) is None


def seg_config(max_batch_size: int, dims: list[int], data_type: str = "TYPE_FP32") -> dict[str, Any]:
    params = {"task": "segment", "segment_kind": "instance", "head": "yolo_seg", "input_size": "320,256",
              "resize": "letterbox", "mean": "0,0,0", "std": "1,1,1",
              "normalization": "gateway" if data_type == "TYPE_FP32" else "in_graph"}
    return {"name": "m", "platform": "onnxruntime_onnx", "max_batch_size": max_batch_size,
            "input": [{"name": "images", "data_type": data_type, "dims": dims}],
            "output": [{"name": "output0", "data_type": "TYPE_FP32", "dims": [116, -1]},
                       {"name": "output1", "data_type": "TYPE_FP32", "dims": [32, -1, -1]}],
            "parameters": {k: {"string_value": v} for k, v in params.items()}}


@pytest.mark.parametrize(("config", "shape"), [
    (seg_config(4, [3, -1, -1]), [1, 3, 320, 256]),  # (height, width) = input_size, in the input's layout
    (seg_config(4, [-1, -1, 3], "TYPE_UINT8"), [1, 320, 256, 3]),
    (seg_config(0, [-1, 3, -1, -1]), [1, 3, 320, 256]),  # no batching, a dynamic first axis: one item
    (seg_config(0, [3, -1, -1]), [3, 320, 256]),  # no batch axis at all
    (seg_config(4, [3, 320, 256]), [1, 3, 320, 256]),  # static dims are kept as they are
])
def test_the_label_probe_is_sent_at_the_network_input_size(config: dict[str, Any], shape: list[int]) -> None:
    assert probe_shape(spec_from_config(config)) == shape


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_labels_of_a_dynamic_output_come_from_triton(seg_triton: TritonServer, seg_repo: Path,
                                                           tmp_path: Path, protocol: str) -> None:
    labels = await triton_labels(seg_triton, protocol, tmp_path / "not-mounted")
    assert labels == read_labels(seg_repo / SELFIE / "labels.txt") == ("background", "person")


async def test_labels_past_the_probe_limit_are_class_ids(seg_triton: TritonServer, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    # one item's scores are 2 x 256 x 256 entries: a limit below that gives up instead of ranking them all
    labels = await triton_labels(seg_triton, "grpc", tmp_path / "not-mounted",
                                 triton_label_probe_max_entries=2 * 256 * 256 - 1)
    assert labels is None
    assert "VISIONGATE_TRITON_LABEL_PROBE_MAX_ENTRIES" in caplog.text


async def triton_labels(triton: TritonServer, protocol: str, repository: Path,
                        **extra: object) -> tuple[str, ...] | None:
    settings = Settings(backend="triton", triton_url=triton.url(protocol), triton_protocol=protocol,
                        repository=repository, **extra)  # type: ignore[arg-type]
    backend = TritonBackend(settings)
    await backend.start()
    try:
        return backend.describe(SELFIE).labels
    finally:
        await backend.close()


def test_a_gateway_that_cannot_see_the_repository_names_the_classes(seg_triton: TritonServer,
                                                                     tmp_path: Path, local: str) -> None:
    jpeg = encode(photo("astronaut"), quality=92)
    for url in running_gateway(tmp_path / "not-mounted", env={
            "VISIONGATE_BACKEND": "triton", "VISIONGATE_TRITON_URL": seg_triton.grpc_url}):
        assert_same_answer(segment(url, jpeg).json(), segment(local, jpeg).json())
