"""Build a denoising student from an architecture description.

The student is a U-Net made only of operations that mobile NPUs run natively:
3x3 convolutions, ReLU, nearest-neighbour x2 upsampling, stride-2 convolution
or 2x2 max-pooling, element-wise add, channel concatenation and a final clamp.

This module imports nothing but torch: its source text is embedded verbatim in
every model file the store records, so a recorded student rebuilds without
nnsearch installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

BLOCK_TYPES = ("residual", "plain")
SKIP_TYPES = ("concat", "add", "none")
DOWNSAMPLE_TYPES = ("conv", "maxpool")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """A 3x3 convolution with 'same' padding (padding 1)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)


class ResidualBlock(nn.Module):
    """conv3x3 f -> f/2, ReLU, conv3x3 f/2 -> f, add the input, ReLU."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(width, width // 2)
        self.act1 = nn.ReLU()
        self.conv2 = conv3x3(width // 2, width)
        self.act2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.conv2(self.act1(self.conv1(x))) + x)


class PlainBlock(nn.Module):
    """conv3x3 f -> f followed by ReLU."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = conv3x3(width, width)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


def make_stage(width: int, blocks: int, block: str) -> nn.Sequential:
    """`blocks` blocks of one type at one width (an empty stage is the identity)."""
    kind = ResidualBlock if block == "residual" else PlainBlock
    return nn.Sequential(*[kind(width) for _ in range(blocks)])


def make_downsample(in_channels: int, out_channels: int, down: str) -> nn.Sequential:
    """Halve the resolution and change the width: stride-2 conv or max-pool + conv."""
    if down == "conv":
        return nn.Sequential(conv3x3(in_channels, out_channels, stride=2), nn.ReLU())
    return nn.Sequential(nn.MaxPool2d(2), conv3x3(in_channels, out_channels), nn.ReLU())


class Student(nn.Module):
    """U-Net student; level 0 is full resolution, the last level is the bottleneck."""

    def __init__(
        self,
        widths: tuple[int, ...],
        blocks: tuple[int, ...],
        skips: tuple[str, ...],
        block: str = "residual",
        downsample: str = "conv",
        global_residual: bool = True,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        levels = len(widths)
        self.skips = tuple(skips)
        self.global_residual = bool(global_residual)
        self.stem = conv3x3(in_channels, widths[0])
        self.encoder = nn.ModuleList(make_stage(widths[i], blocks[i], block) for i in range(levels - 1))
        self.down = nn.ModuleList(make_downsample(widths[i], widths[i + 1], downsample) for i in range(levels - 1))
        self.bottleneck = make_stage(widths[-1], blocks[-1], block)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.fuse = nn.ModuleList(
            conv3x3(widths[i + 1] + (widths[i] if skips[i] == "concat" else 0), widths[i]) for i in range(levels - 1)
        )
        self.decoder = nn.ModuleList(make_stage(widths[i], blocks[i], block) for i in range(levels - 1))
        self.head = conv3x3(widths[0], in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        h = self.stem(x)
        for encode, down in zip(self.encoder, self.down):
            h = encode(h)
            features.append(h)
            h = down(h)
        h = self.bottleneck(h)
        for i in range(len(self.fuse) - 1, -1, -1):
            up = self.upsample(h)
            if self.skips[i] == "concat":
                h = self.fuse[i](torch.cat([up, features[i]], 1))
            elif self.skips[i] == "add":
                h = self.fuse[i](up) + features[i]
            else:
                h = self.fuse[i](up)
            h = self.decoder[i](h)
        out = self.head(h)
        if self.global_residual:
            out = out + x
        return torch.clamp(out, 0.0, 1.0)


def build_student(arch: Any) -> Student:
    """Build the torch module for an `Arch` (or a mapping with the same fields)."""
    fields: Mapping[str, Any] = arch if isinstance(arch, Mapping) else arch.to_dict()
    return Student(
        widths=tuple(fields["widths"]),
        blocks=tuple(fields["blocks"]),
        skips=tuple(fields["skips"]),
        block=fields["block"],
        downsample=fields["downsample"],
        global_residual=fields["global_residual"],
        in_channels=fields.get("in_channels", 3),
    )
