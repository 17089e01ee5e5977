"""torchvision's Mask R-CNN exported by name and served on /v1/segment as an instance model.

No trained weights can be downloaded here: the checkpoint is ``maskrcnn_resnet50_fpn(weights=None,
num_classes=91)``'s random initialisation, saved nested in a training checkpoint. Its untrained
heads still answer 100 instances per photo with scores of 0.4-0.8 (random features favour a few
classes) and masks whose probabilities sit near 0.5: enough to prove the graph against
torchvision's own forward and to exercise the serving path, meaningless as predictions.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytest.importorskip("torchvision")
import torch

from support import GatewayProcess, encode, photo, wait_ready
from visiongate.export.cli import add_arguments
from visiongate.export.instance_export import run_instance
from visiongate.service.repository import read_model
from visiongate.service.vision.masks import decode_rle

pytestmark = [pytest.mark.export, pytest.mark.slow]

SIZE = 320
ARCH = "torchvision:maskrcnn_resnet50_fpn"


def export_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    root = tmp_path_factory.mktemp("maskrcnn")
    torch.manual_seed(0)
    state = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).state_dict()
    torch.save({"model": state, "epoch": 12}, root / "train_ckpt.pth")  # a training loop's container
    photos = root / "photos"
    photos.mkdir()
    for name in ("astronaut", "coffee"):  # two proof photos keep the CPU proof short
        (photos / f"{name}.jpg").write_bytes(encode(photo(name)))
    return root


@pytest.fixture(scope="module")
def exported(work: Path) -> Path:
    args = export_args("--repository", str(work / "repo"), "--arch", ARCH, "--checkpoint",
                       str(work / "train_ckpt.pth"), "--input-size", str(SIZE), str(SIZE), "--images",
                       str(work / "photos"), "--name", "mrcnn")
    assert run_instance(args) == 0
    return work / "repo" / "mrcnn"


def test_the_config_serves_one_image_per_call_as_an_instance_segmenter(exported: Path) -> None:
    spec = read_model(exported).spec
    assert spec.task == "segment" and spec.max_batch_size == 0 and spec.input.dims == (SIZE, SIZE, 3)
    params = spec.parameters
    assert (params["segment_kind"], params["head"]) == ("instance", "pasted")
    assert (params["resize"], params["letterbox_align"]) == ("letterbox", "top_left")
    assert [o.name for o in spec.outputs] == ["boxes", "labels", "scores", "masks"]
    assert spec.labels is not None and len(spec.labels) == 91 and spec.labels[1] == "person"  # the weights enum's


def test_the_proof_pairs_every_instance_with_torchvision_s_own_forward(exported: Path) -> None:
    report = json.loads((exported / "1" / "parity.json").read_text())
    metrics = report["metrics"]
    assert report["passed"] and report["photos"] == ["astronaut.jpg", "coffee.jpg"]
    assert metrics["paired"] >= 100 and metrics["unpaired"] == 0
    assert metrics["min_box_iou"] >= 0.99 and metrics["max_score_diff"] <= 1e-3
    assert metrics["min_mask_iou"] >= 0.99
    assert "train_ckpt.pth" in report["details"]["provenance"]


def test_paste_masks_is_torchvision_s_paste_without_the_loop() -> None:
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    from visiongate.export.sources.torchvision_instance import paste_masks

    g = torch.Generator().manual_seed(0)
    masks = torch.rand(40, 1, 28, 28, generator=g)
    corners = torch.rand(40, 4, generator=g) * torch.tensor([128.0, 96.0, 128.0, 96.0])
    boxes = torch.cat([torch.minimum(corners[:, :2], corners[:, 2:]) - 10, torch.maximum(corners[:, :2],
                                                                                         corners[:, 2:])], 1)
    boxes[0] = torch.tensor([5.0, 5.0, 5.2, 5.3])  # thinner than a pixel
    boxes[1] = torch.tensor([-20.0, -3.0, 140.0, 100.0])  # past every edge
    want = paste_masks_in_image(masks, boxes, (96, 128))
    got = paste_masks(masks, boxes, (96, 128))
    assert got.shape == want.shape and float((got - want).abs().max()) < 1e-4


@pytest.fixture(scope="module")
def gateway(exported: Path) -> Iterator[str]:
    repo = exported.parent
    (repo / "mrcnn_bare" / "1").mkdir(parents=True)  # the same graph dropped in with no config
    shutil.copy(exported / "1" / "model.onnx", repo / "mrcnn_bare" / "1" / "model.onnx")
    server = GatewayProcess(repo)
    try:
        wait_ready(server.url)
        yield server.url
    finally:
        server.stop()


def segment(url: str, rgb: np.ndarray, model: str, query: str = "") -> dict[str, Any]:
    r = httpx.post(f"{url}/v1/segment?model={model}&{query}", content=encode(rgb, "PNG"),
                   headers={"content-type": "image/png"}, timeout=120)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_instances_are_the_graph_s_own_output_on_a_photo_of_the_input_size(gateway: str, exported: Path) -> None:
    import onnxruntime as ort

    rgb = np.ascontiguousarray(photo("coffee")[:SIZE, :SIZE])  # no resize, no padding: input pixels = photo pixels
    session = ort.InferenceSession(str(exported / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    boxes, labels, scores, masks = session.run(None, {"image": rgb})
    keep = scores >= 0.5  # the config's score_threshold
    body = segment(gateway, rgb, "mrcnn")
    got = body["instances"]
    assert body["kind"] == "instance" and len(got) == int(keep.sum()) > 0
    for inst in got:
        # the untrained model's scores nearly tie: each instance is found by its label and box
        distance = np.abs(np.clip(boxes, 0, SIZE) - np.asarray(inst["box"])).max(axis=1)
        distance[labels != inst["class_id"]] = np.inf
        k = int(np.argmin(distance))
        assert distance[k] <= 0.01 and inst["score"] == pytest.approx(float(scores[k]), abs=1e-5)
        x0, y0 = (int(np.floor(v)) for v in boxes[k][:2])
        x1, y1 = (int(np.ceil(v)) for v in boxes[k][2:])
        want = np.zeros((SIZE, SIZE), bool)  # the graph's mask, kept inside the box as the gateway does
        want[max(y0, 0):y1, max(x0, 0):x1] = masks[k, 0, max(y0, 0):y1, max(x0, 0):x1] > 0.5
        have = decode_rle(inst["mask"])
        assert int((have != want).sum()) <= max(2, int(0.01 * want.sum()))


def test_a_photo_of_another_shape_comes_back_in_its_own_pixels(gateway: str) -> None:
    rgb = photo("astronaut")[:480, :360]  # taller than wide: the letterbox pads the right-hand side
    for model in ("mrcnn", "mrcnn_bare"):
        body = segment(gateway, rgb, model)
        assert body["image"] == {"width": 360, "height": 480} and body["instances"]
        for inst in body["instances"]:
            x0, y0, x1, y1 = inst["box"]
            assert 0 <= x0 <= x1 <= 360 and 0 <= y0 <= y1 <= 480
            mask = decode_rle(inst["mask"])
            assert mask.shape == (480, 360) and int(mask.sum()) == inst["area"]
            ys, xs = np.nonzero(mask)
            if len(xs):
                assert xs.min() >= np.floor(x0) and xs.max() < np.ceil(x1)
                assert ys.min() >= np.floor(y0) and ys.max() < np.ceil(y1)
    polygons = segment(gateway, rgb, "mrcnn", "mask_format=polygon&max_detections=5")["instances"]
    assert len(polygons) == 5 and all(isinstance(p["mask"], list) for p in polygons)


def test_the_bare_graph_is_read_from_its_own_metadata(gateway: str) -> None:
    info = httpx.get(f"{gateway}/v1/models/mrcnn_bare").json()
    assert info["state"] == "READY" and info["task"] == "segment"
    assert info["parameters"]["head"] == "pasted" and info["parameters"]["segment_kind"] == "instance"


def test_a_checkpoint_of_another_network_is_refused_naming_the_mismatch(work: Path, capsys: Any) -> None:
    from torchvision.models import resnet18

    wrong = work / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), wrong)
    args = export_args("--repository", str(work / "other"), "--arch", ARCH, "--checkpoint", str(wrong))
    assert run_instance(args) == 1
    assert "does not fit" in capsys.readouterr().err
    assert not (work / "other" / "maskrcnn_resnet50_fpn").exists()


def test_labels_of_the_wrong_count_are_refused(work: Path, capsys: Any) -> None:
    labels = work / "labels.txt"
    labels.write_text("background\nscrew\nbolt\n")
    args = export_args("--repository", str(work / "other"), "--arch", ARCH, "--checkpoint",
                       str(work / "train_ckpt.pth"), "--labels", str(labels))
    assert run_instance(args) == 1
    err = capsys.readouterr().err
    assert "3 labels" in err and "num_classes=91" in err
