"""Training batches: a progressive crop schedule and a fixed, seeded batch plan.

The plan is deterministic given (data, schedule, steps, batch, seed), so the
teacher's outputs for it can be computed once and reused by every candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from nnsearch.errors import DataError


@dataclass(frozen=True)
class CropSchedule:
    """Crop sizes used in equal shares of the step budget, e.g. (48, 64, 96)."""

    sizes: tuple[int, ...] = (48, 64)

    def size_at(self, step: int, steps: int) -> int:
        """Crop side used at `step` of `steps` (sizes grow over the budget)."""
        index = min(len(self.sizes) - 1, step * len(self.sizes) // max(steps, 1))
        return self.sizes[index]

    def describe(self) -> str:
        return "crops " + "->".join(map(str, self.sizes))


@dataclass(frozen=True)
class Batch:
    """One training batch, NCHW float tensors in [0, 1]."""

    noisy: torch.Tensor
    clean: torch.Tensor


def fit_crop(size: int, images: Sequence[np.ndarray], multiple: int = 16) -> int:
    """Largest crop <= `size` that fits every image and is a multiple of `multiple`."""
    smallest = min(min(img.shape[:2]) for img in images)
    fitted = min(size, smallest) // multiple * multiple
    if fitted < multiple:
        raise DataError(f"training images are too small ({smallest} px) for crops that are multiples of {multiple}")
    return fitted


def make_batch_plan(
    pairs: Sequence[object], schedule: CropSchedule, steps: int, batch: int, seed: int, multiple: int = 16
) -> list[Batch]:
    """Seeded random crops (with flips) for every step of a training budget."""
    rng = np.random.default_rng(seed)
    noisy = [np.ascontiguousarray(p.noisy) for p in pairs]  # type: ignore[attr-defined]
    clean = [np.ascontiguousarray(p.clean) for p in pairs]  # type: ignore[attr-defined]
    plan = []
    for step in range(steps):
        size = fit_crop(schedule.size_at(step, steps), clean, multiple)
        picks = [_random_crop(noisy, clean, size, rng) for _ in range(batch)]
        plan.append(Batch(
            noisy=torch.from_numpy(np.stack([p[0] for p in picks])).permute(0, 3, 1, 2).contiguous(),
            clean=torch.from_numpy(np.stack([p[1] for p in picks])).permute(0, 3, 1, 2).contiguous(),
        ))
    return plan


def _random_crop(noisy: list[np.ndarray], clean: list[np.ndarray], size: int, rng: np.random.Generator):
    i = int(rng.integers(len(clean)))
    h, w = clean[i].shape[:2]
    y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
    a = noisy[i][y:y + size, x:x + size]
    b = clean[i][y:y + size, x:x + size]
    if rng.random() < 0.5:
        a, b = a[:, ::-1], b[:, ::-1]
    return np.ascontiguousarray(a, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32)
