"""A model dropped into the repository as nothing but ``<version>/model.onnx`` is served right.

A YOLOv8n built offline (random weights, BatchNorm calibrated on real photos) and exported by
Ultralytics' own exporter, copied in with no ``config.pbtxt``: the gateway completes the config from
the graph and Ultralytics' metadata (task, class names, input size), letterboxes as Ultralytics
does, decodes the ``[N, 84, A]`` head and answers boxes in the photo's own pixels (this model used
to load, report ready and answer 500 on every request).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest

from support import GatewayProcess, encode, photo, wait_ready

pytestmark = [pytest.mark.export, pytest.mark.slow]


@pytest.fixture(scope="module")
def yolo_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, float]]:
    pytest.importorskip("ultralytics", reason="pip install ultralytics (deploy/install.sh test)")
    from vision.head_graphs import ultralytics_case

    work = tmp_path_factory.mktemp("yolo")
    case = ultralytics_case("yolov8n.yaml", work, "yolov8")
    repo = work / "repo"
    (repo / "yolo" / "1").mkdir(parents=True)
    shutil.copy(case.onnx, repo / "yolo" / "1" / "model.onnx")
    server = GatewayProcess(repo)
    try:
        wait_ready(server.url)
        yield server.url, case.score_threshold
    finally:
        server.stop()


def test_the_config_is_completed_from_the_graph_and_its_metadata(yolo_gateway: tuple[str, float]) -> None:
    url, _ = yolo_gateway
    info = httpx.get(f"{url}/v1/models/yolo").json()
    assert info["task"] == "detect" and info["state"] == "READY"
    assert info["inferred"]["head"] == info["inferred"]["task"] == "onnx-metadata:ultralytics"
    assert info["parameters"]["head"] == "yolov8" and info["labels"] == 80  # Ultralytics' names
    config = httpx.get(f"{url}/v2/models/yolo/config").json()
    assert config["input"][0]["dims"] and config["max_batch_size"] >= 1


def test_a_drop_in_yolov8_answers_boxes_in_the_photo_s_pixels(yolo_gateway: tuple[str, float]) -> None:
    url, threshold = yolo_gateway
    rgb = photo("astronaut")[:480, :400]  # not square: the letterbox's padding must come back out
    r = httpx.post(f"{url}/v1/detect?model=yolo&score_threshold={threshold}", content=encode(rgb, "PNG"),
                   headers={"content-type": "image/png"}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"] == {"width": 400, "height": 480}
    assert body["detections"], "the calibrated model finds something at its own threshold"
    for d in body["detections"]:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 <= x2 <= 400 and 0 <= y1 <= y2 <= 480
