"""An instance segmenter (YOLOv8-seg: detections ``[N, 4+80+32, A]`` + prototypes ``[N, 32, H/4, W/4]``, both
with dynamic dims) through a real Triton answers what the embedded runtime answers.

``YOLO("yolov8n-seg.yaml")`` built offline and exported by Ultralytics' own exporter (random weights,
BatchNorm calibrated on real photos, class biases reset so that scores spread), as in
tests/api/test_drop_in_segment.py. Triton's config carries none of the ONNX metadata the embedded
runtime reads from a dropped-in file, so the model is given the ``config.pbtxt`` the gateway completes
for it (inputs, outputs, batch size and the inferred parameters written out, labels in ``labels.txt``):
what a deployment on Triton writes. Two gateways on Triton (gRPC, HTTP), one on the embedded runtime,
the same repository.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from triton_server import TritonInstall, TritonServer, python_repository, running_triton

from support import encode, photo, running_gateway

pytestmark = [pytest.mark.triton, pytest.mark.export, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")]

PROTOCOLS = ("grpc", "http")
MODEL = "yoloseg"
AUTO = "yoloseg_auto"  # the same graph with only what Triton's auto-complete writes in its config
SIZE = 320


def yolov8_seg_onnx(out: Path) -> tuple[Path, float]:
    """The exported graph and a score threshold that lets a few hundred candidates of each photo pass."""
    from vision.head_graphs import threshold_for, yolov8_seg_graph

    path, _, (raw, _) = yolov8_seg_graph(out, SIZE)
    return path, threshold_for(raw[:, 4:84].max(axis=1), 300)


def write_completed_config(model_dir: Path, parameters: bool = True) -> dict[str, str]:
    """Write the config the gateway completes for a dropped-in ``model_dir`` as its ``config.pbtxt``, with
    the parameters and labels it inferred, or (``parameters=False``) only the tensors and batch size, as
    Triton's own auto-complete would; returns the inferred parameters."""
    from visiongate.service.model_config import to_pbtxt
    from visiongate.service.repository import read_model

    spec = read_model(model_dir).spec
    assert spec.config is not None and spec.labels is not None
    config = spec.config
    config.ClearField("parameters")
    if parameters:
        for key, value in spec.parameters.items():
            config.parameters[key].string_value = value
        config.output[0].label_filename = "labels.txt"
        (model_dir / "labels.txt").write_text("\n".join(spec.labels) + "\n", encoding="utf-8")
    (model_dir / "config.pbtxt").write_text(to_pbtxt(config), encoding="utf-8")
    return dict(spec.parameters)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    pytest.importorskip("ultralytics", reason="pip install ultralytics (deploy/install.sh test)")
    work = tmp_path_factory.mktemp("triton-yoloseg")
    onnx, threshold = yolov8_seg_onnx(work)
    repo = work / "repo"
    for name in (MODEL, AUTO):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "1" / "model.onnx").write_bytes(onnx.read_bytes())
    dropped_in = write_completed_config(repo / MODEL)
    assert dropped_in["task"] == "segment" and dropped_in["segment_kind"] == "instance"
    assert dropped_in["head"] == "yolo_seg"
    write_completed_config(repo / AUTO, parameters=False)
    return repo, threshold


