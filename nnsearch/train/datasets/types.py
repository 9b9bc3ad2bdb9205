"""Plain data objects passed between the data loaders and the rest of nnsearch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


def _check_image(label: str, image: np.ndarray) -> None:
    """Raise ValueError unless ``image`` is a float32 HxWx3 array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.float32:
        raise ValueError(f"{label} must be a float32 numpy array, got {getattr(image, 'dtype', type(image))}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{label} must have shape HxWx3, got {image.shape}")


@dataclass(frozen=True)
class ImagePair:
    """One aligned noisy/clean image pair: float32 HxWx3 arrays in [0, 1]."""

    name: str
    noisy: np.ndarray
    clean: np.ndarray

    def __post_init__(self) -> None:
        _check_image(f"ImagePair {self.name!r} noisy", self.noisy)
        _check_image(f"ImagePair {self.name!r} clean", self.clean)
        if self.noisy.shape != self.clean.shape:
            raise ValueError(
                f"ImagePair {self.name!r}: noisy {self.noisy.shape} and clean {self.clean.shape} differ in size"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.clean.shape

    def crop(self, y: int, x: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(noisy, clean) float32 size x size crops at (y, x) (copies)."""
        return (
            np.ascontiguousarray(self.noisy[y : y + size, x : x + size]),
            np.ascontiguousarray(self.clean[y : y + size, x : x + size]),
        )


class Pair(Protocol):
    """What training and evaluation need of a pair: ``ImagePair`` (in memory) or ``StreamedPair`` (on disk)."""

    @property
    def name(self) -> str: ...

    @property
    def shape(self) -> tuple[int, int, int]: ...

    @property
    def noisy(self) -> np.ndarray: ...

    @property
    def clean(self) -> np.ndarray: ...

    def crop(self, y: int, x: int, size: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class DenoiseData:
    """A dataset split into training and validation pairs.

    ``fingerprint`` is a hex digest of the names, split and contents (file digests of pairs read
    from disk, pixels of pairs held in memory); it changes whenever any of them (or the noise
    seed) changes, so it can key caches.
    """

    name: str
    train: tuple[Pair, ...]
    val: tuple[Pair, ...]
    fingerprint: str
    source: str
