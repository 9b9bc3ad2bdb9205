"""The built-in default dataset: bundled scikit-image photos + synthetic camera noise."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nnsearch.errors import DataError
from nnsearch.train.datasets import DenoiseData, load_data
from nnsearch.train.datasets.builtin import BUILTIN_FILES, MAX_LONG_SIDE


@pytest.fixture(scope="module")
def builtin() -> DenoiseData:
    return load_data()


def test_builtin_shape_and_split(builtin: DenoiseData) -> None:
    pairs = builtin.train + builtin.val
    assert builtin.name == "builtin" and "seed 0" in builtin.source
    assert len(pairs) == len(BUILTIN_FILES) >= 6
    assert len(builtin.val) == 2 and len(builtin.train) == len(BUILTIN_FILES) - 2
    assert len({pair.name for pair in pairs}) == len(pairs)
    for pair in pairs:
        assert pair.noisy.dtype == pair.clean.dtype == np.float32
        assert pair.noisy.shape == pair.clean.shape and pair.noisy.shape[2] == 3
        assert max(pair.noisy.shape[:2]) <= MAX_LONG_SIDE
        assert pair.noisy.min() >= 0.0 and pair.noisy.max() <= 1.0


def test_builtin_noise_is_present_and_plausible(builtin: DenoiseData) -> None:
    for pair in builtin.train + builtin.val:
        mse = float(np.mean((pair.noisy - pair.clean) ** 2))
        assert 15.0 < 10 * np.log10(1 / mse) < 50.0


def test_builtin_is_reproducible_and_seeded(builtin: DenoiseData) -> None:
    assert load_data("builtin").fingerprint == builtin.fingerprint
    small = load_data(max_side=48)
    assert all(max(pair.clean.shape[:2]) <= 48 for pair in small.train + small.val)
    assert load_data(max_side=48).fingerprint == small.fingerprint
    assert load_data(max_side=48, seed=1).fingerprint != small.fingerprint


def test_builtin_rejects_format() -> None:
    with pytest.raises(DataError):
        load_data("builtin", format="mai")


def test_builtin_never_imports_pooch_or_shared_data() -> None:
    code = (
        "import sys; from nnsearch.train.datasets import load_data; d = load_data(max_side=32); "
        "assert 'pooch' not in sys.modules, 'pooch imported'; "
        "assert '/work/shared' not in d.source; print(len(d.train) + len(d.val))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) == len(BUILTIN_FILES)
