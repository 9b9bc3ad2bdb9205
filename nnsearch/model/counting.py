"""Static model facts: parameters, MACs (thop), depth."""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from nnsearch.model.arch import Arch


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, arch: Arch, height: int, width: int) -> float:
    """Multiply-accumulates at 1x3xHxW counted with thop.

    The students are fully convolutional, so MACs scale exactly with the pixel
    count; thop runs at a quarter of each side when that keeps every level's size
    exact, which makes Full HD counts cheap.
    """
    from thop import profile

    scale = 4 if (height // 4) % arch.min_divisor == 0 and (width // 4) % arch.min_divisor == 0 else 1
    probe = copy.deepcopy(model).cpu().eval()
    logging.getLogger("thop").setLevel(logging.ERROR)
    with torch.no_grad():
        macs, _ = profile(probe, (torch.zeros(1, arch.in_channels, height // scale, width // scale),), verbose=False)
    return float(macs) * scale * scale


def conv_depth(model: nn.Module) -> int:
    """Number of convolution layers (the longest path counts each once)."""
    return sum(1 for m in model.modules() if isinstance(m, nn.Conv2d))
