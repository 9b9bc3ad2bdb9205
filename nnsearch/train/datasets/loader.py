"""``load_data``: resolve a dataset spec, load pairs, split them and fingerprint the result."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from nnsearch.errors import DataError
from nnsearch.train.datasets.builtin import builtin_description, builtin_images
from nnsearch.train.datasets.formats import (
    LAYOUTS,
    PAIR_LOADERS,
    GroupedPair,
    detect_layout,
    load_clean_images,
)
from nnsearch.train.datasets.streaming import StreamedPair
from nnsearch.train.datasets.synthetic import SYNTHESIS_VERSION, SyntheticPair, with_synthetic_noise
from nnsearch.train.datasets.types import DenoiseData, Pair

BUILTIN = "builtin"
CLEAN_PREFIX = "clean:"


def _check_options(format: str | None, val_fraction: float, seed: int, max_side: int | None) -> None:
    """Reject option values a user could get wrong, naming the option."""
    if format is not None and format not in LAYOUTS:
        raise DataError(f"unknown dataset format {format!r}; expected one of {', '.join(LAYOUTS)}")
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    if max_side is not None and (not isinstance(max_side, (int, np.integer)) or max_side < 1):
        raise DataError(f"max_side must be a positive integer, got {max_side!r}")


def split_pairs(
    items: list[GroupedPair], val_fraction: float, seed: int, where: str
) -> tuple[tuple[Pair, ...], tuple[Pair, ...]]:
    """Deterministic train/validation split by scene group (by pair when there is one group).

    Groups are ordered by a SHA-256 of ``seed:group`` (stable across numpy versions);
    the first ``round(n * val_fraction)`` (clamped to 1..n-1) go to validation.
    """
    if len(items) < 2:
        raise DataError(f"{where} holds {len(items)} image pair(s); need at least 2 (one to train, one to validate)")
    names = [item.pair.name for item in items]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(f"{where} holds several pairs named {', '.join(duplicates)}; pair names must be unique")
    key = (lambda item: item.group) if len({item.group for item in items}) >= 2 else (lambda item: item.pair.name)
    groups = sorted({key(item) for item in items})
    n_val = min(max(round(len(groups) * val_fraction), 1), len(groups) - 1)
    ranked = sorted(groups, key=lambda group: hashlib.sha256(f"{seed}:{group}".encode()).hexdigest())
    val_groups = set(ranked[:n_val])
    train = tuple(item.pair for item in items if key(item) not in val_groups)
    val = tuple(item.pair for item in items if key(item) in val_groups)
    return train, val


def fingerprint(train: tuple[Pair, ...], val: tuple[Pair, ...]) -> str:
    """SHA-256 over split membership, names and shapes, plus file digests (streamed pairs) or pixels (in memory)."""
    return _digest_pairs(hashlib.sha256(), train, val, pixels=True)


def recipe_fingerprint(data: DenoiseData) -> str:
    """SHA-256 over how `data` was made (its source, split, names and shapes; file digests of
    streamed pairs), not over synthesised pixels, which differ by float rounding between CPUs and
    library builds. Matches a shipped teacher to the built-in data (`nnsearch.train.teacher`)."""
    digest = hashlib.sha256(f"{data.name}\0{data.source}\0".encode())
    return _digest_pairs(digest, data.train, data.val, pixels=False)


def _digest_pairs(digest: hashlib._Hash, train: tuple[Pair, ...], val: tuple[Pair, ...], *, pixels: bool) -> str:
    for label, pairs in (("train", train), ("val", val)):
        for pair in pairs:
            if isinstance(pair, StreamedPair):
                digest.update(f"{label}\0file\0{pair.identity()}\0".encode())
                continue
            if isinstance(pair, SyntheticPair):
                digest.update(f"synthetic v{SYNTHESIS_VERSION}\0".encode())
            digest.update(f"{label}\0{pair.name}\0{pair.noisy.shape}\0".encode())
            if pixels:
                digest.update(np.ascontiguousarray(pair.noisy).data)
                digest.update(np.ascontiguousarray(pair.clean).data)
    return digest.hexdigest()


def _resolve(spec: str | os.PathLike[str] | None, format: str | None) -> tuple[str, Path | None]:
    """(layout, path) for a spec; layout is "builtin", "clean" or a real-pair layout name."""
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if spec is None or spec == BUILTIN:
        if format is not None:
            raise DataError(f"format={format!r} applies to a dataset path, not to the built-in dataset")
        return BUILTIN, None
    if spec.startswith(CLEAN_PREFIX):
        if format not in (None, "clean"):
            raise DataError(f"{spec!r} is a clean-image folder but format={format!r} was given")
        spec, format = spec[len(CLEAN_PREFIX) :], "clean"
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"dataset path {path} does not exist")
    if path.is_file() and path.suffix.lower() == ".mat" and format in (None, "sidd-mat"):
        return "sidd-mat", path.parent
    if not path.is_dir():
        raise DataError(f"dataset path {path} is not a folder; expected a folder holding a dataset layout")
    return format or detect_layout(path), path


def _load_items(layout: str, path: Path | None, seed: int, max_side: int | None) -> tuple[str, str, list[GroupedPair]]:
    """(dataset name, source description, pairs) for a resolved spec."""
    noise = f"synthetic camera noise (seed {seed})"
    if path is None:
        return BUILTIN, f"{builtin_description()} + {noise}", with_synthetic_noise(builtin_images(max_side), seed)
    folder = path.resolve().name
    if layout == "clean":
        source = f"clean images in {path} + {noise}"
        return f"clean-{folder}", source, with_synthetic_noise(load_clean_images(path, max_side), seed)
    source = f"real noisy/clean pairs in {path} ({layout} layout)"
    return folder, source, PAIR_LOADERS[layout](path, max_side)


def load_data(
    spec: str | os.PathLike[str] | None = None,
    *,
    format: str | None = None,
    val_fraction: float = 0.25,
    seed: int = 0,
    max_side: int | None = None,
) -> DenoiseData:
    """Load a denoising dataset and split it into training and validation pairs.

    ``spec``: None or "builtin" (bundled photos + synthetic noise), "clean:PATH" (a folder of
    clean images + synthetic noise) or a dataset folder whose layout is detected (or forced
    with ``format``, one of :data:`nnsearch.train.datasets.formats.LAYOUTS`). ``seed`` drives the
    synthetic noise and the split; ``max_side`` centre-crops every image to at most that
    many pixels per side. Pairs of image files are streamed: only their headers are read here
    (an unreadable file or a pair of two sizes fails now, naming the file) and their pixels
    when a batch or an evaluation needs them (see :mod:`nnsearch.train.datasets.streaming`).
    Every user-caused problem raises :class:`DataError`.
    """
    _check_options(format, val_fraction, seed, max_side)
    layout, path = _resolve(spec, format)
    try:
        name, source, items = _load_items(layout, path, int(seed), max_side)
    except OSError as exc:
        raise DataError(f"cannot read {exc.filename or path}: {exc.strerror or exc}") from None
    train, val = split_pairs(items, val_fraction, int(seed), str(path or BUILTIN))
    return DenoiseData(name=name, train=train, val=val, fingerprint=fingerprint(train, val), source=source)
