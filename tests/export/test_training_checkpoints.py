"""Checkpoints as training scripts write them, built offline with random weights, load exactly.

The containers mirror what the scripts save: pytorch/examples' ImageNet script, torchvision's and
timm's reference training scripts (with their pickled ``args`` namespace), Lightning modules, and the
public ESPCN / SRGAN repositories' network layouts (re-declared here from their key names and shapes).
"""

from __future__ import annotations

import argparse
import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
from torch import nn  # noqa: E402

from visiongate.export.checkpoints import CheckpointError, load_into, read_checkpoint  # noqa: E402
from visiongate.export.sources.architectures import ArchOptions, load_architecture  # noqa: E402
from visiongate.export.sources.sr_nets import ESPCN  # noqa: E402

pytestmark = pytest.mark.export


@pytest.fixture
def net() -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.mobilenet_v3_small(num_classes=3).eval()


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _optimizer_state(model: nn.Module) -> dict:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(2, 3, 32, 32)).sum().backward()
    opt.step()
    return opt.state_dict()


def test_pytorch_examples_checkpoint_with_best_acc1_tensor(tmp_path, net):
    path = tmp_path / "model_best.pth.tar"
    torch.save({"epoch": 90, "arch": "mobilenet_v3_small", "state_dict": net.state_dict(),
                "best_acc1": torch.tensor(71.2), "optimizer": _optimizer_state(net.train()),
                "scheduler": {"step_size": 30, "gamma": 0.1, "last_epoch": 90}}, path)
    assert _same(read_checkpoint(path), net.state_dict())


def test_torchvision_reference_checkpoint_with_args_namespace_and_ema(tmp_path, net):
    ema = torch.optim.swa_utils.AveragedModel(net)
    args = argparse.Namespace(model="mobilenet_v3_small", lr=0.064, epochs=600, weights=None, data_path="/data",
                              mixup_alpha=0.2, auto_augment="imagenet", val_resize_size=256, amp=True)
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": net.state_dict(), "optimizer": _optimizer_state(net.train()),
                "lr_scheduler": {"last_epoch": 5}, "epoch": 5, "args": args, "model_ema": ema.state_dict()}, path)
    # the averaged weights are what one deploys: "module." stripped, the n_averaged counter dropped
    assert _same(read_checkpoint(path), ema.module.state_dict())


def test_timm_train_checkpoint_with_args_and_numpy_metric(tmp_path, net):
    args = argparse.Namespace(model="mobilenet_v3_small", mean=(0.485, 0.456, 0.406), num_classes=3,
                              drop_path=None, lr_base=0.1, sched="cosine", resume="")
    path = tmp_path / "last.pth.tar"
    torch.save({"epoch": 12, "arch": "mobilenetv3", "state_dict": net.state_dict(), "version": 2, "args": args,
                "metric": np.float64(63.5), "state_dict_ema": net.state_dict()}, path)
    assert _same(read_checkpoint(path), net.state_dict())


def test_lightning_checkpoint_with_net_prefix_and_attribute_dict_hparams(tmp_path, net):
    # Lightning's AttributeDict, declared under Lightning's module path only while saving (Lightning is
    # not installed here): the file then holds exactly the global a real Lightning checkpoint holds.
    module_names = ["lightning", "lightning.fabric", "lightning.fabric.utilities", "lightning.fabric.utilities.data"]
    attribute_dict = type("AttributeDict", (dict,), {"__module__": module_names[-1]})
    for name in module_names:
        sys.modules[name] = types.ModuleType(name)
    sys.modules[module_names[-1]].AttributeDict = attribute_dict  # type: ignore[attr-defined]
    try:
        state = {f"net.{k}": v for k, v in net.state_dict().items()}
        state["criterion.weight"] = torch.ones(3)  # a weighted loss saved with the module
        path = tmp_path / "epoch=3-step=400.ckpt"
        torch.save({"epoch": 3, "global_step": 400, "pytorch-lightning_version": "2.4.0", "state_dict": state,
                    "hyper_parameters": attribute_dict(lr=0.01, num_classes=3), "optimizer_states": [],
                    "lr_schedulers": [], "callbacks": {}, "loops": {}}, path)
    finally:
        for name in reversed(module_names):
            del sys.modules[name]
    import torchvision

    loaded = load_into(torchvision.models.mobilenet_v3_small(num_classes=3), read_checkpoint(path))
    assert _same(loaded.state_dict(), net.state_dict())


def test_a_pickled_module_is_still_refused(tmp_path, net):
    path = tmp_path / "whole.pth"
    torch.save({"epoch": 1, "model": net}, path)
    with pytest.raises(CheckpointError, match="refused for safety"):
        read_checkpoint(path)


def test_keys_under_an_unknown_prefix_load_and_partial_matches_get_a_hint(tmp_path, net):
    import torchvision

    path = tmp_path / "wrapped.pth"
    torch.save({f"encoder.{k}": v for k, v in net.state_dict().items()}, path)
    loaded = load_into(torchvision.models.mobilenet_v3_small(num_classes=3), read_checkpoint(path))
    assert _same(loaded.state_dict(), net.state_dict())
    partial = {f"encoder.{k}": v for k, v in net.state_dict().items() if not k.startswith("classifier")}
    with pytest.raises(CheckpointError, match=r"hint: .* keys are in the checkpoint under the prefix 'encoder.'"):
        load_into(torchvision.models.mobilenet_v3_small(num_classes=3), partial)


