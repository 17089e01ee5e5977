"""Detector heads on hand-made outputs (no torch): layouts, thresholds, NMS or not, bad outputs.

The comparisons with the libraries' own post-processing on graphs from their real exporters are in
``test_heads_exported.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from visiongate.service.vision.detection import select
from visiongate.service.vision.heads import HEADS, HeadOptions, OutputLayoutError, decode, get_head, num_classes

OPTS = HeadOptions(score_threshold=0.3, iou_threshold=0.5, max_detections=10)
# two heavily overlapping boxes (IoU 0.82) and one far away, xyxy in input pixels
BOXES = np.array([[10, 10, 60, 60], [12, 12, 62, 62], [200, 100, 260, 180]], np.float32)


def cxcywh(xyxy: np.ndarray) -> np.ndarray:
    return np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)


def yolov8_output(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``[1, 4 + C, A]`` as Ultralytics exports it."""
    return np.concatenate([cxcywh(boxes), scores], axis=1).T[None].astype(np.float32)


def yolov5_output(boxes: np.ndarray, objectness: np.ndarray, probs: np.ndarray) -> np.ndarray:
    return np.concatenate([cxcywh(boxes), objectness[:, None], probs], axis=1)[None].astype(np.float32)


def test_the_registry_names_the_six_heads_and_refuses_others() -> None:
    assert set(HEADS) == {"visiongate", "torchvision", "yolov5", "yolov8", "end2end", "detr"}
    with pytest.raises(ValueError, match="unknown detector head 'yolox'; use one of visiongate"):
        get_head("yolox")


def test_visiongate_head_is_the_multi_label_select_it_always_was() -> None:
    rng = np.random.default_rng(0)
    boxes = np.sort(rng.uniform(0, 300, (2, 50, 4)).astype(np.float32).reshape(2, 50, 2, 2), axis=2)
    boxes = boxes.transpose(0, 1, 3, 2).reshape(2, 50, 4)
    scores = rng.uniform(0, 1, (2, 50, 5)).astype(np.float32)
    found = decode("visiongate", {"boxes": boxes, "scores": scores}, OPTS, (300, 300))
    for k in range(2):
        want = select(boxes[k], scores[k], score_threshold=0.3, iou_threshold=0.5, max_detections=10)
        np.testing.assert_array_equal(found[k].boxes, want.boxes)
        np.testing.assert_array_equal(found[k].class_ids, want.class_ids)
    # a box over the threshold in two classes is reported twice
    both = decode("visiongate", {"boxes": BOXES[None, 2:], "scores": np.array([[[0.9, 0.8]]], np.float32)},
                  OPTS, (300, 300))[0]
    assert both.class_ids.tolist() == [0, 1]


def test_yolov8_best_class_only_class_aware_nms_and_input_pixels() -> None:
    scores = np.array([[0.9, 0.1, 0.2], [0.8, 0.7, 0.0], [0.1, 0.2, 0.6]], np.float32)
    d = decode("yolov8", {"output0": yolov8_output(BOXES, scores)}, OPTS, (640, 640))[0]
    # box 1's best class (0) overlaps box 0's: suppressed; its 0.7 for class 1 is not a second label
    assert d.class_ids.tolist() == [0, 2]
    np.testing.assert_allclose(d.scores, [0.9, 0.6])
    np.testing.assert_allclose(d.boxes, BOXES[[0, 2]], atol=1e-4)
    multi = decode("yolov8", {"output0": yolov8_output(BOXES, scores)},
                   HeadOptions(0.3, 0.5, 10, multi_label=True), (640, 640))[0]
    assert sorted(multi.class_ids.tolist()) == [0, 1, 2]


def test_yolov8_class_filter_applies_after_the_best_class_as_ultralytics_does() -> None:
    scores = np.array([[0.9, 0.5, 0.0], [0.0, 0.0, 0.0], [0.1, 0.6, 0.0]], np.float32)
    d = decode("yolov8", {"output0": yolov8_output(BOXES, scores)},
               HeadOptions(0.3, 0.5, 10, classes=np.array([1])), (640, 640))[0]
    assert d.class_ids.tolist() == [1]
    np.testing.assert_allclose(d.boxes, BOXES[[2]], atol=1e-4)


def test_yolov8_extra_columns_after_the_classes_are_ignored_when_num_classes_is_given() -> None:
    scores = np.array([[0.9, 0.1], [0.0, 0.0], [0.0, 0.0]], np.float32)
    masks = np.full((3, 32), 5.0, np.float32)  # mask coefficients of a segmentation model
    out = yolov8_output(BOXES, np.concatenate([scores, masks], axis=1))
    d = decode("yolov8", {"output0": out}, HeadOptions(0.3, 0.5, 10, num_classes=2), (640, 640))[0]
    assert d.class_ids.tolist() == [0]


