"""Training batches: a progressive crop schedule and a fixed, seeded batch plan.

The plan is deterministic given (data, schedule, steps, batch, seed, multiple),
so the teacher's outputs for it can be computed once and reused by every
candidate. Batches are cut on demand from a per-step random stream: any step
can be rebuilt on its own (cheap), which lets long budgets (a 200k-step
teacher, crops up to 1024 px) run without holding the whole plan in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from nnsearch.errors import DataError
from nnsearch.train.config import MAX_CROP, CropSchedule  # noqa: F401 - importable from here
from nnsearch.train.datasets.synthetic import SyntheticPair
from nnsearch.train.datasets.types import Pair

#: Largest crop side a schedule may name (the paper's progressive training ends at 1024 px).


@dataclass(frozen=True)
class Batch:
    """One training batch, NCHW float tensors in [0, 1]."""

    noisy: torch.Tensor
    clean: torch.Tensor


def fit_crop(size: int, images: Sequence[np.ndarray | Pair], multiple: int = 16) -> int:
    """Largest crop <= `size` that fits every image (or pair) and is a multiple of `multiple`."""
    smallest = min(min(img.shape[:2]) for img in images)
    fitted = min(size, smallest) // multiple * multiple
    if fitted < multiple:
        raise DataError(
            f"crop {size} px cannot be cut: the smallest training image is {smallest} px and crops "
            f"must be multiples of {multiple} px (the student's downsampling factor)"
        )
    return fitted


class BatchPlan(Sequence[Batch]):
    """Seeded random crops (with horizontal flips) for every step of a training budget.

    `plan[step]` is rebuilt from a random stream seeded by (seed, step), so it is
    the same every time and in every process.
    """

    def __init__(
        self, pairs: Sequence[Pair], schedule: CropSchedule, steps: int, batch: int, seed: int, multiple: int = 16
    ) -> None:
        if steps < 1 or batch < 1:
            raise DataError(f"a batch plan needs steps >= 1 and batch >= 1, got steps={steps} batch={batch}")
        if not pairs:
            raise DataError("a batch plan needs at least one training image pair")
        self.pairs = tuple(pairs)
        self.schedule, self.steps, self.batch, self.seed, self.multiple = schedule, steps, batch, seed, multiple
        try:
            self.sizes = tuple(fit_crop(s, self.pairs, multiple) for s in schedule.sizes)
        except DataError as exc:
            raise DataError(f"crop schedule {list(schedule.sizes)} does not fit the training images: {exc}") from None

    def crop_at(self, step: int) -> int:
        """Crop side (after fitting to the images and the multiple) used at `step`."""
        return self.sizes[min(len(self.sizes) - 1, step * len(self.sizes) // self.steps)]

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> Batch:  # type: ignore[override]
        if not isinstance(step, (int, np.integer)):
            raise TypeError("BatchPlan indices must be integers")
        if step < 0:
            step += self.steps
        if not 0 <= step < self.steps:
            raise IndexError(f"step {step} is outside the plan of {self.steps} steps")
        rng = np.random.default_rng([self.seed, int(step)])
        size = self.crop_at(int(step))
        picks = [_random_crop(self.pairs, size, rng) for _ in range(self.batch)]
        return Batch(
            noisy=torch.from_numpy(np.stack([p[0] for p in picks])).permute(0, 3, 1, 2).contiguous(),
            clean=torch.from_numpy(np.stack([p[1] for p in picks])).permute(0, 3, 1, 2).contiguous(),
        )

    def __iter__(self) -> Iterator[Batch]:
        return (self[step] for step in range(self.steps))


def make_batch_plan(
    pairs: Sequence[Pair], schedule: CropSchedule, steps: int, batch: int, seed: int, multiple: int = 16
) -> BatchPlan:
    """The seeded batch plan of a training budget (see :class:`BatchPlan`)."""
    return BatchPlan(pairs, schedule, steps, batch, seed, multiple)


def _random_crop(pairs: Sequence[Pair], size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random crop (and horizontal flip) of a random pair; only the crop is read from a streamed pair.

    A synthetic pair gets new noise (and a channel permutation) for the crop, see
    :class:`~nnsearch.train.datasets.synthetic.SyntheticPair`.
    """
    i = int(rng.integers(len(pairs)))
    h, w = pairs[i].shape[:2]
    y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
    pair = pairs[i]
    a, b = pair.fresh_crop(y, x, size, rng) if isinstance(pair, SyntheticPair) else pair.crop(y, x, size)
    if rng.random() < 0.5:
        a, b = a[:, ::-1], b[:, ::-1]
    return np.ascontiguousarray(a, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32)


def transform_name(crops: Sequence[int]) -> str:
    """The `transform` row name of training on these crops (random crops + horizontal flips)."""
    return "crops_" + "-".join(map(str, crops)) + "_hflip"


def transform_code(crops: Sequence[int]) -> str:
    """The `transform` row code of :func:`transform_name`."""
    return (
        f"# random crops {' -> '.join(map(str, crops))} px (progressive over the step budget), "
        "random horizontal flip; see nnsearch.train.crops\n"
    )


def calibration_crops(pairs: Sequence[Pair], count: int, size: int, seed: int) -> list[np.ndarray]:
    """`count` seeded random `size` px crops of the noisy training images (1xHxWx3 float32, NHWC).

    They are what a quantizer's calibration sees: the student's real inputs
    (only the crops are read from a streamed pair). DataError when there are no
    pairs or an image is smaller than the crop.
    """
    if count < 1 or not pairs:
        raise DataError(
            f"calibration needs at least one sample and one training pair, got {count} samples and {len(pairs)} pairs"
        )
    small = [(p.name, p.shape[:2]) for p in pairs if min(p.shape[:2]) < size]
    if small:
        name, (h, w) = small[0]
        raise DataError(
            f"calibration crops of {size} px do not fit training image {name!r} ({h}x{w}); "
            f"use a smaller calibration crop or larger images"
        )
    rng = np.random.default_rng([seed, 0xCA1])
    return [_random_crop(pairs, size, rng)[0][None] for _ in range(count)]
