"""Reading image files into float32 HxWx3 arrays in [0, 1], plus small geometry helpers."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from nnsearch.errors import DataError

#: File extensions (lower case) treated as images; matching is case-insensitive.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def is_image_file(path: Path) -> bool:
    """True for a regular file with an image extension (any case)."""
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (not recursive)."""
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def _to_float(image: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image to float32 HxWx3 in [0, 1] (grey is replicated, alpha dropped)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        grey = np.asarray(image, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(grey, 0.0, 1.0)[:, :, None], 3, axis=2)
    if image.mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        return np.repeat(grey[:, :, None], 3, axis=2)
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    return rgb / np.float32(255.0)


def read_image(path: Path) -> np.ndarray:
    """Read an image file as float32 HxWx3 in [0, 1]; raise DataError if it cannot be decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                image.load()
                return np.ascontiguousarray(_to_float(image))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}; expected a valid PNG/JPEG/BMP/TIFF file") from None


def centre_crop(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Centre-crop so that neither side exceeds ``max_side`` (a contiguous copy, so the full image can be freed)."""
    height, width = image.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return image
    top, left = max(0, (height - max_side) // 2), max(0, (width - max_side) // 2)
    return np.ascontiguousarray(image[top : top + max_side, left : left + max_side])


def fit_within(image: np.ndarray, max_long_side: int) -> np.ndarray:
    """Downscale (Lanczos, aspect kept) so the longer side is at most ``max_long_side``."""
    height, width = image.shape[:2]
    scale = max_long_side / max(height, width)
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, c])).resize(size, Image.Resampling.LANCZOS))
        for c in range(image.shape[2])
    ]
    return np.clip(np.stack(channels, axis=2), 0.0, 1.0).astype(np.float32)
