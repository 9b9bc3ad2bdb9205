"""Image-quality metrics, and the mean quality (PSNR, SSIM) of denoising models at full resolution (tiled).

PSNR and SSIM work on float images without rounding. SSIM matches
``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)``: an 11x11 Gaussian window (sigma 1.5), K1=0.01, K2=0.03,
computed per channel, averaged over the valid region (5-pixel border excluded) and then
over channels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from scipy.ndimage import correlate1d

from nnsearch.common.device import channels_last
from nnsearch.train.datasets import Pair
from nnsearch.train.datasets.images import MIN_SIDE

_SSIM_SIGMA = 1.5
_SSIM_RADIUS = (MIN_SIDE - 1) // 2  # 5 = int(3.5 * sigma + 0.5): skimage's truncation, an 11x11 window
_SSIM_K1, _SSIM_K2 = 0.01, 0.03
_SIZE_MULTIPLE = 32  # 2**5: a U-Net with up to 5 levels needs sizes divisible by this


def _as_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 copies of two equally shaped HxW or HxWxC images."""
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ in shape")
    if pred.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {pred.shape}")
    return pred, target


def psnr(pred: np.ndarray, target: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels (inf for identical images)."""
    pred, target = _as_pair(pred, target)
    mse = float(np.mean((pred - target) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(data_range**2 / mse)


def _gaussian_window() -> np.ndarray:
    """Normalised 1-D Gaussian taps of the SSIM window."""
    offsets = np.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (offsets / _SSIM_SIGMA) ** 2)
    return taps / taps.sum()


def _local_mean(image: np.ndarray) -> np.ndarray:
    """Gaussian-weighted local mean over the valid region (axes 0 and 1)."""
    taps = _gaussian_window()
    out = correlate1d(correlate1d(image, taps, axis=0, mode="nearest"), taps, axis=1, mode="nearest")
    r = _SSIM_RADIUS
    return out[r:-r, r:-r]


def ssim(pred: np.ndarray, target: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity, Gaussian window, per channel then averaged (see module doc)."""
    pred, target = _as_pair(pred, target)
    if min(pred.shape[:2]) < 2 * _SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least {2 * _SSIM_RADIUS + 1} px per side, got {pred.shape}")
    c1, c2 = (_SSIM_K1 * data_range) ** 2, (_SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _local_mean(pred), _local_mean(target)
    var_x = _local_mean(pred * pred) - mu_x * mu_x
    var_y = _local_mean(target * target) - mu_y * mu_y
    cov = _local_mean(pred * target) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    per_channel = ssim_map.reshape(ssim_map.shape[0], ssim_map.shape[1], -1).mean(axis=(0, 1))
    return float(per_channel.mean())


# ---------------------------------------------------------------- inference


def _pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Pad bottom/right to a multiple of ``multiple`` (reflect, or replicate when too small to reflect)."""
    height, width = image.shape[:2]
    pad_h, pad_w = -height % multiple, -width % multiple
    widths = ((0, pad_h), (0, pad_w), (0, 0))
    if pad_h < height and pad_w < width:
        return np.pad(image, widths, mode="reflect")
    return np.pad(image, widths, mode="edge")


def _spans(length: int, tile: int, overlap: int) -> Iterator[tuple[int, int, int, int]]:
    """(tile start, tile end, keep start, keep end) along one axis.

    Tiles of size ``tile`` step by ``tile - overlap``, the last one flush with the end; each
    tile keeps the part up to the middle of its overlap with the next, so every kept pixel
    is at least ``overlap // 2`` away from a tile edge that is not an image edge.
    """
    if length <= tile:
        yield 0, length, 0, length
        return
    step = max(tile - overlap, _SIZE_MULTIPLE)
    starts = list(range(0, length - tile, step)) + [length - tile]
    keep_start = 0
    for index, start in enumerate(starts):
        end = start + tile
        keep_end = length if index == len(starts) - 1 else (starts[index + 1] + end) // 2
        yield start, end, keep_start, keep_end
        keep_start = keep_end


def _run(model: torch.nn.Module, patch: np.ndarray, device: torch.device) -> np.ndarray:
    """Model output for one HxWx3 patch, as HxWx3 float32."""
    batch = channels_last(torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1)))[None], device)
    output = model(batch)
    if tuple(output.shape) != tuple(batch.shape):
        raise ValueError(f"model output {tuple(output.shape)} differs from its input {tuple(batch.shape)}")
    return output[0].float().cpu().numpy().transpose(1, 2, 0)


PatchRunner = Callable[[np.ndarray], np.ndarray]  # HxWx3 float32 patch -> HxWx3 float32 output


def denoise_image(
    model: torch.nn.Module,
    noisy: np.ndarray,
    *,
    tile: int = 512,
    overlap: int = 32,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Denoise a full-resolution HxWx3 image; returns HxWx3 float32 clipped to [0, 1].

    The image is padded (bottom/right, reflect) to a multiple of 32 so U-Nets with up
    to 5 levels accept it, then run whole when it fits in ``tile`` (rounded down to a
    multiple of 32) or as overlapping tiles stitched at the middle of each overlap,
    and cropped back. The model's train/eval mode is left as it is; gradients are off.
    """
    device = torch.device(device)
    with torch.no_grad():
        return denoise_tiled(lambda patch: _run(model, patch, device), noisy, tile=tile, overlap=overlap)


def denoise_tiled(
    run: PatchRunner, noisy: np.ndarray, *, tile: int = 512, overlap: int = 32, fixed_tile: bool = False
) -> np.ndarray:
    """`denoise_image` with any patch runner (e.g. a TFLite interpreter of any precision).

    With ``fixed_tile`` every patch is exactly ``tile`` x ``tile`` (a .tflite file's
    fixed input): images smaller than a tile are padded up to it first.
    """
    if noisy.ndim != 3 or noisy.shape[2] != 3:
        raise ValueError(f"denoise_image expects an HxWx3 image, got shape {noisy.shape}")
    tile = max(_SIZE_MULTIPLE, tile // _SIZE_MULTIPLE * _SIZE_MULTIPLE)
    overlap = min(max(overlap, 0), tile - _SIZE_MULTIPLE)
    height, width = noisy.shape[:2]
    padded = _pad_to_multiple(np.asarray(noisy, dtype=np.float32), _SIZE_MULTIPLE)
    if fixed_tile:
        padded = _pad_to_at_least(padded, tile)
    out = np.empty_like(padded)
    for y0, y1, ky0, ky1 in _spans(padded.shape[0], tile, overlap):
        for x0, x1, kx0, kx1 in _spans(padded.shape[1], tile, overlap):
            result = run(padded[y0:y1, x0:x1])
            out[ky0:ky1, kx0:kx1] = result[ky0 - y0 : ky1 - y0, kx0 - x0 : kx1 - x0]
    return np.clip(out[:height, :width], 0.0, 1.0)


def _pad_to_at_least(image: np.ndarray, size: int) -> np.ndarray:
    """Pad bottom/right (replicating the edge) so both sides are at least ``size``."""
    pad_h, pad_w = max(0, size - image.shape[0]), max(0, size - image.shape[1])
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge") if pad_h or pad_w else image


def mean_quality_tiled(
    run: PatchRunner, pairs: Sequence[Pair], *, tile: int = 512, fixed_tile: bool = False
) -> dict[str, float]:
    """Mean PSNR and SSIM over ``pairs`` of a patch runner's full-resolution (tiled) outputs."""
    if not pairs:
        raise ValueError("mean_quality needs at least one image pair")
    scores = []
    for pair in pairs:
        out = denoise_tiled(run, pair.noisy, tile=tile, fixed_tile=fixed_tile)
        scores.append((psnr(out, pair.clean), ssim(out, pair.clean)))
    psnrs, ssims = zip(*scores)
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims))}


def mean_quality(
    model: torch.nn.Module,
    pairs: Sequence[Pair],
    *,
    device: str | torch.device = "cpu",
    tile: int = 512,
) -> dict[str, float]:
    """Mean PSNR and SSIM of the model's full-resolution outputs over ``pairs``.

    Runs in eval mode without gradients and restores the model's previous mode.
    """
    if not pairs:
        raise ValueError("mean_quality needs at least one image pair")
    was_training = model.training
    model.eval()
    device = torch.device(device)
    try:
        with torch.no_grad():
            return mean_quality_tiled(lambda patch: _run(model, patch, device), pairs, tile=tile)
    finally:
        model.train(was_training)
