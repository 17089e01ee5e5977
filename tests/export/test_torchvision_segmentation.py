"""``--arch torchvision:<segmentation model>``: DeepLabV3 / LR-ASPP / FCN exported by name and served on /v1/segment.

No pretrained weights can be downloaded here: the end-to-end test exports a checkpoint of the random
initialisation whose BatchNorm statistics were calibrated on real photos (so the class map is not one
constant class), proves it against PyTorch (mask IoU >= 0.99) and serves it with a real gateway.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from PIL import Image  # noqa: E402

from support import GatewayProcess, encode, photo, wait_ready  # noqa: E402
from visiongate.export.checkpoints import CheckpointError  # noqa: E402
from visiongate.export.sources.library import library_config, load_library_model  # noqa: E402
from visiongate.service.cli import main  # noqa: E402

pytestmark = [
    pytest.mark.export,
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"),
]

NAME = "lraspp_mobilenet_v3_large"


@pytest.mark.parametrize("name", ["deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large", "fcn_resnet50"])
def test_segmentation_configs_come_from_the_weights_enum(name: str) -> None:
    cfg = library_config("torchvision", name)
    assert cfg.task == "segment"
    assert cfg.input_size == (520, 520) and cfg.interpolation == "bilinear"
    assert cfg.mean == pytest.approx((0.485, 0.456, 0.406)) and cfg.std == pytest.approx((0.229, 0.224, 0.225))
    assert cfg.labels is not None and len(cfg.labels) == 21 and cfg.labels[15] == "person"


def test_an_unknown_name_suggests_the_segmentation_models() -> None:
    with pytest.raises(CheckpointError, match="deeplabv3_resnet50"):
        library_config("torchvision", "deeplabv3_resnet5")


def test_a_checkpoint_with_an_auxiliary_head_and_other_class_count_loads() -> None:
    import torchvision

    torch.manual_seed(0)
    source = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=3,
                                                          aux_loss=True).eval()
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    assert any("aux_classifier" in k for k in state)
    loaded = load_library_model("torchvision", "fcn_resnet50", None)
    assert loaded.random_weights and loaded.card.labels is not None and len(loaded.card.labels) == 21
    from visiongate.export.sources.torchvision_segmentation import torchvision_segmenter

    mine = torchvision_segmenter("fcn_resnet50", state, None, None, None, "test")
    assert mine.card.labels == ("class_0", "class_1", "class_2")
    x = torch.rand(1, 3, 64, 80)
    with torch.no_grad():
        assert torch.equal(mine.module(x), source(x)["out"])
    assert mine.card.extra["output_activation"] == "softmax" and mine.card.resize == "letterbox"


def calibrated_checkpoint(path: Path) -> Path:
    """The random initialisation with BatchNorm statistics measured on real photos."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.get_model(NAME, weights=None, weights_backbone=None, num_classes=21)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the calibration batches
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    net.train()
    with torch.no_grad():
        for name in ("astronaut", "chelsea", "coffee", "motorcycle"):
            rgb = np.array(Image.fromarray(photo(name)).resize((256, 256)))
            x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
            net((x - mean) / std)
    torch.save({"state_dict": net.eval().state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    work = tmp_path_factory.mktemp("tvseg")
    checkpoint = calibrated_checkpoint(work / "lraspp.pth")
    repo = work / "repo"
    assert main(["export", "--repository", str(repo), "--no-progress", "--arch", f"torchvision:{NAME}",
                 "--checkpoint", str(checkpoint), "--name", "voc"]) == 0
    server = GatewayProcess(repo)
    try:
        wait_ready(server.url)
        yield server.url, repo / "voc"
    finally:
        server.stop()


def test_the_export_is_proved_against_pytorch(served: tuple[str, Path]) -> None:
    _, model_dir = served
    report = json.loads((model_dir / "1" / "parity.json").read_text())
    assert report["passed"] and report["task"] == "segment"
    assert report["metrics"]["min_mask_iou"] >= 0.99
    assert (model_dir / "labels.txt").read_text().split()[15] == "person"


def test_segment_answers_a_class_map_in_the_photo_s_own_size(served: tuple[str, Path]) -> None:
    url, _ = served
    rgb = photo("astronaut")[:480, :360]  # not square: the letterbox must come back out
    r = httpx.post(f"{url}/v1/segment?model=voc", content=encode(rgb, "PNG"), headers={"content-type": "image/png"},
                   timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "semantic" and body["image"] == {"width": 360, "height": 480}
    ids = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["class_map"]))))
    assert ids.shape == (480, 360) and ids.dtype == np.uint8 and int(ids.max()) < 21
    present = {c["class_id"]: c["fraction"] for c in body["classes"]}
    assert len(present) >= 2, "the calibrated random network does not paint one class everywhere"
    assert sum(present.values()) == pytest.approx(1.0, abs=1e-3)
    for c in body["classes"]:
        assert c["fraction"] == pytest.approx(float((ids == c["class_id"]).mean()), abs=1e-5)
