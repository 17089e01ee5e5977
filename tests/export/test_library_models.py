"""``--arch timm:<name>`` / ``torchvision:<name>``: the library's own pre-processing record, random weights said loudly.

No pretrained weights can be downloaded here, so the end-to-end exports use ``--random-weights`` (the
claims are about pre-processing, the graph and the repository, not accuracy).
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
from google.protobuf import text_format  # noqa: E402

from visiongate.export.checkpoints import CheckpointError  # noqa: E402
from visiongate.export.onnx import PREPROCESS_KEY, read_metadata  # noqa: E402
from visiongate.export.sources.library import library_config, load_library_model  # noqa: E402
from visiongate.service.cli import main  # noqa: E402
from visiongate.service.proof_report import read_proof  # noqa: E402

pytestmark = [
    pytest.mark.export,
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"),
]


def export(tmp_path, *args: str) -> int:
    return main(["export", "--repository", str(tmp_path / "repo"), "--no-progress", *args])


@pytest.mark.parametrize(("library", "name", "size", "interpolation", "resize_size", "mean"), [
    ("timm", "resnet18", (224, 224), "bicubic", 235, (0.485, 0.456, 0.406)),  # crop_pct 0.95
    ("timm", "convnext_atto", (224, 224), "bicubic", 256, (0.485, 0.456, 0.406)),
    ("timm", "vit_tiny_patch16_224", (224, 224), "bicubic", 248, (0.5, 0.5, 0.5)),  # crop_pct 0.9
    ("timm", "efficientnet_b3", (288, 288), "bicubic", 329, (0.485, 0.456, 0.406)),
    ("torchvision", "efficientnet_v2_s", (384, 384), "bilinear", 384, (0.485, 0.456, 0.406)),
    ("torchvision", "resnet18", (224, 224), "bilinear", 256, (0.485, 0.456, 0.406)),
    ("torchvision", "convnext_tiny", (224, 224), "bilinear", 236, (0.485, 0.456, 0.406)),
    ("torchvision", "efficientnet_b3", (300, 300), "bicubic", 320, (0.485, 0.456, 0.406)),
])
def test_library_configs_come_from_the_library(library, name, size, interpolation, resize_size, mean):
    cfg = library_config(library, name)
    assert cfg.task == "classify"
    assert cfg.input_size == size
    assert cfg.interpolation == interpolation
    assert cfg.resize_size == resize_size
    assert cfg.mean == pytest.approx(mean)
    assert cfg.labels is not None and cfg.labels[1] == "goldfish"


def test_torchvision_detectors_resolve_and_two_stage_ones_are_refused_by_name():
    cfg = library_config("torchvision", "ssdlite320_mobilenet_v3_large")
    assert (cfg.task, cfg.input_size, cfg.num_classes) == ("detect", (320, 320), 91)
    with pytest.raises(CheckpointError, match="fasterrcnn_resnet50_fpn is a two-stage"):
        library_config("torchvision", "fasterrcnn_resnet50_fpn")


@pytest.mark.parametrize(("library", "name", "suggestion"), [
    ("timm", "vit_tiny", "vit_tiny_patch16_224"),
    ("torchvision", "resnet19", "resnet18"),
])
def test_unknown_names_suggest_close_ones(library, name, suggestion):
    with pytest.raises(CheckpointError, match=f"did you mean: .*{suggestion}"):
        library_config(library, name)


def test_a_library_name_needs_a_checkpoint_or_explicit_random_weights(tmp_path, capsys):
    assert export(tmp_path, "--arch", "timm:resnet18") == 2
    err = capsys.readouterr().err
    assert "--checkpoint FILE" in err and "--random-weights" in err
    assert export(tmp_path, "--arch", "resnet50", "--random-weights") == 2
    assert "--arch torchvision:resnet50" in capsys.readouterr().err
    assert export(tmp_path, "--arch", "timm:nope_net", "--random-weights") == 1
    assert "timm has no model 'nope_net'" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def test_timm_export_with_random_weights_end_to_end(tmp_path, capsys):
    assert export(tmp_path, "--arch", "timm:resnet18", "--random-weights", "--name", "smoke") == 0
    captured = capsys.readouterr()
    assert "RANDOM WEIGHTS" in captured.err
    assert "parity ONNX vs PyTorch" in captured.out
    model_dir = tmp_path / "repo" / "smoke"
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.input[0].format == model_config_pb2.ModelInput.FORMAT_NHWC
    assert list(config.input[0].dims) == [224, 224, 3]
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["interpolation"] == "bicubic" and params["resize_size"] == "235"
    meta = json.loads(read_metadata(model_dir / "1" / "model.onnx")[PREPROCESS_KEY])
    assert PREPROCESS_KEY == "pretrained_cfg"  # the key docs/model-config.md defines
    assert meta["labels"][1] == "goldfish"
    del meta["labels"]
    assert meta == {"task": "classify", "input_size": [3, 224, 224], "interpolation": "bicubic",
                    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "resize": "center_crop",
                    "normalization": "in_graph", "channel_order": "RGB",
                    "parameters": {"output_activation": "softmax", "resize_size": "235"}}
    proof = read_proof(model_dir / "1")
    assert proof is not None and proof.passed and proof.checked == "ONNX vs PyTorch"
    assert any("RANDOM" in note for note in proof.notes)


def test_torchvision_export_of_a_users_checkpoint_reads_the_class_count(tmp_path):
    import torchvision

    torch.manual_seed(0)
    source = torchvision.models.mobilenet_v3_small(num_classes=4)
    checkpoint = tmp_path / "best.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()},
                "best_acc1": torch.tensor(71.5)}, checkpoint)
    (tmp_path / "labels.txt").write_text("bolt\nnut\nscrew\nwasher\n")
    assert export(tmp_path, "--arch", "torchvision:mobilenet_v3_small", "--checkpoint", str(checkpoint),
                  "--labels", str(tmp_path / "labels.txt"), "--name", "parts") == 0
    model_dir = tmp_path / "repo" / "parts"
    assert (model_dir / "labels.txt").read_text().split() == ["bolt", "nut", "screw", "washer"]
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert list(config.output[0].dims) == [4]
    loaded = load_library_model("torchvision", "mobilenet_v3_small", checkpoint)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), source.eval()(x))
    assert not loaded.random_weights
