"""Reading image files into float32 HxWx3 arrays in [0, 1], plus small geometry helpers."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from nnsearch.errors import DataError

#: File extensions (lower case) treated as images; matching is case-insensitive.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


#: Shortest image side nnsearch can score: SSIM compares 11x11 windows (`nnsearch.train.metrics`).
MIN_SIDE = 11


def check_min_side(what: object, height: int, width: int) -> None:
    """DataError naming `what` (an image file) when it is smaller than `MIN_SIDE` on a side."""
    if min(height, width) < MIN_SIDE:
        raise DataError(
            f"image {what} is {width}x{height} px; nnsearch needs images of at least {MIN_SIDE} px on "
            f"each side (SSIM compares {MIN_SIDE}x{MIN_SIDE} windows): remove it or use a larger image"
        )


def is_image_file(path: Path) -> bool:
    """True for a regular file with an image extension (any case)."""
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (not recursive)."""
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def _to_raw(image: Image.Image) -> np.ndarray:
    """A decoded PIL image as HxWx3 in its stored precision: uint8, uint16 (16-bit grey) or float32 ("F")."""
    if image.mode in _SIXTEEN_BIT_MODES:
        grey = np.clip(np.asarray(image, dtype=np.int64 if image.mode == "I" else np.uint16), 0, 65535)
        return np.repeat(grey.astype(np.uint16)[:, :, None], 3, axis=2)
    if image.mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def raw_to_float(raw: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] from a raw HxWx3 array of :func:`read_raw` (or any slice of one)."""
    if raw.dtype == np.uint8:
        return raw.astype(np.float32) / np.float32(255.0)
    if raw.dtype == np.uint16:
        return raw.astype(np.float32) / np.float32(65535.0)
    return np.clip(raw, 0.0, 1.0).astype(np.float32)


def _decode(path: Path, decode: Callable[[Image.Image], object]):
    """Open ``path`` with PIL and apply ``decode``; DataError naming the file when it is not a readable image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                return decode(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}; expected a valid PNG/JPEG/BMP/TIFF file") from None


def read_raw(path: Path) -> np.ndarray:
    """Decode an image file as HxWx3 uint8/uint16/float32 without scaling (4x smaller than float32 for 8-bit)."""
    return np.ascontiguousarray(_decode(path, lambda image: (image.load(), _to_raw(image))[1]))


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels; DataError if it is not an image."""
    width, height = _decode(path, lambda image: image.size)
    return height, width


def read_image(path: Path) -> np.ndarray:
    """Read an image file as float32 HxWx3 in [0, 1]; raise DataError if it cannot be decoded or is too small."""
    image = np.ascontiguousarray(raw_to_float(read_raw(path)))
    check_min_side(path, *image.shape[:2])
    return image


def centre_offset(height: int, width: int, max_side: int | None) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the centre crop :func:`centre_crop` cuts from a height x width image."""
    if max_side is None or max(height, width) <= max_side:
        return 0, 0, height, width
    top, left = max(0, (height - max_side) // 2), max(0, (width - max_side) // 2)
    return top, left, min(height, max_side), min(width, max_side)


def centre_crop(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Centre-crop so that neither side exceeds ``max_side`` (a contiguous copy, so the full image can be freed)."""
    top, left, height, width = centre_offset(image.shape[0], image.shape[1], max_side)
    if (height, width) == image.shape[:2]:
        return image
    return np.ascontiguousarray(image[top : top + height, left : left + width])


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
