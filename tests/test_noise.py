"""Synthetic camera noise: reproducibility, shape/range, noise level, parameter ranges."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnsearch.train.datasets import NoiseParams, add_camera_noise, sample_noise_params


def _image(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    base = np.stack([x / max(width, 1), y / max(height, 1), 0.5 + 0 * x], axis=2)
    return np.clip(0.8 * base + 0.1 + 0.05 * rng.random(base.shape), 0, 1).astype(np.float32)


def _params(shot: float) -> NoiseParams:
    return NoiseParams(shot=shot, read=shot**2.18 * np.exp(1.2), red_gain=2.1, blue_gain=1.7, rgb_gain=1.25)


def test_same_seed_gives_identical_output() -> None:
    clean = _image()
    first, params_a = add_camera_noise(clean, np.random.default_rng(7))
    second, params_b = add_camera_noise(clean, np.random.default_rng(7))
    np.testing.assert_array_equal(first, second)
    assert params_a == params_b


def test_different_seed_gives_different_output() -> None:
    clean = _image()
    first, params_a = add_camera_noise(clean, np.random.default_rng(1))
    second, params_b = add_camera_noise(clean, np.random.default_rng(2))
    assert not np.array_equal(first, second)
    assert params_a != params_b


def test_given_params_are_used_and_returned() -> None:
    params = _params(0.004)
    _, used = add_camera_noise(_image(), np.random.default_rng(0), params)
    assert used is params


@settings(max_examples=20, deadline=None)
@given(height=st.integers(1, 40), width=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_output_is_float32_in_unit_range_for_any_size(height: int, width: int, seed: int) -> None:
    clean = _image(height, width, seed=seed % 1000)
    noisy, _ = add_camera_noise(clean, np.random.default_rng(seed))
    assert noisy.shape == (height, width, 3)
    assert noisy.dtype == np.float32
    assert np.isfinite(noisy).all() and noisy.min() >= 0.0 and noisy.max() <= 1.0


def test_noise_std_grows_with_shot_level() -> None:
    clean = np.full((64, 64, 3), 0.5, np.float32)
    stds = [
        float(np.std(add_camera_noise(clean, np.random.default_rng(0), _params(shot))[0] - clean))
        for shot in (1e-4, 1e-3, 1e-2)
    ]
    assert stds[0] < stds[1] < stds[2]
    assert stds[0] > 0.0


def test_noise_is_roughly_zero_mean_on_mid_grey() -> None:
    clean = np.full((128, 128, 3), 0.5, np.float32)
    noisy, _ = add_camera_noise(clean, np.random.default_rng(0), _params(1e-3))
    assert abs(float(np.mean(noisy - clean))) < 0.01


def test_zero_noise_leaves_the_image_unchanged() -> None:
    clean = _image()
    params = dataclasses.replace(_params(1e-3), shot=0.0, read=0.0)
    noisy, _ = add_camera_noise(clean, np.random.default_rng(0), params)
    np.testing.assert_allclose(noisy, np.round(clean * 255) / 255, atol=1e-5)  # 8-bit, like real inputs


def test_noise_is_zero_mean_per_channel_across_tones() -> None:
    """Real clean references are means of noisy shots, so synthetic noise must not shift colours either."""
    ramp = np.linspace(0.2, 0.8, 256, dtype=np.float32)
    clean = np.stack([np.tile(ramp, (256, 1)), np.tile(ramp[::-1], (256, 1)), np.full((256, 256), 0.6)], axis=2)
    for shot in (1e-3, 1e-2):
        noisy, _ = add_camera_noise(clean.astype(np.float32), np.random.default_rng(3), _params(shot))
        assert np.std(noisy - clean) > 2 / 255
        channel_bias = np.abs((noisy - clean).mean(axis=(0, 1)))
        assert channel_bias.max() < 0.5 / 255, (shot, channel_bias * 255)  # the old plain residual: 0.7 at 1e-3


def test_sampled_params_follow_brooks_ranges() -> None:
    rng = np.random.default_rng(0)
    samples = [sample_noise_params(rng) for _ in range(300)]
    assert all(1e-4 <= p.shot <= 0.012 for p in samples)
    assert all(1.9 <= p.red_gain <= 2.4 and 1.5 <= p.blue_gain <= 1.9 for p in samples)
    assert all(p.read > 0 and p.rgb_gain > 0 for p in samples)
    assert all(sum(p.ccm_weights) == pytest.approx(1.0) for p in samples)
    residual = [np.log(p.read) - 2.18 * np.log(p.shot) - 1.20 for p in samples]
    assert abs(np.mean(residual)) < 0.05 and 0.2 < np.std(residual) < 0.32


def test_rejects_non_rgb_input() -> None:
    with pytest.raises(ValueError):
        add_camera_noise(np.zeros((8, 8), np.float32), np.random.default_rng(0))