# ---- super-resolution layouts ------------------------------------------------------------------

class FirstPartESPCN(nn.Module):
    """The first_part/last_part ESPCN layout (luma in, tanh), as the public repository declares it."""

    def __init__(self, scale: int, channels: int = 1) -> None:
        super().__init__()
        self.first_part = nn.Sequential(nn.Conv2d(channels, 64, 5, padding=2), nn.Tanh(),
                                        nn.Conv2d(64, 32, 3, padding=1), nn.Tanh())
        self.last_part = nn.Sequential(nn.Conv2d(32, channels * scale**2, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x):
        return self.last_part(self.first_part(x))


class ConvESPCN(nn.Module):
    """The conv1..conv4 layout (luma in, ReLU)."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 5, padding=2)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 32, 3, padding=1)
        self.conv4 = nn.Conv2d(32, scale**2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x):
        return self.shuffle(self.conv4(torch.relu(self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(x))))))))


def _ycbcr_full(rgb: torch.Tensor) -> torch.Tensor:
    r, g, b = (rgb[:, i:i + 1] * 255 for i in range(3))
    return torch.cat([0.299 * r + 0.587 * g + 0.114 * b,
                      128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
                      128 + 0.5 * r - 0.418688 * g - 0.081312 * b], dim=1)


@pytest.mark.parametrize("scale", [2, 3])
def test_first_part_espcn_luma_checkpoint_is_read_with_its_own_scale(tmp_path, scale):
    torch.manual_seed(0)
    source = FirstPartESPCN(scale).eval()
    path = tmp_path / f"espcn_x{scale}.pth"
    torch.save(source.state_dict(), path)
    loaded = load_architecture("espcn", path)
    assert loaded.card.extra["scale"] == str(scale)
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        out = loaded.module(x)
        y = (16 + (65.481 * x[:, 0] + 128.553 * x[:, 1] + 24.966 * x[:, 2]))[:, None] / 255
        expected_y = source(y) * 255
    assert out.shape == (1, 3, 20 * scale, 24 * scale)
    # luma of the output (studio range) is the network's luma
    out_y = 16 + (65.481 * out[:, 0] + 128.553 * out[:, 1] + 24.966 * out[:, 2])
    assert torch.allclose(out_y[:, None], expected_y, atol=1e-2)


def test_a_scale_mismatch_names_the_checkpoints_scale(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "espcn_x3.pth"
    torch.save(FirstPartESPCN(3).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"the checkpoint is ESPCN x3 .*--scale 3"):
        load_architecture("espcn", path, ArchOptions(scale=2))
    torch.save(ESPCN(3, 16).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"the checkpoint is ESPCN x3"):
        load_architecture("espcn", path, ArchOptions(scale=4))


def test_conv_layout_espcn_uses_relu_and_full_range_luma(tmp_path):
    torch.manual_seed(0)
    source = ConvESPCN(3).eval()
    path = tmp_path / "netG.pth"
    torch.save(source.state_dict(), path)
    loaded = load_architecture("espcn", path)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        out = loaded.module(x)
        expected_y = source(_ycbcr_full(x)[:, :1] / 255) * 255
    assert torch.allclose(_ycbcr_full(out)[:, :1], expected_y, atol=1e-2)


class _RCB(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rcb = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.PReLU(),
                                 nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))

    def forward(self, x):
        return x + self.rcb(x)


class _Up(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.upsample_block = nn.Sequential(nn.Conv2d(16, 64, 3, padding=1), nn.PixelShuffle(2), nn.PReLU())

    def forward(self, x):
        return self.upsample_block(x)


class SRGANGenerator(nn.Module):
    """The conv_block1/trunk/conv_block2/upsampling/conv_block3 generator layout, 16 channels, 3 blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_block1 = nn.Sequential(nn.Conv2d(3, 16, 9, padding=4), nn.PReLU())
        self.trunk = nn.Sequential(*(_RCB() for _ in range(3)))
        self.conv_block2 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.upsampling = nn.Sequential(_Up(), _Up())
        self.conv_block3 = nn.Conv2d(16, 3, 9, padding=4)

    def forward(self, x):
        head = self.conv_block1(x)
        return self.conv_block3(self.upsampling(head + self.conv_block2(self.trunk(head))))


def test_srgan_generator_layout_loads_into_srresnet(tmp_path):
    torch.manual_seed(0)
    source = SRGANGenerator()
    for module in source.modules():
        if isinstance(module, nn.BatchNorm2d):  # trained-looking statistics, so the mapping is exercised
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    source.eval()
    path = tmp_path / "g_best.pth.tar"
    torch.save({"epoch": 10, "best_psnr": 27.1, "state_dict": source.state_dict(), "optimizer": {}}, path)
    loaded = load_architecture("srresnet", path)
    assert loaded.card.extra["scale"] == "4" and "SRGAN-PyTorch" in loaded.card.provenance
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.allclose(loaded.module(x), source(x), atol=1e-5)
    with pytest.raises(CheckpointError, match=r"the checkpoint is SRResNet x4 .*--scale 4"):
        load_architecture("srresnet", path, ArchOptions(scale=2))
