"""Super-resolution checkpoints as other people's code saves them, mapped onto networks we can export.

ESPCN (sub-pixel CNN), recognised by key names; the convolution sizes and the scale are read from
the tensor shapes (the last convolution has ``channels * scale**2`` outputs):
- ``visiongate``: ``body.{0,2,4}`` (RGB, tanh), this project's own ``sr_nets.ESPCN``;
- ``first_part``: ``first_part.{0,2}`` + ``last_part.0`` (tanh), as in yjn870/ESPCN-pytorch;
- ``feature_maps``: ``feature_maps.{0,2}`` + ``sub_pixel.0`` (tanh, output clamped), as in Lornatang/ESPCN-PyTorch;
- ``conv``: ``conv1`` .. ``convK`` (ReLU when K = 4 as in leftthomas/ESPCN, tanh for the paper's K = 3).
One-channel checkpoints work on luma, as those repositories train them: the graph converts RGB to
YCbCr (BT.601 studio range for the first two, full range, as Pillow's ``YCbCr``, for ``conv``),
upscales Y with the network and Cb/Cr bicubically, and converts back.

SRResNet: Lornatang/SRGAN-PyTorch's generator (``conv_block1``/``conv1``, ``trunk.{i}.rcb``,
``conv_block2``/``conv2``, ``upsampling.{j}.upsample_block``, ``conv_block3``/``conv3``) is this
project's ``SRResNet`` with bias-free convolutions: its keys are renamed and the missing biases are zeros.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..checkpoints import CheckpointError

# (offset, matrix) taking RGB in 0..255 to YCbCr in 0..255
_STUDIO = ((16.0, 128.0, 128.0), ((65.481, 128.553, 24.966), (-37.797, -74.203, 112.0), (112.0, -93.786, -18.214)))
_FULL = ((0.0, 128.0, 128.0), ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312)))


@dataclass(frozen=True)
class EspcnLayout:
    name: str
    keys: tuple[str, ...]  # the convolutions, in order (without .weight/.bias)
    activation: str  # "tanh" | "relu"
    luma: str  # YCbCr range used for one-channel checkpoints: "studio" | "full"
    source: str


def _conv_keys(state: Mapping[str, torch.Tensor]) -> tuple[str, ...]:
    numbers = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"conv(\d+)\.weight", k)))
    return tuple(f"conv{i}" for i in numbers)


def espcn_layout(state: Mapping[str, torch.Tensor]) -> EspcnLayout | None:
    """Which public ESPCN layout ``state`` follows, or ``None``."""
    if "body.0.weight" in state and "body.4.weight" in state:
        return EspcnLayout("visiongate", ("body.0", "body.2", "body.4"), "tanh", "studio", "visiongate ESPCN")
    if "first_part.0.weight" in state and "last_part.0.weight" in state:
        return EspcnLayout("first_part", ("first_part.0", "first_part.2", "last_part.0"), "tanh", "studio",
                           "first_part/last_part layout (yjn870/ESPCN-pytorch)")
    if "feature_maps.0.weight" in state and "sub_pixel.0.weight" in state:
        return EspcnLayout("feature_maps", ("feature_maps.0", "feature_maps.2", "sub_pixel.0"), "tanh", "studio",
                           "feature_maps/sub_pixel layout (Lornatang/ESPCN-PyTorch)")
    convs = _conv_keys(state)
    if len(convs) >= 3 and convs == tuple(f"conv{i}" for i in range(1, len(convs) + 1)):
        return EspcnLayout("conv", convs, "relu" if len(convs) == 4 else "tanh", "full",
                           f"conv1..conv{len(convs)} layout" + (" (leftthomas/ESPCN)" if len(convs) == 4 else ""))
    return None


def espcn_scale(state: Mapping[str, torch.Tensor], layout: EspcnLayout) -> int:
    """The factor the checkpoint was trained for: its last conv has ``channels * scale**2`` outputs.

    Raises:
        CheckpointError: the output count is not ``channels * scale**2`` for any integer scale.
    """
    channels = int(state[f"{layout.keys[0]}.weight"].shape[1])
    outputs = int(state[f"{layout.keys[-1]}.weight"].shape[0])
    scale = math.isqrt(outputs // channels) if outputs % channels == 0 else 0
    if scale < 1 or channels * scale * scale != outputs:
        raise CheckpointError(f"ESPCN ({layout.source}): the last convolution has {outputs} outputs for "
                              f"{channels} input channels, which is no channels x scale^2")
    return scale


class SubPixelNet(nn.Module):
    """An ESPCN of any depth built from a checkpoint's shapes; RGB in [0, 1] -> RGB ``[N, 3, sH, sW]``."""

    def __init__(self, state: Mapping[str, torch.Tensor], layout: EspcnLayout, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.activation = layout.activation
        convs = []
        for key in layout.keys:
            weight = state[f"{key}.weight"]
            out_c, in_c, kh, kw = (int(d) for d in weight.shape)
            convs.append(nn.Conv2d(in_c, out_c, (kh, kw), padding=(kh // 2, kw // 2), bias=f"{key}.bias" in state))
        self.convs = nn.ModuleList(convs)
        self.shuffle = nn.PixelShuffle(scale)
        self.channels = convs[0].in_channels
        if self.channels not in (1, 3):
            raise CheckpointError(f"ESPCN ({layout.source}) takes {self.channels} channels; expected 1 (luma) or 3")
        offset, matrix = _STUDIO if layout.luma == "studio" else _FULL
        forward = torch.tensor(matrix, dtype=torch.float64)
        if layout.luma == "studio":
            forward = forward / 255.0  # studio coefficients take RGB in [0, 1]
        self.register_buffer("to_ycc", forward.float(), persistent=False)
        self.register_buffer("from_ycc", torch.linalg.inv(forward).float(), persistent=False)
        self.register_buffer("offset", torch.tensor(offset).view(1, 3, 1, 1), persistent=False)
        # receptive margin: the sum of the kernels' half-sizes
        self.margin = sum(c.kernel_size[0] // 2 for c in convs)

    def state_key(self, layout: EspcnLayout, key: str) -> str:
        """Our key for one of the checkpoint's keys."""
        base, _, leaf = key.rpartition(".")
        return f"convs.{layout.keys.index(base)}.{leaf}"

    def net(self, x: torch.Tensor) -> torch.Tensor:
        act = torch.tanh if self.activation == "tanh" else torch.relu
        for conv in self.convs[:-1]:
            x = act(conv(x))
        out: torch.Tensor = self.shuffle(self.convs[-1](x))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels == 3:
            return self.net(x)
        offset = self.get_buffer("offset")
        ycc = torch.einsum("ij,njhw->nihw", self.to_ycc, x * 255.0) + offset
        y = self.net(ycc[:, :1] / 255.0) * 255.0
        chroma = nn.functional.interpolate(ycc[:, 1:], scale_factor=self.scale, mode="bicubic", align_corners=False)
        rgb = torch.einsum("ij,njhw->nihw", self.from_ycc, torch.cat([y, chroma], dim=1) - offset)
        return rgb / 255.0


def load_espcn(state: Mapping[str, torch.Tensor], layout: EspcnLayout, scale: int) -> SubPixelNet:
    module = SubPixelNet(state, layout, scale)
    wanted = {f"{k}.{leaf}" for k in layout.keys for leaf in ("weight", "bias")}
    extra = sorted(k for k in state if k not in wanted)
    if extra:
        raise CheckpointError(f"ESPCN ({layout.source}): unexpected keys {', '.join(extra[:8])}")
    module.load_state_dict({module.state_key(layout, k): v for k, v in state.items()}, strict=True)
    return module.eval()


_SRRESNET_RENAMES = (
    (re.compile(r"^(?:conv_block1|conv1)\.(.+)$"), r"head.\1"),
    (re.compile(r"^trunk\.(\d+)\.rcb\.(.+)$"), r"blocks.\1.body.\2"),
    (re.compile(r"^(?:conv_block2|conv2)\.(.+)$"), r"trunk.\1"),
    (re.compile(r"^upsampling\.(\d+)\.upsample_block\.(.+)$"), r"upsample.\1.\2"),
    (re.compile(r"^(?:conv_block3|conv3)\.(.+)$"), r"tail.\1"),
)


def is_srgan_layout(state: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("trunk.0.rcb.") for k in state)


def from_srgan_layout(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Lornatang/SRGAN-PyTorch generator keys -> ``sr_nets.SRResNet`` keys, zero biases where it has none."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for pattern, replacement in _SRRESNET_RENAMES:
            if pattern.match(key):
                out[pattern.sub(replacement, key)] = value
                break
        else:
            out[key] = value
    for key, value in list(out.items()):
        bias = key[: -len("weight")] + "bias"
        if key.endswith(".weight") and value.ndim == 4 and bias not in out:
            out[bias] = torch.zeros(value.shape[0], dtype=value.dtype)
    return out
