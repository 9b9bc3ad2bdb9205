"""PSNR/SSIM against scikit-image, and tiled full-resolution inference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from nnsearch.train.datasets import ImagePair
from nnsearch.train.metrics import denoise_image, mean_quality, psnr, ssim


def _images(seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A smooth-ish target and a noisy prediction of it, float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    target = rng.random(shape).astype(np.float32)
    pred = np.clip(target + rng.normal(0, 0.1, shape), 0, 1).astype(np.float32)
    return pred, target


@pytest.mark.parametrize("shape", [(32, 48, 3), (17, 23, 3), (40, 40)])
def test_psnr_matches_skimage(shape: tuple[int, ...]) -> None:
    pred, target = _images(0, shape)
    expected = peak_signal_noise_ratio(target, pred, data_range=1.0)
    assert psnr(pred, target) == pytest.approx(expected, abs=1e-4)
    assert psnr(pred * 255, target * 255, data_range=255.0) == pytest.approx(expected, abs=1e-4)


def test_psnr_of_identical_images_is_infinite() -> None:
    image = np.zeros((8, 8, 3), np.float32)
    assert math.isinf(psnr(image, image))


@pytest.mark.parametrize("shape", [(32, 48, 3), (17, 23, 3), (11, 11, 3)])
def test_ssim_matches_skimage_colour(shape: tuple[int, int, int]) -> None:
    pred, target = _images(1, shape)
    expected = structural_similarity(
        target, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1
    )
    assert ssim(pred, target) == pytest.approx(expected, abs=1e-4)


def test_ssim_matches_skimage_grey_and_structured() -> None:
    y, x = np.mgrid[0:64, 0:80] / 64.0
    target = (0.5 + 0.4 * np.sin(6 * x) * np.cos(4 * y)).astype(np.float32)
    pred = np.clip(target + np.random.default_rng(2).normal(0, 0.03, target.shape), 0, 1).astype(np.float32)
    expected = structural_similarity(
        target, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1
    )
    assert ssim(pred, target) == pytest.approx(expected, abs=1e-4)
    assert ssim(target, target) == pytest.approx(1.0)


def test_metrics_reject_bad_shapes() -> None:
    with pytest.raises(ValueError):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
    with pytest.raises(ValueError):
        ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))


def _conv_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3, padding=1), torch.nn.Sigmoid()
    )
    return model.eval()


class _FiveLevel(torch.nn.Module):
    """Pools by 32 and upsamples back: only works on sizes divisible by 32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coarse = torch.nn.functional.avg_pool2d(x, 32)
        return 0.5 * x + 0.5 * torch.nn.functional.interpolate(coarse, scale_factor=32, mode="nearest")


@pytest.mark.parametrize("size", [(150, 200), (64, 64), (97, 33)])
def test_tiled_equals_untiled_for_conv_model(size: tuple[int, int]) -> None:
    noisy = np.random.default_rng(3).random((*size, 3)).astype(np.float32)
    model = _conv_model()
    whole = denoise_image(model, noisy, tile=512)
    tiled = denoise_image(model, noisy, tile=64, overlap=32)
    assert whole.shape == noisy.shape and whole.dtype == np.float32
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_identity_model_round_trips_any_size_through_many_tiles() -> None:
    noisy = np.random.default_rng(4).random((70, 45, 3)).astype(np.float32)
    out = denoise_image(torch.nn.Identity(), noisy, tile=32, overlap=8)
    np.testing.assert_array_equal(out, noisy)


@pytest.mark.parametrize("size", [(37, 53), (100, 129)])
def test_sizes_not_divisible_by_32_work_for_five_level_models(size: tuple[int, int]) -> None:
    noisy = np.random.default_rng(5).random((*size, 3)).astype(np.float32)
    out = denoise_image(_FiveLevel(), noisy, tile=64, overlap=32)
    assert out.shape == noisy.shape
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_evaluate_identity_scores_the_noisy_input_and_restores_mode() -> None:
    pred, target = _images(6, (40, 48, 3))
    pairs = [ImagePair("a", pred, target), ImagePair("b", target.copy(), target)]
    model = torch.nn.Sequential(torch.nn.Identity()).train()
    scores = mean_quality(model, pairs[:1])
    assert scores["psnr"] == pytest.approx(psnr(pred, target), abs=1e-4)
    assert scores["ssim"] == pytest.approx(ssim(pred, target), abs=1e-6)
    assert model.training
    assert mean_quality(model, pairs[1:])["ssim"] == pytest.approx(1.0)
