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
    scale = 4 if (height // 4) % arch.min_divisor == 0 and (width // 4) % arch.min_divisor == 0 else 1
    return count_module_macs(model, (1, arch.in_channels, height // scale, width // scale)) * scale * scale


def count_module_macs(model: nn.Module, shape: tuple[int, ...]) -> float:
    """Multiply-accumulates of one forward pass of any module on a zero input of `shape` (thop)."""
    from thop import profile

    probe = copy.deepcopy(model).cpu().eval()
    logging.getLogger("thop").setLevel(logging.ERROR)
    with torch.no_grad():
        macs, _ = profile(probe, (torch.zeros(*shape),), verbose=False)
    return float(macs)


def conv_depth(model: nn.Module) -> int:
    """Number of convolution layers (the longest path counts each once)."""
    return sum(1 for m in model.modules() if isinstance(m, nn.Conv2d))
