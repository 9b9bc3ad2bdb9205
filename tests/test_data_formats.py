"""Dataset layouts, the train/validation split, fingerprints and DataError messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from nnsearch.errors import DataError
from nnsearch.train.datasets import DenoiseData, load_data

SHARED = Path("/work/shared/data")


def _pixels(seed: int, height: int = 12, width: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _write(path: Path, seed: int = 0, height: int = 12, width: int = 16) -> np.ndarray:
    """Write a tiny RGB image (format from the extension) and return its pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = _pixels(seed, height, width)
    Image.fromarray(pixels).save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else None)
    return pixels


def _write_pairs(root: Path, noisy: str, clean: str, stems: list[str]) -> None:
    """Write noisy/clean files named by the ``{}`` templates ``noisy``/``clean``."""
    for index, stem in enumerate(stems):
        _write(root / noisy.format(stem), seed=2 * index)
        _write(root / clean.format(stem), seed=2 * index + 1)


def _all_pairs(data: DenoiseData) -> dict:
    return {pair.name: pair for pair in data.train + data.val}


# ---------------------------------------------------------------- layouts


@pytest.mark.parametrize(("noisy", "clean"), [("noisy/{}.png", "clean/{}.png"), ("original/{}.png", "denoised/{}.png")])
def test_folder_layouts_load_pixels_exactly(tmp_path: Path, noisy: str, clean: str) -> None:
    _write_pairs(tmp_path, noisy, clean, ["a", "b", "c"])
    data = load_data(str(tmp_path))
    pairs = _all_pairs(data)
    assert data.name == tmp_path.name and sorted(pairs) == ["a", "b", "c"]
    np.testing.assert_allclose(pairs["b"].noisy, _pixels(2) / 255.0, atol=1e-6)
    np.testing.assert_allclose(pairs["b"].clean, _pixels(3) / 255.0, atol=1e-6)
    assert pairs["a"].noisy.dtype == np.float32 and pairs["a"].noisy.shape == (12, 16, 3)
    assert "layout" in data.source


def test_folder_pairs_match_stems_across_extensions_and_case(tmp_path: Path) -> None:
    _write(tmp_path / "noisy" / "x.PNG")
    _write(tmp_path / "clean" / "x.bmp")
    _write(tmp_path / "noisy" / "y.png")
    _write(tmp_path / "clean" / "y.TIF")
    assert sorted(_all_pairs(load_data(str(tmp_path), format="folder-pairs"))) == ["x", "y"]


@pytest.mark.parametrize(
    ("noisy", "clean"),
    [("{}_real.JPG", "{}_mean.JPG"), ("{}_noise.png", "{}_gt.png"), ("NOISY_{}.png", "GT_{}.png")],
)
def test_suffix_pairs(tmp_path: Path, noisy: str, clean: str) -> None:
    _write_pairs(tmp_path, noisy, clean, ["cam_1", "cam_2", "cam_3"])
    (tmp_path / "README.txt").write_text("not an image")
    data = load_data(str(tmp_path))
    assert sorted(_all_pairs(data)) == ["cam_1", "cam_2", "cam_3"]
    assert "suffix-pairs" in data.source


def test_sidd_medium_keeps_scenes_on_one_side(tmp_path: Path) -> None:
    for scene in ("0001_S6", "0002_GP", "0003_IP", "0004_N6"):
        _write_pairs(tmp_path / scene, "NOISY_SRGB_{}.PNG", "GT_SRGB_{}.PNG", ["010", "011"])
    data = load_data(str(tmp_path), val_fraction=0.5)
    scenes = [{pair.name.rsplit("_SRGB", 1)[0] for pair in split} for split in (data.train, data.val)]
    assert len(data.train) == len(data.val) == 4
    assert not scenes[0] & scenes[1]
    assert "0001_S6_SRGB_010" in _all_pairs(data)


def _write_sidd_mat(root: Path, noisy: np.ndarray, clean: np.ndarray) -> None:
    savemat(root / "ValidationNoisyBlocksSrgb.mat", {"ValidationNoisyBlocksSrgb": noisy})
    savemat(root / "ValidationGtBlocksSrgb.mat", {"ValidationGtBlocksSrgb": clean})


