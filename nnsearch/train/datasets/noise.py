"""Synthetic camera noise after Brooks et al., "Unprocessing Images for Learned Raw Denoising" (CVPR 2019).

An sRGB image is unprocessed to raw (inverse smoothstep tone curve, inverse gamma 2.2,
inverse colour matrix, inverse white-balance gains, RGGB Bayer mosaic), heteroscedastic
Gaussian noise with variance ``shot * x + read`` is added to the mosaic, and the mosaic
is processed back (WB gains, bilinear demosaic, colour matrix, gamma, smoothstep).

The colour matrix is a random convex mix of four camera XYZ->camera matrices (the
DNG ColorMatrix values of the cameras Brooks et al. sampled), multiplied by the sRGB
(D65) RGB->XYZ matrix and row-normalised so that white stays white.

Design choice: the noisy output is ``clean + residual`` (clipped to [0, 1] and rounded
to 8 bits, as real inputs are), where ``residual = (process(raw + n) - process(raw - n)) / 2``
for raw noise ``n``, rather than ``process(noisy raw)`` alone. The noise keeps the
spatial correlation, colour mixing and signal dependence the camera pipeline gives
it, but the signal is not blurred by the bilinear demosaic or altered by the
highlight-preserving gain inversion, just as in real pairs where the noisy and the
clean image both pass through the same camera pipeline.

Why the antithetic (odd) residual: the clean image of a real pair is the mean of many
noisy sRGB shots, so real noise is zero-mean in sRGB. The plain difference
``process(raw + n) - process(raw)`` is not: the concave gamma and tone curve make it
1 to 3 levels (of 255) darker on average in mid and bright tones and brighter in the
shadows, differently per colour channel. Networks trained on it learn to add a colour
cast, which on real photos costs several dB. The antithetic residual cancels every
even-order term of the pipeline, so its mean is exactly zero wherever nothing clips.

Noise levels that transfer to real photos: Brooks et al.'s shot-noise prior
(1e-4 to 0.012) gives sRGB noisy-input PSNR of about 18 to 40 dB, mostly heavy noise,
while real camera sRGB pairs sit around 31 to 41 dB (phones at high ISO far lower).
Students trained on it learn to smooth away detail that mild real noise does not
warrant. :func:`add_varied_camera_noise` (what the built-in and ``clean:`` datasets use)
therefore draws the shot/read level independently for every ``NOISE_BLOCK`` x
``NOISE_BLOCK`` block of an image from a wider log-uniform prior,
``log(shot) ~ U[log 2e-5, log 0.012]`` (about 47 down to 18 dB; median about 33 dB),
keeping Brooks' read-vs-shot relation; each training crop thus sees its own level,
low noise included, and the network learns to leave clean-looking areas alone.

The Bayer mosaic is built at full resolution with a tiled RGGB pattern. An odd height
or width is padded with one replicated row/column so that every 2x2 cell is complete
(every pixel then has all three colours within its 3x3 neighbourhood), and the result
is cropped back; the demosaic's normalised convolution handles image borders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import correlate

# XYZ -> camera matrices of four cameras (DNG ColorMatrix), as used by Brooks et al.
_XYZ_TO_CAMS = np.array(
    [
        [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
        [[0.4913, -0.0541, -0.0202], [-0.6130, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
        [[0.8380, -0.2630, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
        [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.0970, 0.1581, 0.5181]],
    ]
)
# Linear sRGB (D65) -> XYZ.
_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
# RGGB: channel index (0=R, 1=G, 2=B) of each site in a 2x2 cell.
_CFA = np.array([[0, 1], [1, 2]])
_KERNEL_RB = np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=np.float32)
_KERNEL_G = np.array([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]], dtype=np.float32)
_GAMMA = 2.2
_EPS = 1e-8
_HIGHLIGHT_INFLECTION = 0.9


@dataclass(frozen=True)
class NoiseParams:
    """Parameters of one synthetic capture.

    ``shot``/``read``: raw noise variance is ``shot * x + read``; ``red_gain``/``blue_gain``:
    white-balance gains; ``rgb_gain``: overall digital gain; ``ccm_weights``: convex weights
    of the four camera colour matrices.
    """

    shot: float
    read: float
    red_gain: float
    blue_gain: float
    rgb_gain: float
    ccm_weights: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)


#: Shot-noise prior of Brooks et al. 2019 and the wider one used for training data.
BROOKS_SHOT_RANGE = (1e-4, 0.012)
WIDE_SHOT_RANGE = (2e-5, 0.012)
#: Side in pixels of the blocks that get their own noise level in :func:`add_varied_camera_noise`.
NOISE_BLOCK = 64


def sample_noise_level(
    rng: np.random.Generator, shot_range: tuple[float, float] = BROOKS_SHOT_RANGE
) -> tuple[float, float]:
    """(shot, read): log(shot) ~ U[log lo, log hi]; log(read) = 2.18 log(shot) + 1.20 + N(0, 0.26^2)."""
    log_shot = rng.uniform(np.log(shot_range[0]), np.log(shot_range[1]))
    log_read = 2.18 * log_shot + 1.20 + rng.normal(0.0, 0.26)
    return float(np.exp(log_shot)), float(np.exp(log_read))


def sample_noise_params(rng: np.random.Generator, shot_range: tuple[float, float] = BROOKS_SHOT_RANGE) -> NoiseParams:
    """Draw capture parameters from the distributions of Brooks et al. 2019.

    log(shot) ~ U[log 1e-4, log 0.012] (or ``shot_range``); log(read) = 2.18 log(shot) + 1.20 + N(0, 0.26^2);
    red gain ~ U[1.9, 2.4]; blue gain ~ U[1.5, 1.9]; rgb gain = 1 / N(0.8, 0.1) with the
    normal clipped to [0.5, 1.1] to avoid extreme brightening.
    """
    shot, read = sample_noise_level(rng, shot_range)
    weights = rng.uniform(1e-8, 1.0, size=4)
    weights /= weights.sum()
    return NoiseParams(
        shot=shot,
        read=read,
        red_gain=float(rng.uniform(1.9, 2.4)),
        blue_gain=float(rng.uniform(1.5, 1.9)),
        rgb_gain=float(1.0 / np.clip(rng.normal(0.8, 0.1), 0.5, 1.1)),
        ccm_weights=tuple(float(w) for w in weights),  # type: ignore[arg-type]
    )


def _rgb_to_cam(params: NoiseParams) -> np.ndarray:
    """Row-normalised linear-sRGB -> camera matrix for the mixed camera."""
    weights = np.asarray(params.ccm_weights, dtype=np.float64)
    xyz_to_cam = np.tensordot(weights / weights.sum(), _XYZ_TO_CAMS, axes=1)
    rgb_to_cam = xyz_to_cam @ _RGB_TO_XYZ
    return rgb_to_cam / rgb_to_cam.sum(axis=1, keepdims=True)


def _wb_gains(params: NoiseParams) -> np.ndarray:
    """Forward per-channel gains (R, G, B) applied by the camera pipeline."""
    return np.array([params.red_gain, 1.0, params.blue_gain]) * params.rgb_gain


def _cfa_index(height: int, width: int) -> np.ndarray:
    """HxW map of the RGGB channel index at each site (even height and width)."""
    return np.tile(_CFA, (height // 2, width // 2))


def _inverse_gains(cam: np.ndarray, params: NoiseParams) -> np.ndarray:
    """Undo WB and digital gains, easing the inversion near white so highlights do not clip."""
    inverse = (1.0 / _wb_gains(params)).astype(np.float32)
    grey = cam.mean(axis=2, keepdims=True)
    mask = (np.maximum(grey - _HIGHLIGHT_INFLECTION, 0.0) / (1.0 - _HIGHLIGHT_INFLECTION)) ** 2
    safe = np.maximum(mask + (1.0 - mask) * inverse, inverse)
    return cam * safe


def _unprocess(rgb: np.ndarray, params: NoiseParams, cfa: np.ndarray) -> np.ndarray:
    """sRGB HxWx3 in [0, 1] -> raw RGGB mosaic HxW."""
    x = np.clip(rgb, 0.0, 1.0)
    x = 0.5 - np.sin(np.arcsin(1.0 - 2.0 * x) / 3.0)
    x = np.maximum(x, _EPS) ** _GAMMA
    x = x @ _rgb_to_cam(params).T.astype(np.float32)
    x = _inverse_gains(x, params)
    return np.take_along_axis(x, cfa[:, :, None], axis=2)[:, :, 0]


def _demosaic(mosaic: np.ndarray, cfa: np.ndarray) -> np.ndarray:
    """Bilinear demosaic by normalised convolution (exact at measured sites, sane at borders)."""
    planes = []
    for channel, kernel in ((0, _KERNEL_RB), (1, _KERNEL_G), (2, _KERNEL_RB)):
        mask = (cfa == channel).astype(np.float32)
        total = correlate(mosaic * mask, kernel, mode="constant")
        weight = correlate(mask, kernel, mode="constant")
        planes.append(total / weight)
    return np.stack(planes, axis=2)


def _process(mosaic: np.ndarray, params: NoiseParams, cfa: np.ndarray) -> np.ndarray:
    """Raw RGGB mosaic HxW -> sRGB HxWx3 in [0, 1]."""
    gains = _wb_gains(params).astype(np.float32)[cfa]
    x = _demosaic(np.clip(mosaic * gains, 0.0, 1.0), cfa)
    x = x @ np.linalg.inv(_rgb_to_cam(params)).T.astype(np.float32)
    x = np.maximum(x, _EPS) ** (1.0 / _GAMMA)
    x = np.clip(x, 0.0, 1.0)
    return 3.0 * x**2 - 2.0 * x**3


def add_camera_noise(
    clean: np.ndarray, rng: np.random.Generator, params: NoiseParams | None = None
) -> tuple[np.ndarray, NoiseParams]:
    """Return a realistically noisy copy of ``clean`` (HxWx3 in [0, 1]) and the parameters used.

    Parameters are drawn with :func:`sample_noise_params` when not given; the same
    generator state always yields the same output. The result is float32 in [0, 1].
    """
    _check_rgb(clean)
    if params is None:
        params = sample_noise_params(rng)
    return _noisy(clean, rng, params, np.float32(params.shot), np.float32(params.read)), params


def add_varied_camera_noise(
    clean: np.ndarray,
    rng: np.random.Generator,
    block: int = NOISE_BLOCK,
    shot_range: tuple[float, float] = WIDE_SHOT_RANGE,
) -> tuple[np.ndarray, NoiseParams]:
    """Camera noise whose shot/read level is drawn anew for every ``block`` x ``block`` region.

    Colour matrix and gains are drawn once for the image (one camera), the level per
    block from ``shot_range`` (see the module doc). Returns the noisy image and the
    image-level parameters (their ``shot``/``read`` are the first block's).
    """
    _check_rgb(clean)
    params = sample_noise_params(rng, shot_range)
    height, width = clean.shape[0] + clean.shape[0] % 2, clean.shape[1] + clean.shape[1] % 2
    rows, cols = -(-height // block), -(-width // block)
    levels = np.array([sample_noise_level(rng, shot_range) for _ in range(rows * cols)], dtype=np.float32)
    levels[0] = (params.shot, params.read)
    grid = levels.reshape(rows, cols, 2).repeat(block, axis=0).repeat(block, axis=1)[:height, :width]
    return _noisy(clean, rng, params, grid[:, :, 0], grid[:, :, 1]), params


def _check_rgb(clean: np.ndarray) -> None:
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"add_camera_noise expects an HxWx3 image, got shape {clean.shape}")


def _noisy(clean: np.ndarray, rng: np.random.Generator, params: NoiseParams, shot, read) -> np.ndarray:
    """Noisy sRGB image for raw variance ``shot * x + read`` (scalars or maps of the padded size)."""
    height, width = clean.shape[:2]
    image = np.pad(np.asarray(clean, dtype=np.float32), ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    cfa = _cfa_index(*image.shape[:2])
    raw = _unprocess(image, params, cfa)
    std = np.sqrt(shot * np.maximum(raw, 0.0) + read)
    raw_noise = std * rng.standard_normal(raw.shape, dtype=np.float32)
    # Antithetic residual: odd in the raw noise, hence exactly zero-mean for every pixel.
    residual = 0.5 * (_process(raw + raw_noise, params, cfa) - _process(raw - raw_noise, params, cfa))
    noisy = np.clip(image + residual, 0.0, 1.0)[:height, :width]
    noisy = np.round(noisy * 255.0) / 255.0  # real inputs are 8-bit images
    return np.ascontiguousarray(noisy, dtype=np.float32)
