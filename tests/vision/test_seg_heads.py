"""The ``yolo_seg`` and ``pasted`` heads' layouts, and Ultralytics' segment metadata read as an instance segmenter."""

from __future__ import annotations

import numpy as np
import pytest

from visiongate.service.autocomplete import metadata_parameters
from visiongate.service.model_config import ConfigError
from visiongate.service.vision.heads import OutputLayoutError
from visiongate.service.vision.seg_heads import pasted_outputs, yolo_seg_outputs


def ultralytics_outputs(classes: int = 3, protos: int = 4, anchors: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    pred = rng.random((2, 4 + classes + protos, anchors), dtype=np.float32)
    pred[:, :4] *= 100
    return {"output0": pred, "output1": rng.random((2, protos, 8, 8), dtype=np.float32)}


def test_ultralytics_outputs_are_recut_into_the_named_layout() -> None:
    raw = ultralytics_outputs()
    out = yolo_seg_outputs(raw)
    pred = raw["output0"]
    assert out["boxes"].shape == (2, 5, 4) and out["scores"].shape == (2, 5, 3)
    assert out["mask_coefficients"].shape == (2, 5, 4) and out["prototypes"] is raw["output1"]
    cx, cy, w, h = pred[1, :4, 2]
    assert out["boxes"][1, 2] == pytest.approx([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    np.testing.assert_array_equal(out["scores"][1, 2], pred[1, 4:7, 2])
    np.testing.assert_array_equal(out["mask_coefficients"][1, 2], pred[1, 7:, 2])


def test_the_named_layout_passes_through_and_names_do_not_matter_for_ultralytics() -> None:
    raw = ultralytics_outputs()
    named = yolo_seg_outputs(raw)
    assert yolo_seg_outputs(named).keys() == named.keys()
    renamed = yolo_seg_outputs({"protos": raw["output1"], "preds": raw["output0"]})
    np.testing.assert_array_equal(renamed["scores"], named["scores"])


@pytest.mark.parametrize("outputs", [
    {"output0": np.zeros((1, 84, 10), np.float32)},  # a detector's single output
    {"output0": np.zeros((1, 4 + 32, 10), np.float32), "output1": np.zeros((1, 32, 8, 8), np.float32)},  # no class
    {"output0": np.zeros((2, 40, 10), np.float32), "output1": np.zeros((1, 32, 8, 8), np.float32)},  # N differs
])
def test_other_layouts_are_refused_with_their_shapes(outputs: dict[str, np.ndarray]) -> None:
    with pytest.raises(OutputLayoutError, match=r"output0 \["):
        yolo_seg_outputs(outputs)


META = {"author": "Ultralytics", "task": "segment", "stride": "32", "imgsz": "[320, 320]",
        "names": "{0: 'person', 1: 'bicycle'}", "end2end": "False", "args": "{'nms': None}"}


def test_ultralytics_segment_metadata_makes_an_instance_segmenter() -> None:
    params, source, labels = metadata_parameters(META, "seg")
    assert params["task"] == "segment" and params["segment_kind"] == "instance" and params["head"] == "yolo_seg"
    assert (params["resize"], params["letterbox_pad"], params["letterbox_align"]) == ("letterbox", "114", "center")
    assert source == "onnx-metadata:ultralytics" and labels == ("person", "bicycle")


def test_an_end_to_end_ultralytics_segment_export_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="nms=False"):
        metadata_parameters({**META, "end2end": "True"}, "seg")


def maskrcnn_outputs(k: int = 3, batch: bool = False) -> dict[str, np.ndarray]:
    """torchvision Mask R-CNN's layout for one image: boxes [K, 4], labels [K], scores [K], masks [K, 1, H, W]."""
    rng = np.random.default_rng(1)
    out: dict[str, np.ndarray] = {
        "boxes": rng.random((k, 4), dtype=np.float32) * 50, "labels": np.array([1, 3, 1][:k], np.int64),
        "scores": np.array([0.9, 0.7, 0.6][:k], np.float32), "masks": rng.random((k, 1, 12, 16), dtype=np.float32)}
    return {n: v[None] for n, v in out.items()} if batch else out


@pytest.mark.parametrize("batch", [False, True])
def test_mask_rcnn_outputs_become_one_scored_column_per_instance(batch: bool) -> None:
    raw = maskrcnn_outputs(batch=batch)
    out = pasted_outputs(raw, num_classes=5)
    assert out["boxes"].shape == (1, 3, 4) and out["masks"].shape == (1, 3, 12, 16)
    assert out["scores"].shape == (1, 3, 5)
    scores = out["scores"][0]
    assert scores[0, 1] == pytest.approx(0.9) and scores[1, 3] == pytest.approx(0.7) and scores[2, 1] == 0.6
    assert np.isneginf(scores[0, [0, 2, 3, 4]]).all()  # no threshold, not even 0, keeps another class
    np.testing.assert_array_equal(out["masks"][0, 2], (raw["masks"][0] if batch else raw["masks"])[2, 0])


def test_without_labels_the_columns_reach_the_largest_label_and_none_found_is_empty() -> None:
    assert pasted_outputs(maskrcnn_outputs())["scores"].shape == (1, 3, 4)
    empty = pasted_outputs(maskrcnn_outputs(k=0), num_classes=91)
    assert empty["scores"].shape == (1, 0, 91) and empty["masks"].shape == (1, 0, 12, 16)


def test_the_named_pasted_layout_passes_through() -> None:
    named = {"boxes": np.zeros((1, 2, 4), np.float32), "scores": np.zeros((1, 2, 3), np.float32),
             "masks": np.zeros((1, 2, 8, 8), np.float32)}
    assert all(pasted_outputs(named)[k] is v for k, v in named.items())


@pytest.mark.parametrize(("change", "match"), [
    ({"masks": np.zeros((3, 2, 12, 16), np.float32)}, "one channel"),
    ({"labels": np.zeros(2, np.int64)}, "agree on K"),
    ({"labels": np.array([1.0, 2.0, 3.0], np.float32)}, "integers"),
    ({"labels": np.array([1, 9, 1], np.int64)}, "outside the model's 5 classes"),
])
def test_mask_rcnn_outputs_that_do_not_fit_are_refused(change: dict[str, np.ndarray], match: str) -> None:
    with pytest.raises(OutputLayoutError, match=match):
        pasted_outputs({**maskrcnn_outputs(), **change}, num_classes=5)


def test_a_pasted_model_without_masks_is_refused_with_its_shapes() -> None:
    with pytest.raises(OutputLayoutError, match=r"boxes \[3, 4\]"):
        pasted_outputs({k: v for k, v in maskrcnn_outputs().items() if k != "masks"})
