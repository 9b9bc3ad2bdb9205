"""Dataset folder layouts: detection and loading of aligned noisy/clean pairs (and clean folders).

Every loader returns :class:`GroupedPair` items sorted by name. Image-file pairs are streamed
(:class:`~nnsearch.train.datasets.streaming.StreamedPair`: only their headers are read here);
SIDD ``.mat`` blocks and clean folders are held in memory. The ``group`` keeps
pairs that show the same scene (SIDD blocks of one image, SIDD Medium captures of one
scene) on the same side of the train/validation split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from nnsearch.errors import DataError
from nnsearch.train.datasets.images import centre_crop, check_min_side, list_images, read_image
from nnsearch.train.datasets.streaming import DecodedCache, streamed_pair
from nnsearch.train.datasets.types import ImagePair, Pair

#: Layout names accepted by ``load_data(format=...)``, with what each expects.
LAYOUTS: dict[str, str] = {
    "folder-pairs": "noisy/ + clean/ subfolders with matching file names",
    "mai": "original/ (noisy) + denoised/ (clean) subfolders with matching file names",
    "sidd-mat": "ValidationNoisyBlocksSrgb.mat + ValidationGtBlocksSrgb.mat",
    "sidd-medium": "<scene>/NOISY_SRGB_*.PNG + <scene>/GT_SRGB_*.PNG scene folders",
    "suffix-pairs": "one folder of *_real/*_mean, *_noise/*_gt, *_noisy/*_clean or NOISY_*/GT_* images",
    "clean": "one folder of clean images (synthetic noise is added)",
}

#: (noisy token, clean token, where the token sits in the file stem).
_CONVENTIONS = (
    ("_real", "_mean", "suffix"),
    ("_noise", "_gt", "suffix"),
    ("_noisy", "_clean", "suffix"),
    ("NOISY_", "GT_", "prefix"),
)
_SIDD_MAT = {
    "noisy": ("ValidationNoisyBlocksSrgb.mat", "ValidationNoisyBlocksSrgb"),
    "clean": ("ValidationGtBlocksSrgb.mat", "ValidationGtBlocksSrgb"),
}
_SIDD_NOISY_PREFIX = "noisy_srgb_"


@dataclass(frozen=True)
class GroupedPair:
    """An image pair plus the scene group it belongs to (for leakage-free splitting)."""

    group: str
    pair: Pair


# ---------------------------------------------------------------- file-system helpers


def _child(root: Path, name: str, *, directory: bool) -> Path | None:
    """The entry of ``root`` called ``name`` (case-insensitive), if it exists."""
    for entry in sorted(root.iterdir()):
        if entry.name.lower() == name.lower() and (entry.is_dir() if directory else entry.is_file()):
            return entry
    return None


def _require_child(root: Path, name: str, layout: str, *, directory: bool) -> Path:
    """Like :func:`_child` but raise DataError naming the missing entry."""
    found = _child(root, name, directory=directory)
    if found is None:
        kind = "subfolder" if directory else "file"
        raise DataError(f"{root}: expected {kind} {name!r} for the {layout} layout ({LAYOUTS[layout]})")
    return found


def _by_stem(paths: list[Path]) -> dict[str, Path]:
    """Map file stem -> path; two files with one stem (a.png, a.jpg) are ambiguous."""
    stems: dict[str, Path] = {}
    for path in paths:
        if path.stem in stems:
            raise DataError(f"ambiguous files {stems[path.stem]} and {path}: both have the name {path.stem!r}")
        stems[path.stem] = path
    return stems


def _read_pair(name: str, group: str, noisy_path: Path, clean_path: Path, max_side: int | None) -> GroupedPair:
    """A streamed noisy/clean file pair: headers checked (readable, equal sizes), pixels read when needed."""
    return GroupedPair(group, streamed_pair(name, noisy_path, clean_path, max_side, DecodedCache.default()))


# ---------------------------------------------------------------- folder pairs


def _load_folder_pairs(
    root: Path, noisy_name: str, clean_name: str, layout: str, max_side: int | None
) -> list[GroupedPair]:
    """Pairs from two subfolders whose image files match by stem."""
    noisy_dir = _require_child(root, noisy_name, layout, directory=True)
    clean_dir = _require_child(root, clean_name, layout, directory=True)
    noisy, clean = _by_stem(list_images(noisy_dir)), _by_stem(list_images(clean_dir))
    for stem in sorted(noisy.keys() ^ clean.keys()):
        path, other = (noisy[stem], clean_dir) if stem in noisy else (clean[stem], noisy_dir)
        raise DataError(f"unpaired file {path}: no image named {stem}.* in {other}")
    return [_read_pair(stem, stem, noisy[stem], clean[stem], max_side) for stem in sorted(noisy)]


def load_folder_pairs(root: Path, max_side: int | None) -> list[GroupedPair]:
    """``noisy/`` + ``clean/`` subfolders."""
    return _load_folder_pairs(root, "noisy", "clean", "folder-pairs", max_side)


def load_mai(root: Path, max_side: int | None) -> list[GroupedPair]:
    """MAI / NN Dataset style ``original/`` (noisy) + ``denoised/`` (clean) subfolders."""
    return _load_folder_pairs(root, "original", "denoised", "mai", max_side)


# ---------------------------------------------------------------- suffix / prefix pairs


def _classify(stem: str) -> tuple[int, str, str] | None:
    """(convention index, role, pairing key) of a file stem, or None if it follows no convention."""
    lower = stem.lower()
    for index, (noisy_token, clean_token, where) in enumerate(_CONVENTIONS):
        for role, token in (("noisy", noisy_token), ("clean", clean_token)):
            token = token.lower()
            if where == "suffix" and lower.endswith(token) and len(lower) > len(token):
                return index, role, stem[: -len(token)]
            if where == "prefix" and lower.startswith(token) and len(lower) > len(token):
                return index, role, stem[len(token) :]
    return None


def _partner_name(convention: int, role: str, key: str) -> str:
    """The stem the missing partner of a classified file should have."""
    noisy_token, clean_token, where = _CONVENTIONS[convention]
    token = clean_token if role == "noisy" else noisy_token
    return key + token if where == "suffix" else token + key


def _match_suffix_files(folder: Path) -> dict[tuple[int, str], dict[str, Path]]:
    """Group the folder's images by (convention, key) into {role: path}; reject strays."""
    matched: dict[tuple[int, str], dict[str, Path]] = {}
    conventions = ", ".join(f"*{n}/*{c}" if w == "suffix" else f"{n}*/{c}*" for n, c, w in _CONVENTIONS)
    for path in list_images(folder):
        found = _classify(path.stem)
        if found is None:
            raise DataError(f"unpaired file {path}: its name follows none of the pair conventions {conventions}")
        convention, role, key = found
        slot = matched.setdefault((convention, key), {})
        if role in slot:
            raise DataError(f"ambiguous files {slot[role]} and {path}: both are the {role} image of pair {key!r}")
        slot[role] = path
    return matched


