"""Pairs whose noise is synthesised: a fixed realisation for validation, fresh noise for every training crop.

A clean-image dataset (the built-in photos, ``clean:DIR``) has only a handful of images.
Training on one fixed noise realisation per image lets a network memorise that
realisation and the images' colours: students trained that way shifted the colour
balance of real photos by several levels of 255. :class:`SyntheticPair` therefore keeps a
fixed noisy image (validation and evaluation stay deterministic) but cuts every
training crop with new noise (a new camera, new per-block levels) and a random
permutation of the colour channels, drawn from the batch plan's seeded stream, so
batches stay reproducible and the teacher's outputs for them can still be cached.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from nnsearch.train.datasets.formats import GroupedPair
from nnsearch.train.datasets.noise import add_varied_camera_noise
from nnsearch.train.datasets.types import ImagePair

#: Bumped whenever what :meth:`SyntheticPair.fresh_crop` produces changes (it enters dataset fingerprints).
SYNTHESIS_VERSION = 2


@dataclass(frozen=True)
class SyntheticPair(ImagePair):
    """An :class:`ImagePair` whose noise is synthetic and can be drawn anew for any crop."""

    def fresh_crop(self, y: int, x: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(noisy, clean) ``size`` px crop at (y, x): channels permuted at random, then new camera noise."""
        clean = self.clean[y : y + size, x : x + size][:, :, rng.permutation(3)]
        noisy, _ = add_varied_camera_noise(clean, rng)
        return noisy, np.ascontiguousarray(clean)


def with_synthetic_noise(images: list[tuple[str, np.ndarray]], seed: int) -> list[GroupedPair]:
    """Pair every clean image with synthetic camera noise (a level per block) seeded by (seed, image name)."""
    pairs = []
    for name, clean in images:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        noisy, _ = add_varied_camera_noise(clean, rng)
        pairs.append(GroupedPair(name, SyntheticPair(name, noisy, clean)))
    return pairs
