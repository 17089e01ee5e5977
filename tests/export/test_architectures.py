"""``visiongate export --arch``: users' checkpoints for every seed family, proven through the whole export path.

No public weights for these families install from a registry, so each test makes its own (random
initialisation saved to safetensors/.pth, plus a class bias for detectors so that real detections
exist); the claims are about loading, graph decoding and parity, not accuracy.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
safetensors_torch = pytest.importorskip("safetensors.torch")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
from google.protobuf import text_format  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402

from visiongate.export.checkpoints import CheckpointError  # noqa: E402
from visiongate.export.cli import ARCH_NAMES  # noqa: E402
from visiongate.export.sources.architectures import ARCHITECTURES, ArchOptions, load_architecture  # noqa: E402
from visiongate.export.sources.sr_nets import ESPCN, SRResNet  # noqa: E402
from visiongate.export.sources.torchvision_detection import (  # noqa: E402
    DETECTORS,
    DecodedDetector,
    build_torchvision_detector,
    detector_normalisation,
)
from visiongate.service.cli import main  # noqa: E402

pytestmark = [
    pytest.mark.export,
    # in-process exports (the CLI's subprocesses see no pytest filters): torch's own notice about its exporter
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"),
]


def triton_config(model_dir):
    """config.pbtxt parsed exactly as Triton parses it (unknown fields are errors)."""
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def export(tmp_path, *args: str) -> int:
    return main(["export", "--repository", str(tmp_path / "repo"), "--no-progress", *args])


def save(tmp_path, state: dict, name: str = "weights.safetensors"):
    path = tmp_path / name
    if name.endswith(".safetensors"):
        safetensors_torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def test_the_cli_lists_every_architecture_without_importing_torch():
    assert set(ARCH_NAMES) == set(ARCHITECTURES)


# ---- classifiers ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("arch", "builder"), [
    ("mobilenet_v2", "torchvision"), ("mobilenet_v3_small", "torchvision"), ("mobilenet_v3_large", "timm"),
    ("efficientnet_b0", "timm"), ("efficientnet_b0", "torchvision"),
    pytest.param("resnetrs50", "timm", marks=pytest.mark.slow),
])
def test_classifier_checkpoints_load_exactly_in_either_layout(tmp_path, arch, builder):
    names = {"mobilenet_v2": "mobilenetv2_100", "mobilenet_v3_large": "mobilenetv3_large_100",
             "efficientnet_b0": "efficientnet_b0", "resnetrs50": "resnetrs50"}
    torch.manual_seed(0)
    if builder == "timm":
        import timm

        source = timm.create_model(names[arch], pretrained=False, num_classes=7)
    else:
        import torchvision

        source = getattr(torchvision.models, arch)(weights=None, num_classes=7)
    loaded = load_architecture(arch, save(tmp_path, source.state_dict()))  # 7 classes read from the head
    assert f"({builder} layout)" in loaded.card.provenance
    assert loaded.card.labels == tuple(f"class_{i}" for i in range(7))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), source.eval()(x))


def test_classifier_cli_export_with_labels_and_input_size(tmp_path):
    import torchvision

    torch.manual_seed(0)
    labels = ["cat", "coffee", "rocket"]
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n")
    checkpoint = save(tmp_path, {"model": torchvision.models.mobilenet_v3_small(num_classes=3).state_dict()}, "m.pth")
    assert export(tmp_path, "--arch", "mobilenet_v3_small", "--checkpoint", str(checkpoint), "--labels",
                  str(tmp_path / "labels.txt"), "--name", "shop", "--input-size", "128", "160") == 0
    model_dir = tmp_path / "repo" / "shop"
    config = triton_config(model_dir)
    assert config.platform == "onnxruntime_onnx"
    assert list(config.input[0].dims) == [128, 160, 3]
    assert list(config.output[0].dims) == [3]
    assert config.parameters["resize"].string_value == "center_crop"
    assert config.parameters["resize_size"].string_value == "183"  # the longer side / 0.875: crops fit
    assert (model_dir / "labels.txt").read_text().split() == labels
    report = json.loads((model_dir / "1" / "parity.json").read_text())
    assert report["passed"] and report["metrics"]["top1_agreement"] == 1.0
    assert "mobilenet_v3_small (torchvision layout) from checkpoint m.pth" in report["details"]["provenance"]


@pytest.mark.slow
def test_resnet50_1000_classes_gets_imagenet_labels(tmp_path):
    import torchvision

    torch.manual_seed(0)
    checkpoint = save(tmp_path, torchvision.models.resnet50().state_dict())
    assert export(tmp_path, "--arch", "resnet50", "--checkpoint", str(checkpoint), "--input-size", "96", "96") == 0
    model_dir = tmp_path / "repo" / "resnet50"
    assert list(triton_config(model_dir).output[0].dims) == [1000]
    assert (model_dir / "labels.txt").read_text().splitlines()[281] == "tabby"


def test_a_checkpoint_for_another_class_count_says_what_to_pass(tmp_path, capsys):
    import torchvision

    checkpoint = save(tmp_path, torchvision.models.mobilenet_v2(num_classes=5).state_dict())
    assert export(tmp_path, "--arch", "mobilenet_v2", "--checkpoint", str(checkpoint), "--num-classes", "10") == 1
    err = capsys.readouterr().err
    assert "does not fit mobilenet_v2 with 10 classes" in err
    assert "classifier.1.weight: checkpoint [5, 1280] vs model [10, 1280]" in err
    assert not (tmp_path / "repo" / "mobilenet_v2").exists()


def test_unknown_architecture_and_unsafe_pickle_fail_cleanly(tmp_path, capsys):
    assert export(tmp_path, "--arch", "vgg11", "--checkpoint", str(tmp_path / "x.pth")) == 1
    assert "unknown architecture 'vgg11'" in capsys.readouterr().err
    torch.save(ESPCN(2, 8), tmp_path / "module.pth")
    assert export(tmp_path, "--arch", "espcn", "--checkpoint", str(tmp_path / "module.pth")) == 1
    assert "refused for safety" in capsys.readouterr().err


# ---- detectors -----------------------------------------------------------------------------------

CAT = 17  # torchvision COCO category index of "cat"


def boost_class(model: torch.nn.Module, arch: str, category: int, amount: float) -> None:
    """Raise one class's logit bias everywhere, so random weights give real (if meaningless) detections."""
    head = model.head.classification_head
    with torch.no_grad():
        if arch.startswith("retinanet"):
            head.cls_logits.bias.view(-1, head.num_classes)[:, category] += amount
        else:
            block = head.module_list[-1]  # the coarsest level only: a few dozen boxes, cheap NMS
            conv = block[1] if isinstance(block, torch.nn.Sequential) else block
            conv.bias.view(-1, head.num_columns)[:, category] += amount