def _load_suffix_folder(
    folder: Path, max_side: int | None, prefix: str = "", group: str | None = None
) -> list[GroupedPair]:
    """Pairs of one folder named by the suffix/prefix conventions."""
    matched = sorted(_match_suffix_files(folder).items(), key=lambda item: item[0][1])
    for (convention, key), slot in matched:
        if len(slot) == 1:
            ((role, path),) = slot.items()
            partner = _partner_name(convention, role, key)
            raise DataError(f"unpaired file {path}: no matching image named {partner}.* in {folder}")
    return [
        _read_pair(prefix + key, group or prefix + key, slot["noisy"], slot["clean"], max_side)
        for (_, key), slot in matched
    ]


def load_suffix_pairs(root: Path, max_side: int | None) -> list[GroupedPair]:
    """One folder of ``*_real``/``*_mean``, ``*_noise``/``*_gt``, ``*_noisy``/``*_clean``, ``NOISY_*``/``GT_*``."""
    return _load_suffix_folder(root, max_side)


def _has_suffix_pairs(root: Path) -> bool:
    return any(_classify(path.stem) is not None for path in list_images(root))


# ---------------------------------------------------------------- SIDD Medium


def _sidd_scenes(root: Path) -> list[Path]:
    """Scene folders of a SIDD Medium tree (``root/<scene>`` or ``root/Data/<scene>``)."""
    data = _child(root, "Data", directory=True)
    for base in (root, data) if data is not None else (root,):
        scenes = [
            d
            for d in sorted(base.iterdir())
            if d.is_dir() and any(p.name.lower().startswith(_SIDD_NOISY_PREFIX) for p in list_images(d))
        ]
        if scenes:
            return scenes
    return []


def load_sidd_medium(root: Path, max_side: int | None) -> list[GroupedPair]:
    """SIDD Medium sRGB: every scene folder holds ``NOISY_SRGB_<n>`` / ``GT_SRGB_<n>`` images."""
    scenes = _sidd_scenes(root)
    if not scenes:
        raise DataError(f"{root}: expected scene folders holding NOISY_SRGB_*.PNG for the sidd-medium layout")
    return [
        item
        for scene in scenes
        for item in _load_suffix_folder(scene, max_side, prefix=f"{scene.name}_", group=scene.name)
    ]


