"""The ``yolo_seg`` head's two layouts, and Ultralytics' segment metadata read as an instance segmenter."""

from __future__ import annotations

import numpy as np
import pytest

from visiongate.service.autocomplete import metadata_parameters
from visiongate.service.model_config import ConfigError
from visiongate.service.vision.heads import OutputLayoutError
from visiongate.service.vision.seg_heads import yolo_seg_outputs


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