def test_yolov5_score_is_objectness_times_class_probability() -> None:
    objectness = np.array([0.9, 0.2, 0.5], np.float32)
    probs = np.array([[0.5, 0.1], [1.0, 0.0], [0.2, 0.9]], np.float32)
    d = decode("yolov5", {"output0": yolov5_output(BOXES, objectness, probs)}, OPTS, (640, 640))[0]
    # box 1: objectness 0.2 < 0.3 although its class probability is 1
    assert d.class_ids.tolist() == [0, 1]
    np.testing.assert_allclose(d.scores, [0.45, 0.45], rtol=1e-6)
    np.testing.assert_allclose(d.boxes, BOXES[[0, 2]], atol=1e-4)


def test_end2end_keeps_overlapping_boxes_drops_padding_and_sorts() -> None:
    rows = np.array([[10, 10, 60, 60, 0.5, 3], [12, 12, 62, 62, 0.9, 3], [200, 100, 260, 180, 0.2, 1],
                     [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], np.float32)[None]
    d = decode("end2end", {"output0": rows}, HeadOptions(0.0, 0.5, 10), (640, 640))[0]
    assert d.class_ids.tolist() == [3, 3, 1]  # no NMS: both overlapping boxes stay; zero rows are padding
    np.testing.assert_allclose(d.scores, [0.9, 0.5, 0.2])
    top = decode("end2end", {"output0": rows}, HeadOptions(0.3, 0.5, 1), (640, 640))[0]
    np.testing.assert_array_equal(top.boxes, rows[0, [1], :4])
    only = decode("end2end", {"output0": rows}, HeadOptions(0.1, 0.5, 10, classes=np.array([1])), (640, 640))[0]
    assert only.class_ids.tolist() == [1]


def test_detr_softmax_no_object_class_and_boxes_scaled_by_the_input_size() -> None:
    logits = np.array([[[4.0, 0.0, 0.0], [0.0, 0.0, 6.0], [0.0, 3.0, 1.0]]], np.float32)  # 2 classes + none
    pred_boxes = np.array([[[0.5, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1], [0.25, 0.75, 0.5, 0.5]]], np.float32)
    d = decode("detr", {"logits": logits, "pred_boxes": pred_boxes}, HeadOptions(0.5, 0.5, 10), (800, 600))[0]
    p0 = np.exp(4) / (np.exp(4) + 2)
    p2 = np.exp(3) / (np.exp(3) + np.exp(1) + 1)
    assert d.class_ids.tolist() == [0, 1]  # query 1 is "no object"
    np.testing.assert_allclose(d.scores, [p0, p2], rtol=1e-6)
    np.testing.assert_allclose(d.boxes, [[320, 180, 480, 420], [0, 300, 400, 600]], atol=1e-4)


def test_torchvision_head_reads_both_exports() -> None:
    scores = np.array([[[0.9, 0.0], [0.8, 0.0], [0.0, 0.4]]], np.float32)
    d = decode("torchvision", {"boxes": BOXES[None], "scores": scores}, OPTS, (300, 300))[0]
    assert d.class_ids.tolist() == [0, 1]
    final: dict[str, np.ndarray] = {"boxes": BOXES, "labels": np.array([5, 5, 2], np.int64),
                                    "scores": np.array([0.9, 0.5, 0.2])}
    f = decode("torchvision", final, OPTS, (300, 300))[0]  # post-NMS already: no batch axis, no NMS
    assert f.class_ids.tolist() == [5, 5]
    np.testing.assert_array_equal(f.boxes, BOXES[:2])


def test_nan_and_inf_scores_or_boxes_never_become_detections() -> None:
    scores = np.array([[np.nan, 0.9], [np.inf, 0.1], [0.1, 0.95]], np.float32)
    d = decode("yolov8", {"output0": yolov8_output(BOXES, scores)}, OPTS, (640, 640))[0]
    assert d.class_ids.tolist() == [1, 1] and np.isfinite(d.scores).all()  # the NaN row keeps its class 1
    bad_box = BOXES.copy()
    bad_box[2, 0] = np.nan
    d = decode("yolov8", {"output0": yolov8_output(bad_box, scores)}, OPTS, (640, 640))[0]
    assert d.scores.tolist() == pytest.approx([0.9])
    rows = np.array([[[1, 1, 5, 5, np.inf, 0], [1, 1, 5, 5, 0.5, np.nan], [1, 1, 5, 5, np.nan, 0]]], np.float32)
    assert len(decode("end2end", {"out": rows}, OPTS, (64, 64))[0]) == 0
    logits = np.array([[[np.nan, 1.0, 0.0], [np.inf, 0.0, 0.0]]], np.float32)
    assert len(decode("detr", {"logits": logits, "pred_boxes": np.full((1, 2, 4), 0.5, np.float32)},
                      HeadOptions(0.0, 0.5, 10), (64, 64))[0]) == 0
    yolo5 = yolov5_output(BOXES, np.array([np.nan, np.inf, 0.9], np.float32), np.full((3, 2), 0.9, np.float32))
    assert decode("yolov5", {"output0": yolo5}, OPTS, (640, 640))[0].scores.tolist() == pytest.approx([0.81])


@pytest.mark.parametrize(("head", "outputs", "expected"), [
    ("yolov8", {"output0": np.zeros((1, 8400, 84, 1), np.float32)}, r"\[N,4\+C,A\]"),
    ("yolov8", {"output0": np.zeros((1, 4, 8400), np.float32)}, r"4 \+ C"),
    ("yolov8", {"a": np.zeros((1, 84, 10)), "b": np.zeros((1, 84, 10))}, "one output"),
    ("yolov5", {"output0": np.zeros((1, 100, 5), np.float32)}, r"\[N,A,5\+C\]"),
    ("end2end", {"output0": np.zeros((1, 300, 4), np.float32)}, r"\[N,K,6\]"),
    ("detr", {"logits": np.zeros((1, 100, 92)), "pred_boxes": np.zeros((1, 90, 4))}, "agree on N and Q"),
    ("detr", {"logits": np.zeros((1, 100, 92))}, "pred_boxes"),
    ("visiongate", {"boxes": np.zeros((1, 10, 5)), "scores": np.zeros((1, 10, 3))}, r"boxes \[N,A,4\]"),
    ("torchvision", {"boxes": np.zeros((3, 4)), "labels": np.zeros(3), "scores": np.zeros(3)}, "integers"),
])
def test_outputs_of_the_wrong_shape_name_the_expected_layout(head: str, outputs: dict[str, np.ndarray],
                                                             expected: str) -> None:
    with pytest.raises(OutputLayoutError, match=expected) as info:
        decode(head, outputs, OPTS, (640, 640))
    assert isinstance(info.value, ValueError) and "got " in str(info.value)


def test_a_batch_decodes_per_image_and_a_missing_batch_axis_is_one_image() -> None:
    a = yolov8_output(BOXES, np.array([[0.9, 0], [0, 0], [0, 0]], np.float32))
    b = yolov8_output(BOXES, np.array([[0, 0], [0, 0], [0, 0.7]], np.float32))
    found = decode("yolov8", {"output0": np.concatenate([a, b])}, OPTS, (640, 640), images=2)
    assert [d.class_ids.tolist() for d in found] == [[0], [1]]
    assert len(decode("yolov8", {"output0": a[0]}, OPTS, (640, 640), images=1)) == 1
    with pytest.raises(OutputLayoutError, match="3 images sent, outputs hold 2"):
        decode("yolov8", {"output0": np.concatenate([a, b])}, OPTS, (640, 640), images=3)


def test_yolov8_matches_a_plain_per_box_reference_on_random_outputs() -> None:
    """Many overlapping candidates: the vectorised decoder against a loop written the obvious way."""
    rng = np.random.default_rng(1)
    n, c = 600, 4
    centres = rng.uniform(0, 320, (n, 2))
    sizes = rng.uniform(10, 80, (n, 2))
    xyxy = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, (n, c)).astype(np.float32) ** 3
    got = decode("yolov8", {"output0": yolov8_output(xyxy, scores)}, HeadOptions(0.25, 0.45, 300), (320, 320))[0]

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))

    best, conf = scores.argmax(1), scores.max(1)
    kept: list[int] = []
    for i in sorted(range(n), key=lambda i: -conf[i]):
        if conf[i] >= 0.25 and all(best[k] != best[i] or iou(xyxy[i], xyxy[k]) <= 0.45 for k in kept):
            kept.append(i)
    assert len(kept) > 300  # so the limit is exercised too
    np.testing.assert_allclose(got.boxes, xyxy[kept[:300]], atol=1e-3)
    assert got.class_ids.tolist() == best[kept[:300]].tolist()


def test_num_classes_from_config_dims() -> None:
    assert num_classes("yolov8", {"output0": [84, 8400]}) == 80
    assert num_classes("yolov8", {"output0": [-1, 84, -1]}) == 80
    assert num_classes("yolov5", {"output0": [25200, 85]}) == 80
    assert num_classes("visiongate", {"boxes": [2535, 4], "scores": [2535, 80]}) == 80
    assert num_classes("detr", {"logits": [100, 92], "pred_boxes": [100, 4]}) == 91
    assert num_classes("end2end", {"output0": [300, 6]}) is None
    assert num_classes("torchvision", {"boxes": [-1, 4], "labels": [-1], "scores": [-1]}) is None
    assert num_classes("yolov8", {"output0": [-1, -1, -1]}) is None
