"""``PresenceGate.of``: which classes of a semantic model a detector gates, read from its config."""

from __future__ import annotations

import pytest

from visiongate.service.errors import BackendError
from visiongate.service.repository import ModelSpec, spec_from_config
from visiongate.service.segmentation import PresenceGate

LABELS = ("background", "person", "car")


def semantic(**parameters: str) -> ModelSpec:
    config = {
        "name": "seg", "platform": "onnxruntime_onnx", "max_batch_size": 1,
        "input": [{"name": "image", "data_type": "TYPE_UINT8", "format": "FORMAT_NHWC", "dims": [64, 64, 3]}],
        "output": [{"name": "scores", "data_type": "TYPE_FP32", "dims": [3, 64, 64]}],
        "parameters": {k: {"string_value": v} for k, v in
                       {"task": "segment", "segment_kind": "semantic", **parameters}.items()},
    }
    return spec_from_config(config, labels=LABELS)


def test_no_presence_model_means_no_gate() -> None:
    assert PresenceGate.of(semantic()) is None
    assert PresenceGate.of(semantic(presence_model="")) is None


def test_every_class_but_background_is_gated_by_its_own_label_by_default() -> None:
    gate = PresenceGate.of(semantic(presence_model="det"))
    assert gate is not None and gate.model == "det" and gate.background == 0
    assert gate.classes == {1: "person", 2: "car"}
    assert (gate.score_threshold, gate.margin) == (0.5, 0.1)


def test_presence_classes_pick_classes_and_may_name_the_detectors_label() -> None:
    gate = PresenceGate.of(semantic(presence_model="det", presence_classes=" person , car=automobile",
                                    presence_score_threshold="0.3", presence_margin="0"))
    assert gate is not None and gate.classes == {1: "person", 2: "automobile"}
    assert (gate.score_threshold, gate.margin) == (0.3, 0.0)


def test_a_gated_class_the_model_lacks_is_a_backend_error_naming_it() -> None:
    with pytest.raises(BackendError, match="'giraffe', which is not one of its labels"):
        PresenceGate.of(semantic(presence_model="det", presence_classes="giraffe"))
