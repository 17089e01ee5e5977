"""``--arch yolo``: an Ultralytics checkpoint through Ultralytics' own ONNX exporter (skipped without ultralytics).

Ultralytics is AGPL-3.0 and an export-time tool only, so it is not in any of the project's extras; this
test runs where it is installed (``pip install ultralytics`` beside the export extra). The checkpoint is
a YOLOv8n built from Ultralytics' bundled yaml with random weights (nothing downloads).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
ultralytics = pytest.importorskip("ultralytics")

from visiongate.service.cli import main  # noqa: E402
from visiongate.service.proof_report import read_proof  # noqa: E402
from visiongate.service.repository import read_model  # noqa: E402

pytestmark = [pytest.mark.export, pytest.mark.slow]


@pytest.fixture
def yolov8n_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    path = tmp_path / "best.pt"
    ultralytics.YOLO("yolov8n.yaml").save(str(path))
    return path


def test_yolov8_checkpoint_exports_with_its_head_labels_and_proof(tmp_path, yolov8n_checkpoint, capsys):
    args = ["export", "--repository", str(tmp_path / "repo"), "--no-progress", "--arch", "yolo",
            "--checkpoint", str(yolov8n_checkpoint), "--input-size", "320", "320"]
    assert main(args) == 1  # random weights find nothing on the photos: the proof compared no detection
    assert "--allow-empty-detections" in capsys.readouterr().err
    assert main([*args, "--allow-empty-detections"]) == 0
    assert "full pickles" in capsys.readouterr().err  # the trust warning, every run
    model_dir = tmp_path / "repo" / "best"
    spec = read_model(model_dir).spec
    assert spec.parameters["head"] == "yolov8" and spec.parameters["resize"] == "letterbox"
    assert spec.input.dims == (3, 320, 320) and spec.outputs[0].dims == (84, 2100)
    assert spec.labels is not None and len(spec.labels) == 80  # the checkpoint's names, one per class
    report = json.loads((model_dir / "1" / "parity.json").read_text())
    assert report["metrics"]["max_abs_score_diff"] <= 1e-3
    proof = read_proof(model_dir / "1")
    assert proof is not None and proof.passed and "allowed by --allow-empty-detections" in proof.notes[0]


DROP_IN_KEYS = ("task", "segment_kind", "head", "resize", "letterbox_pad", "letterbox_align", "channel_order",
                "input_range", "normalization")


def _export_seg(tmp_path: Path, checkpoint: Path, *extra: str) -> int:
    args = ["export", "--repository", str(tmp_path / "repo"), "--no-progress", "--arch", "yolo",
            "--checkpoint", str(checkpoint), "--input-size", "320", "320", *extra]
    return main(args)


def test_a_fresh_yolov8_seg_checkpoint_exports_with_the_parameters_the_drop_in_infers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    monkeypatch.setenv("YOLO_OFFLINE", "1")
    checkpoint = tmp_path / "best-seg.pt"
    ultralytics.YOLO("yolov8n-seg.yaml").save(str(checkpoint))
    # a freshly initialised head scores nothing above 0.25, with a handful of distinct values: no instance compared
    assert _export_seg(tmp_path, checkpoint) == 1
    assert "--allow-empty-detections" in capsys.readouterr().err
    assert _export_seg(tmp_path, checkpoint, "--allow-empty-detections") == 0
    model_dir = tmp_path / "repo" / "best-seg"
    spec = read_model(model_dir).spec
    assert spec.task == "segment" and spec.parameters["head"] == "yolo_seg"
    assert spec.max_batch_size > 0 and spec.input.dims == (3, 320, 320)
    assert [o.dims for o in spec.outputs] == [(116, 2100), (32, 80, 80)]
    assert spec.labels is not None and len(spec.labels) == 80
    # the same ONNX dropped in bare: the gateway infers what the export wrote
    bare = tmp_path / "bare" / "seg"
    (bare / "1").mkdir(parents=True)
    shutil.copy(model_dir / "1" / "model.onnx", bare / "1" / "model.onnx")
    inferred = read_model(bare).spec.parameters
    assert {k: spec.parameters[k] for k in DROP_IN_KEYS} == {k: inferred[k] for k in DROP_IN_KEYS}
    report = json.loads((model_dir / "1" / "parity.json").read_text())
    assert report["task"] == "segment" and report["metrics"]["max_abs_prototype_diff"] <= 1e-3
    assert "too few distinct values" in report["details"]["no_instances"]


def test_a_seg_checkpoint_with_spread_scores_matches_ultralytics_predict_masks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random weights, BatchNorm calibrated on real photos and class biases reset so that scores spread
    (as tests/api/test_drop_in_segment.py builds its model): the proof then pairs hundreds of instances."""
    import torch
    from vision.head_graphs import calibrate_batchnorm, photo_batch

    monkeypatch.setenv("YOLO_OFFLINE", "1")
    torch.manual_seed(0)
    yolo = ultralytics.YOLO("yolov8n-seg.yaml")
    calibrate_batchnorm(yolo.model, torch.from_numpy(photo_batch(320)).permute(0, 3, 1, 2).float() / 255)
    for branch in yolo.model.model[-1].cv3:
        last: Any = [m for m in branch.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        torch.nn.init.normal_(last.weight, std=0.05)
        torch.nn.init.constant_(last.bias, -2.0)
    checkpoint = tmp_path / "spread-seg.pt"
    yolo.save(str(checkpoint))
    assert _export_seg(tmp_path, checkpoint) == 0
    metrics = json.loads((tmp_path / "repo" / "spread-seg" / "1" / "parity.json").read_text())["metrics"]
    assert metrics["instances"] >= 50 and metrics["unpaired_instances"] == 0
    assert metrics["min_mask_iou"] >= 0.99 and metrics["min_instance_box_iou"] >= 0.99
    assert metrics["max_instance_score_diff"] <= 1e-3
