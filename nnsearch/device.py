"""Compute-device choice: CUDA when available, otherwise the CPU."""

from __future__ import annotations

import os

import torch


def default_device() -> torch.device:
    """`cuda` when a GPU is visible (and NNSEARCH_DEVICE does not say otherwise), else `cpu`."""
    forced = os.environ.get("NNSEARCH_DEVICE")
    if forced:
        return torch.device(forced)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
