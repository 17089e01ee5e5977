"""``--arch yolo``: an Ultralytics checkpoint through Ultralytics' own ONNX exporter (skipped without ultralytics).

Ultralytics is AGPL-3.0 and an export-time tool only, so it is not in any of the project's extras; this
test runs where it is installed (``pip install ultralytics`` beside the export extra). The checkpoint is
a YOLOv8n built from Ultralytics' bundled yaml with random weights (nothing downloads).
"""

from __future__ import annotations

import json

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