def test_sidd_mat_blocks(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    _write_sidd_mat(tmp_path, noisy, rng.integers(0, 256, noisy.shape, dtype=np.uint8))
    data = load_data(str(tmp_path))
    pairs = _all_pairs(data)
    assert len(pairs) == 6 and len(data.val) == 3  # blocks of one image stay together
    assert len({pair.name[:2] for pair in data.val}) == 1
    np.testing.assert_allclose(pairs["01_02"].noisy, noisy[1, 2] / 255.0, atol=1e-6)
    by_file = load_data(str(tmp_path / "ValidationNoisyBlocksSrgb.mat"), max_side=8)
    assert by_file.train[0].noisy.shape == (8, 8, 3)


def test_format_override_beats_detection(tmp_path: Path) -> None:
    _write_pairs(tmp_path, "noisy/{}.png", "clean/{}.png", ["a", "b"])
    _write_pairs(tmp_path, "{}_noise.png", "{}_gt.png", ["p", "q", "r"])
    assert sorted(_all_pairs(load_data(str(tmp_path)))) == ["a", "b"]
    assert sorted(_all_pairs(load_data(str(tmp_path), format="suffix-pairs"))) == ["p", "q", "r"]


@pytest.mark.parametrize("how", ["prefix", "format"])
def test_clean_folder_gets_seeded_synthetic_noise(tmp_path: Path, how: str) -> None:
    for index in range(3):
        _write(tmp_path / f"img{index}.png", seed=index, height=20, width=24)
    spec, fmt = (f"clean:{tmp_path}", None) if how == "prefix" else (str(tmp_path), "clean")
    data = load_data(spec, format=fmt)
    pairs = _all_pairs(data)
    assert data.name == f"clean-{tmp_path.name}" and "seed 0" in data.source
    np.testing.assert_allclose(pairs["img1"].clean, _pixels(1, 20, 24) / 255.0, atol=1e-6)
    assert not np.array_equal(pairs["img1"].noisy, pairs["img1"].clean)
    assert load_data(spec, format=fmt).fingerprint == data.fingerprint
    assert load_data(spec, format=fmt, seed=1).fingerprint != data.fingerprint


def test_max_side_centre_crops_pairs(tmp_path: Path) -> None:
    _write_pairs(tmp_path, "noisy/{}.png", "clean/{}.png", ["a", "b"])
    data = load_data(str(tmp_path), max_side=8)
    pair = _all_pairs(data)["a"]
    assert pair.noisy.shape == pair.clean.shape == (8, 8, 3)
    np.testing.assert_allclose(pair.noisy, _pixels(0)[2:10, 4:12] / 255.0, atol=1e-6)


# ---------------------------------------------------------------- split and fingerprint


@pytest.fixture
def ten_pairs(tmp_path: Path) -> Path:
    _write_pairs(tmp_path, "{}_noise.png", "{}_gt.png", [f"{i:02d}" for i in range(10)])
    return tmp_path


def _val_names(root: Path, **options) -> list[str]:
    return [pair.name for pair in load_data(str(root), **options).val]


def test_split_is_deterministic_complete_and_disjoint(ten_pairs: Path) -> None:
    data = load_data(str(ten_pairs), val_fraction=0.3, seed=5)
    train, val = {p.name for p in data.train}, {p.name for p in data.val}
    assert len(val) == 3 and not train & val and len(train | val) == 10
    assert _val_names(ten_pairs, val_fraction=0.3, seed=5) == sorted(val)


def test_split_depends_on_seed_and_keeps_both_sides(ten_pairs: Path) -> None:
    assert len({tuple(_val_names(ten_pairs, seed=seed)) for seed in range(6)}) > 1
    assert len(_val_names(ten_pairs, val_fraction=0.01)) == 1
    assert len(_val_names(ten_pairs, val_fraction=0.99)) == 9


def test_fingerprint_tracks_pixels_and_split(ten_pairs: Path) -> None:
    base = load_data(str(ten_pairs)).fingerprint
    assert load_data(str(ten_pairs)).fingerprint == base
    assert load_data(str(ten_pairs), val_fraction=0.5).fingerprint != base
    _write(ten_pairs / "03_gt.png", seed=99)
    assert load_data(str(ten_pairs)).fingerprint != base


# ---------------------------------------------------------------- errors


def _error(spec: str, **options) -> str:
    with pytest.raises(DataError) as caught:
        load_data(spec, **options)
    return str(caught.value)


def test_missing_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert str(missing) in _error(str(missing))
    assert str(missing) in _error(f"clean:{missing}")


def test_unrecognised_layout_lists_what_was_tried(tmp_path: Path) -> None:
    _write(tmp_path / "holiday.png")
    message = _error(str(tmp_path))
    assert str(tmp_path) in message
    for layout in ("folder-pairs", "mai", "sidd-mat", "sidd-medium", "suffix-pairs", "clean:"):
        assert layout in message


def test_file_instead_of_folder(tmp_path: Path) -> None:
    _write(tmp_path / "one.png")
    assert "one.png" in _error(str(tmp_path / "one.png"))


def test_unpaired_files_are_named(tmp_path: Path) -> None:
    _write_pairs(tmp_path / "folders", "noisy/{}.png", "clean/{}.png", ["a", "b"])
    _write(tmp_path / "folders" / "noisy" / "orphan.png")
    assert "orphan.png" in _error(str(tmp_path / "folders"))

    _write_pairs(tmp_path / "suffix", "{}_noise.png", "{}_gt.png", ["a", "b"])
    _write(tmp_path / "suffix" / "lonely_noise.png")
    message = _error(str(tmp_path / "suffix"))
    assert "lonely_noise.png" in message and "lonely_gt" in message

    _write_pairs(tmp_path / "stray", "{}_real.png", "{}_mean.png", ["a", "b"])
    _write(tmp_path / "stray" / "holiday.png")
    assert "holiday.png" in _error(str(tmp_path / "stray"))


def test_size_mismatch_names_both_files(tmp_path: Path) -> None:
    _write_pairs(tmp_path, "noisy/{}.png", "clean/{}.png", ["a"])
    _write(tmp_path / "noisy" / "b.png", height=12)
    _write(tmp_path / "clean" / "b.png", height=10)
    message = _error(str(tmp_path))
    assert str(tmp_path / "noisy" / "b.png") in message and str(tmp_path / "clean" / "b.png") in message


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    _write_pairs(tmp_path, "{}_noise.png", "{}_gt.png", ["a", "b"])
    (tmp_path / "b_gt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    assert "b_gt.png" in _error(str(tmp_path))


def test_too_few_pairs(tmp_path: Path) -> None:
    _write_pairs(tmp_path / "one", "{}_noise.png", "{}_gt.png", ["a"])
    assert str(tmp_path / "one") in _error(str(tmp_path / "one"))
    _write(tmp_path / "clean1" / "only.png")
    assert "clean1" in _error(f"clean:{tmp_path / 'clean1'}")


def test_ambiguous_stems_are_named(tmp_path: Path) -> None:
    _write_pairs(tmp_path, "noisy/{}.png", "clean/{}.png", ["a", "b"])
    _write(tmp_path / "noisy" / "a.jpg")
    assert "a.jpg" in _error(str(tmp_path))


def test_forced_layout_names_missing_entry(tmp_path: Path) -> None:
    _write_pairs(tmp_path, "{}_noise.png", "{}_gt.png", ["a", "b"])
    assert "original" in _error(str(tmp_path), format="mai")
    assert "ValidationNoisyBlocksSrgb.mat" in _error(str(tmp_path), format="sidd-mat")


def test_bad_sidd_mat_contents_are_named(tmp_path: Path) -> None:
    _write_sidd_mat(tmp_path, np.zeros((2, 16, 16, 3), np.uint8), np.zeros((2, 16, 16, 3), np.uint8))
    assert "ValidationNoisyBlocksSrgb.mat" in _error(str(tmp_path))
    savemat(tmp_path / "ValidationGtBlocksSrgb.mat", {"wrong_key": np.zeros(3)})
    (tmp_path / "ValidationNoisyBlocksSrgb.mat").write_bytes(b"garbage")
    assert "ValidationNoisyBlocksSrgb.mat" in _error(str(tmp_path))


def test_bad_options(tmp_path: Path) -> None:
    assert "format" in _error(str(tmp_path), format="zip")
    assert "val_fraction" in _error(str(tmp_path), val_fraction=1.0)
    assert "max_side" in _error(str(tmp_path), max_side=0)
    assert "seed" in _error(str(tmp_path), seed=-1)


# ---------------------------------------------------------------- real data (optional)


@pytest.mark.skipif(not SHARED.is_dir(), reason="/work/shared/data is not available")
@pytest.mark.parametrize(("folder", "count"), [("nam", 25), ("polyu", 50)])
def test_shared_real_pairs_load(folder: str, count: int) -> None:
    data = load_data(str(SHARED / "real" / folder), max_side=128)
    assert data.name == folder and len(data.train) + len(data.val) == count
    assert "suffix-pairs" in data.source
    psnrs = [10 * np.log10(1 / np.mean((p.noisy - p.clean) ** 2)) for p in data.val]
    assert 28 < np.mean(psnrs) < 45