@pytest.fixture(scope="module")
def yolo_triton(triton_install: TritonInstall, built: tuple[Path, float],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    work = tmp_path_factory.mktemp("triton-yoloseg-run")
    assert python_repository(built[0], work / "repo", [MODEL, AUTO]) == [MODEL, AUTO]
    yield from running_triton(work / "repo", work, triton_install)


@pytest.fixture(scope="module")
def local(built: tuple[Path, float]) -> Iterator[str]:
    yield from running_gateway(built[0])


@pytest.fixture(scope="module", params=PROTOCOLS)
def remote(request: pytest.FixtureRequest, yolo_triton: TritonServer, built: tuple[Path, float]) -> Iterator[str]:
    yield from running_gateway(built[0], env=yolo_triton.gateway_env(str(request.param)))


@pytest.fixture(scope="module")
def threshold(built: tuple[Path, float]) -> float:
    return built[1]


def post(url: str, files: list[tuple[str, tuple[str, bytes, str]]], model: str = MODEL,
         **params: object) -> httpx.Response:
    return httpx.post(f"{url}/v1/segment", params={"model": model, **params}, files=files, timeout=120)


def png(name: str, crop: tuple[int, int] | None = None) -> tuple[str, tuple[str, bytes, str]]:
    rgb = photo(name) if crop is None else photo(name)[:crop[0], :crop[1]]
    return "file", (f"{name}.png", encode(rgb, "PNG"), "image/png")


def test_the_model_is_served_as_an_instance_segmenter_by_both(remote: str, local: str) -> None:
    assert httpx.get(f"{remote}/readyz").json()["backend"] == "triton"
    info, want = (httpx.get(f"{u}/v1/models/{MODEL}").json() for u in (remote, local))
    for key in ("task", "input_size", "max_batch_size", "labels", "state"):
        assert info[key] == want[key], key
    assert {k: v for k, v in info["parameters"].items() if k != "EXECUTION_ENV_PATH"} == want["parameters"]
    assert info["parameters"]["segment_kind"] == "instance"


@pytest.mark.parametrize("mask_format", ["rle", "polygon", "png"])
def test_same_instances_and_masks_as_the_embedded_runtime(remote: str, local: str, threshold: float,
                                                          mask_format: str) -> None:
    # one request of four photos (one not square: the letterbox comes back out), and one of a single photo;
    # polygons of the random model's ragged masks are slow to trace: one photo is enough for that format
    batches = ([[png("astronaut"), png("coffee"), png("chelsea"), png("astronaut", (480, 360))], [png("rocket")]]
               if mask_format != "polygon" else [[png("coffee")]])
    for files in batches:
        r = post(remote, files, score_threshold=threshold, mask_format=mask_format)
        want = post(local, files, score_threshold=threshold, mask_format=mask_format)
        assert r.status_code == want.status_code == 200, r.text
        got, expected = r.json(), want.json()
        if len(files) == 1:  # one image is answered as one object, several as a list
            got, expected = [got], [expected]
        assert len(got) == len(expected) == len(files)
        assert sum(len(b["instances"]) for b in got) > 0, "the calibrated model finds something"
        assert got == expected


def test_same_annotated_image(remote: str, local: str, threshold: float) -> None:
    files = [png("astronaut")]
    r = post(remote, files, score_threshold=threshold, annotated="true")
    want = post(local, files, score_threshold=threshold, annotated="true")
    assert r.status_code == want.status_code == 200, r.text
    assert r.headers["X-Segment-Count"] == want.headers["X-Segment-Count"] != "0"
    assert r.content == want.content


def v2_outputs(url: str, pixels: np.ndarray) -> dict[str, tuple[list[int], np.ndarray]]:
    """Both raw outputs of ``/v2/.../infer`` for a float32 NCHW batch, in the binary tensor extension."""
    header = json.dumps({
        "inputs": [{"name": "images", "datatype": "FP32", "shape": list(pixels.shape),
                    "parameters": {"binary_data_size": pixels.nbytes}}],
        "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in ("output0", "output1")],
    }).encode()
    r = httpx.post(f"{url}/v2/models/{MODEL}/infer", content=header + pixels.tobytes(), timeout=120,
                   headers={"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 200, r.text
    size = int(r.headers["Inference-Header-Content-Length"])
    out, offset = {}, size
    for entry in json.loads(r.content[:size])["outputs"]:
        assert entry["datatype"] == "FP32"
        n = entry["parameters"]["binary_data_size"]
        out[entry["name"]] = (entry["shape"], np.frombuffer(r.content[offset:offset + n], np.float32))
        offset += n
    return out


def test_v2_detections_and_prototypes_agree(remote: str, local: str) -> None:
    from vision.head_graphs import photo_batch

    pixels = np.ascontiguousarray((photo_batch(SIZE, 3).transpose(0, 3, 1, 2) / 255).astype(np.float32))
    got, want = v2_outputs(remote, pixels), v2_outputs(local, pixels)
    assert got.keys() == want.keys() == {"output0", "output1"}
    assert got["output0"][0] == want["output0"][0] == [3, 4 + 80 + 32, 2100]
    assert got["output1"][0] == want["output1"][0] == [3, 32, SIZE // 4, SIZE // 4]
    for name in got:
        np.testing.assert_array_equal(got[name][1], want[name][1])


async def test_labels_come_from_triton_when_the_repository_is_not_visible(
        yolo_triton: TritonServer, built: tuple[Path, float], tmp_path: Path) -> None:
    # the input is [3, -1, -1]: the probe is sent at the network's input size (320x320, from the parameters);
    # output0 is [116, -1] per item: Triton ranks all 116 x 2100 entries and names the first 80 by labels.txt
    from visiongate.service.backends.triton import TritonBackend
    from visiongate.service.repository import read_labels
    from visiongate.service.settings import Settings

    backend = TritonBackend(Settings(backend="triton", triton_url=yolo_triton.grpc_url,
                                     repository=tmp_path / "not-mounted"))
    await backend.start()
    try:
        labels = backend.describe(MODEL).labels
    finally:
        await backend.close()
    assert labels == read_labels(built[0] / MODEL / "labels.txt")
    assert labels is not None and len(labels) == 80


# --- a bare model.onnx: Triton's config has no parameters, the graph's metadata completes them ----------

def test_an_auto_completed_config_is_completed_from_the_graph_as_on_the_embedded_runtime(
        remote: str, local: str, threshold: float) -> None:
    info, want = (httpx.get(f"{u}/v1/models/{AUTO}").json() for u in (remote, local))
    assert info["state"] == want["state"] == "READY"
    assert {k: v for k, v in info["parameters"].items() if k != "EXECUTION_ENV_PATH"} == want["parameters"]
    assert info["parameters"]["head"] == "yolo_seg" and info["labels"] == want["labels"] == 80
    assert info["inferred"]["task"] == want["inferred"]["task"] == "onnx-metadata:ultralytics"
    files = [png("coffee"), png("astronaut", (480, 360))]
    r = post(remote, files, AUTO, score_threshold=threshold)
    expected = post(local, files, AUTO, score_threshold=threshold)
    assert r.status_code == expected.status_code == 200, r.text
    assert r.json() == expected.json()
    explicit = post(local, files, score_threshold=threshold).json()  # the same graph with the explicit config
    assert [{**b, "model": MODEL} for b in r.json()] == explicit


async def test_without_the_repository_an_auto_completed_config_says_what_is_missing(
        yolo_triton: TritonServer, tmp_path: Path) -> None:
    from visiongate.service.backends.triton import TritonBackend
    from visiongate.service.errors import ModelNotReady
    from visiongate.service.settings import Settings

    backend = TritonBackend(Settings(backend="triton", triton_url=yolo_triton.grpc_url,
                                     repository=tmp_path / "not-mounted"))
    await backend.start()
    try:
        assert backend.ready() and backend.describe(MODEL).task == "segment"
        with pytest.raises(ModelNotReady):
            backend.describe(AUTO)
        [state] = [s for s in backend.states() if s.name == AUTO]
    finally:
        await backend.close()
    assert state.state.value == "UNAVAILABLE" and "task" in state.reason, state.reason