def detector(arch: str, size: tuple[int, int], num_classes: int = 91, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    extra = {"min_size": size[0], "max_size": size[1]} if arch.startswith("retinanet") else {}
    model = DETECTORS[arch][0](weights=None, weights_backbone=None, num_classes=num_classes, **extra, **kwargs)
    boost_class(model, arch, CAT, 6.0 if arch.startswith("ssd") else 4.0)
    return model.eval()


@pytest.mark.parametrize(("arch", "size"), [
    ("ssdlite320_mobilenet_v3_large", (320, 320)),
    pytest.param("ssd300_vgg16", (300, 300), marks=pytest.mark.slow),
    pytest.param("retinanet_resnet50_fpn", (256, 256), marks=pytest.mark.slow),
])
def test_decoded_graph_outputs_hold_torchvisions_own_detections(arch, size):
    """torchvision's full forward (transform, decode, threshold, NMS) finds nothing our outputs lack."""
    reference = detector(arch, size, score_thresh=0.3)
    decoded = DecodedDetector(reference, size).eval()
    photo = torch.from_numpy(np.array(Image.fromarray(data.chelsea()).resize(size[::-1]))).permute(2, 0, 1)
    x = photo.float() / 255
    mean, std = (torch.tensor(v)[:, None, None] for v in detector_normalisation(reference))
    with torch.no_grad():
        expected = reference([x])[0]
        boxes, scores = decoded(((x - mean) / std)[None])
    columns = 90 if arch.startswith("ssd") else 91
    assert boxes.shape[2] == 4 and scores.shape == (1, boxes.shape[1], columns)
    assert len(expected["boxes"]) > 0
    assert (boxes[..., 2] <= size[1]).all() and (boxes[..., 3] <= size[0]).all() and (boxes >= 0).all()
    offset = 1 if arch.startswith("ssd") else 0  # SSD's background column is dropped
    for box, score, label in zip(expected["boxes"], expected["scores"], expected["labels"], strict=True):
        anchor = int((boxes[0] - box).abs().max(1).values.argmin())
        assert torch.allclose(boxes[0, anchor], box, atol=1e-3)
        assert abs(float(scores[0, anchor, int(label) - offset]) - float(score)) < 1e-5


def test_detector_cli_export_with_coco_labels_and_detections_in_parity(tmp_path):
    arch = "ssdlite320_mobilenet_v3_large"
    checkpoint = save(tmp_path, detector(arch, (320, 320)).state_dict())
    assert export(tmp_path, "--arch", arch, "--checkpoint", str(checkpoint), "--name", "cats") == 0
    model_dir = tmp_path / "repo" / "cats"
    config = triton_config(model_dir)
    assert [o.name for o in config.output] == ["boxes", "scores"]
    assert list(config.output[1].dims) == [-1, 90]
    assert list(config.input[0].dims) == [320, 320, 3]
    assert config.parameters["resize"].string_value == "stretch"
    assert config.parameters["mean"].string_value == "0.5,0.5,0.5"
    labels = (model_dir / "labels.txt").read_text().splitlines()
    assert len(labels) == 90 and labels[0] == "person" and labels[CAT - 1] == "cat"
    report = json.loads((model_dir / "1" / "parity.json").read_text())
    assert report["passed"] and report["metrics"]["detections"] > 0 and report["metrics"]["unpaired"] == 0
    assert any(d.startswith("cat ") for found in report["details"]["onnx_detections"].values() for d in found)


def test_detector_class_count_comes_from_the_checkpoint_or_the_labels(tmp_path):
    arch = "ssdlite320_mobilenet_v3_large"
    state = build_torchvision_detector(arch, num_classes=3).state_dict()
    checkpoint = save(tmp_path, {"module." + k: v for k, v in state.items()}, "s.pth")
    assert load_architecture(arch, checkpoint).card.labels == ("class_0", "class_1")  # background has no column
    with_bg = load_architecture(arch, checkpoint, ArchOptions(labels=("__background__", "apple", "pear")))
    assert with_bg.card.labels == ("apple", "pear")
    with pytest.raises(CheckpointError,
                       match="3 labels for ssdlite320_mobilenet_v3_large with num_classes=3: expected 2"):
        load_architecture(arch, checkpoint, ArchOptions(labels=("apple", "pear", "plum")))


@pytest.mark.slow
def test_retinanet_has_a_column_per_class_and_needs_fpn_sized_inputs(tmp_path):
    arch = "retinanet_resnet50_fpn"
    checkpoint = save(tmp_path, build_torchvision_detector(arch, num_classes=3).state_dict())
    loaded = load_architecture(arch, checkpoint, ArchOptions(input_size=(128, 128)))
    assert loaded.card.labels == ("class_0", "class_1", "class_2")  # sigmoid scores: no background column
    assert loaded.card.mean == (0.485, 0.456, 0.406)
    with pytest.raises(ValueError, match="RetinaNet input size must be a multiple of 32"):
        load_architecture(arch, checkpoint, ArchOptions(input_size=(100, 100)))


# ---- super-resolution ----------------------------------------------------------------------------

@pytest.mark.parametrize(("arch", "module", "scale"), [
    ("espcn", lambda: ESPCN(scale=2), 2),
    ("srresnet", lambda: SRResNet(scale=4), 4),  # the SRGAN generator: 16 blocks, two x2 PixelShuffles
])
def test_super_resolution_cli_export_reads_the_scale_from_the_checkpoint(tmp_path, arch, module, scale):
    torch.manual_seed(0)
    net = module()
    if isinstance(net, SRResNet):  # give BatchNorm real statistics, as a trained checkpoint has
        net.train()
        with torch.no_grad():
            net(torch.rand(4, 3, 24, 24))
    checkpoint = save(tmp_path, net.state_dict())
    # random weights are worse than bicubic: --force publishes them anyway
    assert export(tmp_path, "--arch", arch, "--checkpoint", str(checkpoint), "--name", f"{arch}_x{scale}",
                  "--force") == 0
    model_dir = tmp_path / "repo" / f"{arch}_x{scale}"
    config = triton_config(model_dir)
    assert list(config.input[0].dims) == [-1, -1, 3]
    assert config.parameters["scale"].string_value == str(scale)
    assert int(config.parameters["tile_overlap"].string_value) == net.margin
    report = json.loads((model_dir / "1" / "parity.json").read_text())
    assert report["passed"] and report["details"]["scale"] == scale
