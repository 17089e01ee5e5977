"""A YOLOv8-seg dropped into the repository as nothing but ``<version>/model.onnx`` is served on /v1/segment.

``YOLO("yolov8n-seg.yaml")`` built offline (random weights, BatchNorm calibrated on real photos, class
biases reset so that scores spread) and exported by Ultralytics' own exporter: the gateway reads
Ultralytics' metadata (task ``segment``), serves it as an instance segmenter with the ``yolo_seg`` head
re-cutting ``[N, 4+C+32, A]`` + prototypes, and answers the instances Ultralytics' own
``non_max_suppression`` + ``process_mask`` find, with boxes and masks in the photo's own pixels.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from support import GatewayProcess, encode, photo, wait_ready

pytestmark = [pytest.mark.export, pytest.mark.slow]

SIZE = 320
IOU = 0.45


@dataclass(frozen=True)
class SegCase:
    onnx: Path
    pixels: np.ndarray  # [N, SIZE, SIZE, 3] letterboxed photos the reference ran on
    score_threshold: float
    reference: list[tuple[np.ndarray, np.ndarray]]  # per image: [K, 6] boxes/score/class, [K, SIZE, SIZE] masks


def yolov8_seg_case(out: Path) -> SegCase:
    import torch
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.ops import process_mask
    from vision.head_graphs import threshold_for, yolov8_seg_graph

    path, pixels, (raw, protos) = yolov8_seg_graph(out, SIZE)
    score = threshold_for(raw[:, 4:84].max(axis=1), 300)
    found = non_max_suppression(torch.from_numpy(raw), score, IOU, max_det=100, nc=80)
    reference = []
    for k, det in enumerate(found):
        masks = process_mask(torch.from_numpy(protos[k]), det[:, 6:], det[:, :4], (SIZE, SIZE), upsample=True)
        reference.append((det[:, :6].numpy(), masks.numpy().astype(bool)))
    return SegCase(path, pixels, score, reference)


@pytest.fixture(scope="module")
def seg_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SegCase]]:
    pytest.importorskip("ultralytics", reason="pip install ultralytics (deploy/install.sh test)")
    work = tmp_path_factory.mktemp("yoloseg")
    case = yolov8_seg_case(work)
    repo = work / "repo"
    (repo / "yoloseg" / "1").mkdir(parents=True)
    shutil.copy(case.onnx, repo / "yoloseg" / "1" / "model.onnx")
    server = GatewayProcess(repo)
    try:
        wait_ready(server.url)
        yield server.url, case
    finally:
        server.stop()


def post(url: str, rgb: np.ndarray, query: str) -> dict[str, Any]:
    r = httpx.post(f"{url}/v1/segment?model=yoloseg&{query}", content=encode(rgb, "PNG"),
                   headers={"content-type": "image/png"}, timeout=120)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def test_the_config_is_completed_as_an_instance_segmenter(seg_gateway: tuple[str, SegCase]) -> None:
    url, _ = seg_gateway
    info = httpx.get(f"{url}/v1/models/yoloseg").json()
    assert info["task"] == "segment" and info["state"] == "READY"
    assert info["parameters"]["segment_kind"] == "instance" and info["parameters"]["head"] == "yolo_seg"
    assert info["inferred"]["task"] == "onnx-metadata:ultralytics" and info["labels"] == 80


def test_instances_match_ultralytics_own_postprocessing(seg_gateway: tuple[str, SegCase]) -> None:
    from visiongate.service.vision.masks import decode_rle

    url, case = seg_gateway
    for pixels, (dets, masks) in zip(case.pixels, case.reference, strict=True):
        body = post(url, pixels, f"score_threshold={case.score_threshold}&iou_threshold={IOU}")
        assert body["kind"] == "instance" and body["image"] == {"width": SIZE, "height": SIZE}
        got = body["instances"]
        assert len(got) == len(dets) > 0
        for det, want in zip(dets, masks, strict=True):
            # the gateway clips boxes to the image, as Ultralytics' Results do; near-equal scores of the
            # random model may come in either order, so each reference instance is found by class and box
            box = np.clip(det[:4], 0, SIZE).tolist()
            same = [i for i in got if i["class_id"] == int(det[5]) and i["box"] == pytest.approx(box, abs=0.05)]
            assert len(same) == 1, f"reference {det.tolist()} not answered once"
            inst = same[0]
            assert inst["score"] == pytest.approx(float(det[4]), abs=1e-4)
            have = decode_rle(inst["mask"])
            assert have.shape == (SIZE, SIZE)
            # Ultralytics crops a mask to the pixels whose index lies in the box, the gateway to those whose
            # centre does: they agree on every pixel wholly inside the box, where the masks must be the same
            inside = np.zeros((SIZE, SIZE), bool)
            x0, y0, x1, y1 = np.ceil(box[0]), np.ceil(box[1]), np.floor(box[2]), np.floor(box[3])
            inside[int(y0):int(y1), int(x0):int(x1)] = True
            if (want & inside).sum() >= 20:
                assert iou(have & inside, want & inside) >= 0.99


def test_boxes_and_masks_come_back_in_the_photo_s_own_pixels(seg_gateway: tuple[str, SegCase]) -> None:
    from visiongate.service.vision.masks import decode_rle

    url, case = seg_gateway
    rgb = photo("astronaut")[:480, :360]  # not square: the letterbox's padding must come back out
    body = post(url, rgb, f"score_threshold={case.score_threshold}")
    assert body["image"] == {"width": 360, "height": 480}
    assert body["instances"], "the calibrated model finds something at its own threshold"
    for inst in body["instances"]:
        x0, y0, x1, y1 = inst["box"]
        assert 0 <= x0 <= x1 <= 360 and 0 <= y0 <= y1 <= 480
        mask = decode_rle(inst["mask"])
        assert mask.shape == (480, 360) and int(mask.sum()) == inst["area"]
        ys, xs = np.nonzero(mask)
        if len(xs):  # the mask stays inside its box
            assert xs.min() >= np.floor(x0) and xs.max() < np.ceil(x1)
            assert ys.min() >= np.floor(y0) and ys.max() < np.ceil(y1)
    polygons = post(url, rgb, f"score_threshold={case.score_threshold}&mask_format=polygon")["instances"]
    assert [p["box"] for p in polygons] == [i["box"] for i in body["instances"]]
