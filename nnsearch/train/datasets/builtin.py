"""The built-in default dataset: photos bundled inside the scikit-image wheel.

Only files shipped in ``skimage/data/`` are read, straight from disk: scikit-image's
download helpers (pooch) are never touched. Each photo is downscaled (Lanczos, aspect
kept) so its longer side is at most :data:`MAX_LONG_SIDE` pixels, which keeps CPU
training and full-image validation fast; ``max_side`` then centre-crops further.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from nnsearch.errors import DataError
from nnsearch.train.datasets.images import centre_crop, fit_within, read_image

#: RGB photos bundled with scikit-image (no download needed); motorcycle_right is left
#: out because it is the stereo twin of motorcycle_left and would leak across the split.
BUILTIN_FILES = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "ihc.png",
    "hubble_deep_field.jpg",
)
MAX_LONG_SIDE = 384


def _skimage_data_dir() -> Path:
    """The ``data`` folder of the installed scikit-image package (without importing it)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise DataError("the built-in dataset needs scikit-image installed (its bundled photos are the images)")
    return Path(spec.origin).parent / "data"


def builtin_images(max_side: int | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, clean float32 HxWx3) for every built-in photo, downscaled and optionally cropped."""
    folder = _skimage_data_dir()
    images = []
    for filename in BUILTIN_FILES:
        path = folder / filename
        if not path.is_file():
            raise DataError(f"built-in image {path} is missing from the scikit-image installation")
        images.append((path.stem, centre_crop(fit_within(read_image(path), MAX_LONG_SIDE), max_side)))
    return images


def builtin_description() -> str:
    """Human-readable list of the built-in photos and their preprocessing."""
    names = ", ".join(Path(f).stem for f in BUILTIN_FILES)
    return f"scikit-image bundled photos ({names}) downscaled to <= {MAX_LONG_SIDE} px"
