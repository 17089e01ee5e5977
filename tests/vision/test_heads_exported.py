"""Each head against its library's own post-processing, on graphs from the libraries' real exporters.

Models are built offline with random weights (see ``head_graphs.py``); every case runs the graph on
real photos with onnxruntime, decodes with ``service.vision.heads`` and requires the library's
detections: same count, and each one matched by a detection of the same class with every corner
within 1 px and the same score. Needs the export extra plus ultralytics / transformers / yolov5
(deploy/install.sh test); each case skips when its library is absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from head_graphs import Case, detr_case, torchvision_case, ultralytics_case

from visiongate.service.vision.heads import HeadOptions, decode

pytestmark = [pytest.mark.export, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def run_graph(case: Case) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(case.onnx), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {session.get_inputs()[0].name: case.inputs}), strict=True))


def assert_matches_reference(case: Case) -> None:
    options = HeadOptions(case.score_threshold, case.iou_threshold, case.max_detections, max_candidates=30000)
    found = decode(case.head, run_graph(case), options, case.input_size, images=len(case.inputs))
    for got, ref in zip(found, case.reference, strict=True):
        assert len(got) == len(ref)
        # best first in both; near-equal scores may come in either order, so match by class and box
        same_class = got.class_ids[:, None] == ref[None, :, 5].astype(np.int64)
        close = np.abs(got.boxes[:, None, :] - ref[None, :, :4]).max(axis=2) <= 1.0
        close &= np.abs(got.scores[:, None] - ref[None, :, 4]) <= 1e-4
        candidates = same_class & close
        used = np.zeros(len(ref), dtype=bool)
        for row in candidates:
            free = np.flatnonzero(row & ~used)
            assert free.size, "a detection the library does not report"
            used[free[0]] = True
    assert sum(len(r) for r in case.reference) >= 20, "too few detections to prove anything"


@pytest.fixture(scope="session")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("head_graphs")


@pytest.mark.parametrize(("yaml", "head", "export"), [
    ("yolov8n.yaml", "yolov8", {}),
    ("yolo11n.yaml", "yolov8", {}),
    ("yolov10n.yaml", "end2end", {"nms": False}),  # the NMS-free one-to-one head, [N, 300, 6]
    ("yolo26n.yaml", "end2end", {"nms": False}),
])
def test_ultralytics(graphs: Path, yaml: str, head: str, export: dict[str, Any]) -> None:
    pytest.importorskip("ultralytics", reason="pip install ultralytics (test-time only, AGPL-3.0)")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    out = graphs / yaml.removesuffix(".yaml")
    out.mkdir()
    case = ultralytics_case(yaml, out, head, **export)
    assert case.inputs.shape[0] == 2
    assert_matches_reference(case)


def test_ultralytics_onnx_with_nms_inside_reads_as_end2end(graphs: Path) -> None:
    """``export(nms=True)`` bakes NMS into the graph: the end2end head finds what the plain graph's
    Ultralytics NMS finds at the thresholds baked in."""
    pytest.importorskip("ultralytics", reason="pip install ultralytics (test-time only, AGPL-3.0)")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    out = graphs / "yolov8n_plain"
    out.mkdir()
    plain = ultralytics_case("yolov8n.yaml", out, "yolov8")
    inside = graphs / "yolov8n_nms"
    inside.mkdir()
    baked = ultralytics_case("yolov8n.yaml", inside, "end2end", nms=True, conf=plain.score_threshold,
                             iou=plain.iou_threshold, batch=2)
    case = Case(baked.onnx, "end2end", plain.inputs, plain.input_size, plain.score_threshold, 0.0, 300,
                plain.reference)
    assert_matches_reference(case)


@pytest.mark.parametrize(("arch", "size"), [("ssdlite320_mobilenet_v3_large", 320), ("retinanet_resnet50_fpn", 256)])
def test_torchvision_through_this_projects_exporter(graphs: Path, arch: str, size: int) -> None:
    pytest.importorskip("torchvision")
    assert_matches_reference(torchvision_case(arch, graphs, size))


def test_detr(graphs: Path) -> None:
    pytest.importorskip("transformers", reason="pip install transformers")
    pytest.importorskip("timm")
    assert_matches_reference(detr_case(graphs))


def test_yolov5(graphs: Path) -> None:
    """The PyPI ``yolov5`` package needs setuptools < 81 (``pkg_resources``): it runs in a side venv."""
    python = Path(os.environ.get("VISIONGATE_YOLOV5_PYTHON", "/tmp/venv-yolov5/bin/python"))
    if not python.exists():
        pytest.skip(f"no yolov5 venv at {python} (deploy/install.sh test creates it)")
    out = graphs / "yolov5"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    subprocess.run([str(python), str(ROOT / "tests" / "vision" / "head_graphs.py"), "yolov5", str(out)],
                   check=True, env=env, cwd=out, timeout=600, stdout=sys.stderr)
    assert_matches_reference(Case.load(out / "yolov5.npz"))
