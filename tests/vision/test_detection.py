"""Detector output -> detections: threshold, class filter, per-class NMS, box formats, placement."""

from __future__ import annotations

import numpy as np
import pytest

from visiongate.service.vision.detection import (
    Detections,
    batched_nms,
    box_iou,
    convert_boxes,
    nms,
    parse_classes,
    select,
)
from visiongate.service.vision.preprocess import PreprocessConfig, resize_for_model

LABELS = ("person", "bicycle", "car")


def scores_for(rows: list[dict[int, float]], num_classes: int = 3) -> np.ndarray:
    out = np.zeros((len(rows), num_classes), np.float32)
    for i, row in enumerate(rows):
        for c, s in row.items():
            out[i, c] = s
    return out


def test_iou_of_identical_disjoint_and_half_overlapping_boxes() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [5, 0, 15, 10], [3, 3, 3, 3]], np.float32)
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 0.0, 1 / 3, 0.0]])


def test_nms_drops_a_weaker_box_that_overlaps_a_stronger_one_and_keeps_a_distant_one() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.6, 0.9, 0.5], np.float32)
    # IoU(0, 1) = 81 / 119 = 0.68: suppressed at 0.5, kept at 0.7; results come best first
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.7).tolist() == [1, 0, 2]


def test_nms_threshold_is_strict_greater_than() -> None:
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)  # IoU exactly 1/3
    scores = np.array([0.9, 0.8], np.float32)
    assert nms(boxes, scores, 1 / 3 + 1e-9).tolist() == [0, 1]
    assert nms(boxes, scores, 0.3).tolist() == [0]


def test_batched_nms_never_suppresses_across_classes() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    classes = np.array([0, 1, 0])
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == [0, 1]


def test_select_applies_threshold_nms_and_limit_and_is_multi_label() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [100, 100, 120, 130], [0, 0, 5, 5]], np.float32)
    scores = scores_for([{0: 0.9, 2: 0.4}, {0: 0.8}, {1: 0.3}, {0: 0.1}])
    d = select(boxes, scores, score_threshold=0.25, iou_threshold=0.45, max_detections=10)
    # box 1 is suppressed by box 0 (same class), box 0 also counts as a car, box 3 is too weak
    assert d.class_ids.tolist() == [0, 2, 1]
    np.testing.assert_allclose(d.scores, [0.9, 0.4, 0.3])
    np.testing.assert_array_equal(d.boxes[0], boxes[0])
    top = select(boxes, scores, score_threshold=0.25, iou_threshold=0.45, max_detections=2)
    assert top.class_ids.tolist() == [0, 2]


def test_select_class_filter_keeps_only_the_asked_classes() -> None:
    boxes = np.array([[0, 0, 10, 10], [100, 100, 120, 130]], np.float32)
    scores = scores_for([{0: 0.9}, {1: 0.3}])
    d = select(boxes, scores, score_threshold=0.25, iou_threshold=0.45, max_detections=10,
               classes=np.array([1]))
    assert d.class_ids.tolist() == [1]


def test_select_with_nothing_above_threshold_is_empty_with_the_documented_shapes() -> None:
    d = select(np.zeros((5, 4), np.float32), np.full((5, 3), 0.1, np.float32), score_threshold=0.5,
               iou_threshold=0.5, max_detections=10)
    assert len(d) == 0 and d.boxes.shape == (0, 4) and d.class_ids.dtype == np.int64
    assert len(Detections.empty()) == 0


def test_select_on_thousands_of_noisy_boxes_matches_a_naive_per_class_loop() -> None:
    rng = np.random.default_rng(7)
    xy = rng.uniform(0, 400, (2535, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 80, (2535, 2))], axis=1).astype(np.float32)
    scores = (rng.uniform(0, 1, (2535, 3)) ** 8).astype(np.float32)
    d = select(boxes, scores, score_threshold=0.3, iou_threshold=0.45, max_detections=1000)
    expected = []
    for c in range(3):
        idx = np.flatnonzero(scores[:, c] >= 0.3)
        for k in nms(boxes[idx], scores[idx, c], 0.45):
            expected.append((float(scores[idx[k], c]), c))
    found = sorted(zip(d.scores.tolist(), d.class_ids.tolist(), strict=True), reverse=True)
    assert found == sorted(expected, reverse=True)


def test_box_formats_describe_the_same_box() -> None:
    xyxy = np.array([[10, 20, 110, 70]], np.float32)
    np.testing.assert_allclose(convert_boxes(xyxy, "xyxy", (200, 100)), xyxy)
    np.testing.assert_allclose(convert_boxes(xyxy, "xywh", (200, 100)), [[10, 20, 100, 50]])
    np.testing.assert_allclose(convert_boxes(xyxy, "normalized", (200, 100)), [[0.05, 0.2, 0.55, 0.7]])
    with pytest.raises(ValueError):
        convert_boxes(xyxy, "cxcywh", (200, 100))  # type: ignore[arg-type]


def test_classes_parse_from_names_and_ids() -> None:
    assert parse_classes("car, 0,Person", LABELS, 3).tolist() == [0, 2]
    with pytest.raises(ValueError, match="unicorn"):
        parse_classes("car,unicorn", LABELS, 3)
    with pytest.raises(ValueError, match=r"0..2"):
        parse_classes("7", LABELS, 3)


def test_a_box_found_in_the_letterboxed_input_maps_back_to_the_original_pixels() -> None:
    """A bright rectangle in a real-size frame, letterboxed to 416: its box maps back exactly."""
    rgb = np.zeros((600, 900, 3), np.uint8)
    rgb[150:450, 300:600] = 255
    cfg = PreprocessConfig(input_size=(416, 416), resize="letterbox", pad_value=127)
    net, placement = resize_for_model(rgb, cfg)
    ys, xs = np.nonzero(net[..., 0] == 255)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    np.testing.assert_allclose(placement.to_original(found), [[300, 150, 600, 450]], atol=3)