# ---------------------------------------------------------------- SIDD .mat blocks


def _read_mat_blocks(path: Path, key: str) -> np.ndarray:
    """A (images, blocks, H, W, 3) array from a SIDD .mat file, as float32 in [0, 1]."""
    try:
        content = loadmat(path, variable_names=[key])
    except NotImplementedError:
        raise DataError(f"{path} is a MATLAB v7.3 (HDF5) file; re-save it in MATLAB format v7 or earlier") from None
    except Exception as exc:  # scipy raises many types (ValueError, MatReadError, OSError, TypeError)
        raise DataError(f"cannot read {path}: {exc}; expected a MATLAB .mat file") from None
    if key not in content:
        raise DataError(f"{path} holds no variable {key!r}")
    blocks = content[key]
    if blocks.ndim != 5 or blocks.shape[-1] != 3:
        raise DataError(f"{path}: variable {key!r} has shape {blocks.shape}; expected (images, blocks, H, W, 3)")
    if blocks.dtype == np.uint8:
        return blocks.astype(np.float32) / np.float32(255.0)
    if blocks.dtype == np.uint16:
        return blocks.astype(np.float32) / np.float32(65535.0)
    if np.issubdtype(blocks.dtype, np.floating):
        return np.clip(blocks, 0.0, 1.0).astype(np.float32)
    raise DataError(f"{path}: variable {key!r} has dtype {blocks.dtype}; expected uint8, uint16 or float")


def _sidd_mat_file(root: Path, role: str) -> Path:
    return _require_child(root, _SIDD_MAT[role][0], "sidd-mat", directory=False)


def load_sidd_mat(root: Path, max_side: int | None) -> list[GroupedPair]:
    """SIDD validation blocks: every block is a pair; blocks of one image share a group."""
    noisy_path, clean_path = _sidd_mat_file(root, "noisy"), _sidd_mat_file(root, "clean")
    noisy = _read_mat_blocks(noisy_path, _SIDD_MAT["noisy"][1])
    clean = _read_mat_blocks(clean_path, _SIDD_MAT["clean"][1])
    if noisy.shape != clean.shape:
        raise DataError(f"size mismatch: {noisy_path} holds {noisy.shape} but {clean_path} holds {clean.shape}")
    check_min_side(f"blocks of {noisy_path}", *noisy.shape[2:4])
    return [
        GroupedPair(
            f"{i:02d}",
            ImagePair(
                f"{i:02d}_{j:02d}",
                centre_crop(noisy[i, j], max_side),
                centre_crop(clean[i, j], max_side),
            ),
        )
        for i in range(noisy.shape[0])
        for j in range(noisy.shape[1])
    ]


# ---------------------------------------------------------------- clean folders


def load_clean_images(root: Path, max_side: int | None) -> list[tuple[str, np.ndarray]]:
    """(stem, image) for every image file in ``root``, sorted by name."""
    stems = _by_stem(list_images(root))
    return [(stem, centre_crop(read_image(stems[stem]), max_side)) for stem in sorted(stems)]


# ---------------------------------------------------------------- detection


PairLoader = Callable[[Path, int | None], list[GroupedPair]]

#: Real-pair layouts in detection order.
PAIR_LOADERS: dict[str, PairLoader] = {
    "folder-pairs": load_folder_pairs,
    "mai": load_mai,
    "sidd-mat": load_sidd_mat,
    "sidd-medium": load_sidd_medium,
    "suffix-pairs": load_suffix_pairs,
}

_DETECTORS: dict[str, Callable[[Path], bool]] = {
    "folder-pairs": lambda root: bool(_child(root, "noisy", directory=True) and _child(root, "clean", directory=True)),
    "mai": lambda root: bool(_child(root, "original", directory=True) and _child(root, "denoised", directory=True)),
    "sidd-mat": lambda root: _child(root, _SIDD_MAT["noisy"][0], directory=False) is not None,
    "sidd-medium": lambda root: bool(_sidd_scenes(root)),
    "suffix-pairs": _has_suffix_pairs,
}


def detect_layout(root: Path) -> str:
    """Name of the first real-pair layout ``root`` matches; DataError listing all tried otherwise."""
    for layout, matches in _DETECTORS.items():
        if matches(root):
            return layout
    tried = "; ".join(f"{name} ({LAYOUTS[name]})" for name in PAIR_LOADERS)
    raise DataError(
        f"no recognised dataset layout in {root}. Tried: {tried}. "
        f"For a folder of clean images use 'clean:{root}' or format='clean'."
    )
