"""Two classic super-resolution networks, written out so users can export their own trained weights.

Both take RGB ``[N, 3, H, W]`` in [0, 1] and return ``[N, 3, H*scale, W*scale]`` on the same
scale (not clamped: the gateway clamps and rounds); H and W are free.

- ``ESPCN`` (Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using an
  Efficient Sub-Pixel Convolutional Neural Network"): conv 5x5 -> ``features`` (tanh), conv 3x3 ->
  ``features // 2`` (tanh), conv 3x3 -> ``3 * scale**2``, PixelShuffle(scale). Any integer scale.
  State-dict keys: ``body.0.*``, ``body.2.*``, ``body.4.*``.
- ``SRResNet`` (Ledig et al. 2017, the SRGAN generator): conv 9x9 -> 64 + PReLU; ``blocks``
  residual blocks (conv 3x3, BN, PReLU, conv 3x3, BN, + skip); conv 3x3 + BN added to the stem
  output; per factor 2, conv 3x3 -> 256, PixelShuffle(2), PReLU; conv 9x9 -> 3. Scale 2, 4 or 8.
  Keys: ``head.*``, ``blocks.{i}.body.{0,1,2,3,4}.*``, ``trunk.{0,1}.*``, ``upsample.{j}.{0,2}.*``, ``tail.*``.

``margin`` is the receptive margin in input pixels: tiles that overlap by that much stitch seamlessly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
from torch import nn


class ESPCN(nn.Module):
    def __init__(self, scale: int = 2, features: int = 64) -> None:
        super().__init__()
        if scale < 1:
            raise ValueError(f"ESPCN scale must be a positive integer, got {scale}")
        self.scale = scale
        self.body = nn.Sequential(
            nn.Conv2d(3, features, 5, padding=2), nn.Tanh(),
            nn.Conv2d(features, features // 2, 3, padding=1), nn.Tanh(),
            nn.Conv2d(features // 2, 3 * scale * scale, 3, padding=1),
        )
        self.shuffle = nn.PixelShuffle(scale)

    margin = 4  # 2 + 1 + 1 input pixels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.shuffle(self.body(x))
        return out

    @staticmethod
    def scale_of(state: Mapping[str, torch.Tensor]) -> int | None:
        """The scale a checkpoint was trained for: its last conv has ``3 * scale**2`` outputs."""
        weight = state.get("body.4.weight")
        if weight is None:
            return None
        scale = math.isqrt(weight.shape[0] // 3)
        return scale if 3 * scale * scale == weight.shape[0] else None


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.PReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual: torch.Tensor = self.body(x)
        return x + residual


class SRResNet(nn.Module):
    def __init__(self, scale: int = 4, blocks: int = 16, channels: int = 64) -> None:
        super().__init__()
        if scale not in (2, 4, 8):
            raise ValueError(f"SRResNet upsamples by factors of 2: scale must be 2, 4 or 8, got {scale}")
        self.scale = scale
        self.head = nn.Sequential(nn.Conv2d(3, channels, 9, padding=4), nn.PReLU())
        self.blocks = nn.Sequential(*(_Residual(channels) for _ in range(blocks)))
        self.trunk = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
        self.upsample = nn.Sequential(*(
            nn.Sequential(nn.Conv2d(channels, channels * 4, 3, padding=1), nn.PixelShuffle(2), nn.PReLU())
            for _ in range(int(math.log2(scale)))
        ))
        self.tail = nn.Conv2d(channels, 3, 9, padding=4)
        # stem 4 + 2 per block + trunk 1 + the upsample convs (1, 1/2, 1/4 ...) + tail 4/scale, rounded up
        self.margin = math.ceil(4 + 2 * blocks + 1 + sum(0.5 ** i for i in range(len(self.upsample))) + 4 / scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.head(x)
        out: torch.Tensor = self.tail(self.upsample(stem + self.trunk(self.blocks(stem))))
        return out

    @staticmethod
    def shape_of(state: Mapping[str, torch.Tensor]) -> tuple[int | None, int | None]:
        """(scale, residual blocks) a checkpoint was built with, from its key names."""
        ups = {int(m.group(1)) for k in state if (m := re.match(r"upsample\.(\d+)\.", k))}
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
        return (2 ** len(ups) if ups else None), (len(blocks) if blocks else None)
