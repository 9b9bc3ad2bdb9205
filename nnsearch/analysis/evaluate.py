"""Judge denoisers as a user would: full-resolution PSNR/SSIM on a folder of pairs, and crops to look at.

Every method (the noisy input itself, a student, a teacher, a classical denoiser)
runs on every pair at full resolution (models tiled where large, see
nnsearch.train.metrics.denoise_image). The classical baseline is scikit-image's
non-local means with the noise sigma estimated per image (Donoho's robust median
estimator on the finest diagonal Haar wavelet band, as skimage's ``estimate_sigma``),
``h = 0.8 sigma``, 5x5 patches searched within 13x13 (fast mode): a maintained,
parameter-free reference that any learned denoiser should beat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nnsearch.common.progress import progress
from nnsearch.train.datasets import Pair
from nnsearch.train.metrics import denoise_image, psnr, ssim

NOISY = "noisy input"
CLASSICAL = "nl-means"
CLEAN = "clean"
Denoiser = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Method:
    """A named way to turn a noisy HxWx3 image into a denoised one."""

    name: str
    denoise: Denoiser


def model_method(name: str, model: torch.nn.Module, device: str | torch.device = "cpu") -> Method:
    """A torch denoiser run at full resolution (tiled when large)."""
    model.eval()
    return Method(name, lambda noisy: denoise_image(model, noisy, device=device))


def estimate_noise_sigma(image: np.ndarray) -> float:
    """Gaussian noise sigma of an HxWx3 image: median(|HH|) / 0.6745 of the Haar diagonal band, channel mean."""
    height, width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    x = np.asarray(image[:height, :width], dtype=np.float64)
    diagonal = (x[0::2, 0::2] - x[0::2, 1::2] - x[1::2, 0::2] + x[1::2, 1::2]) / 2.0
    return float(np.mean(np.median(np.abs(diagonal), axis=(0, 1)) / 0.6745))


def nl_means(noisy: np.ndarray) -> np.ndarray:
    """scikit-image non-local means with an estimated sigma (the classical baseline)."""
    from skimage.restoration import denoise_nl_means

    sigma = estimate_noise_sigma(noisy)
    out = denoise_nl_means(
        noisy, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True, channel_axis=-1
    )
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def standard_methods(
    student: tuple[str, torch.nn.Module] | None = None,
    teacher: tuple[str, torch.nn.Module] | None = None,
    *,
    classical: bool = True,
    device: str | torch.device = "cpu",
) -> list[Method]:
    """noisy input, then the student, the teacher and the classical baseline where given."""
    methods = [Method(NOISY, lambda noisy: noisy)]
    for named in (student, teacher):
        if named is not None:
            methods.append(model_method(named[0], named[1], device))
    if classical:
        methods.append(Method(CLASSICAL, nl_means))
    return methods


@dataclass
class Evaluation:
    """Per-pair scores of every method, and the outputs kept for the first few pairs (for crops)."""

    scores: pd.DataFrame  # pair, method, psnr, ssim
    samples: list[tuple[str, dict[str, np.ndarray]]] = field(default_factory=list)

    def summary(self) -> pd.DataFrame:
        """Mean PSNR/SSIM per method (in the order evaluated) and the gain over the noisy input."""
        order = list(dict.fromkeys(self.scores["method"]))
        means = self.scores.groupby("method", sort=False)[["psnr", "ssim"]].mean().reindex(order)
        means["gain_db"] = means["psnr"] - means.loc[NOISY, "psnr"] if NOISY in means.index else np.nan
        return means.reset_index()

    def gain(self, method: str) -> float:
        """Mean PSNR gain of `method` over the noisy input (dB)."""
        table = self.summary().set_index("method")
        return float(table.loc[method, "gain_db"])


def evaluate_methods(
    methods: Sequence[Method], pairs: Sequence[Pair], *, keep: int = 3, verbose: bool = True
) -> Evaluation:
    """Score every method on every pair at full resolution; keep the outputs of the first `keep` pairs."""
    rows, samples = [], []
    for index, pair in enumerate(progress(pairs, total=len(pairs), desc="evaluate", enabled=verbose)):
        outputs = {}
        for method in methods:
            out = method.denoise(pair.noisy)
            rows.append(
                {"pair": pair.name, "method": method.name, "psnr": psnr(out, pair.clean), "ssim": ssim(out, pair.clean)}
            )
            if index < keep:
                outputs[method.name] = out
        if index < keep:
            samples.append((pair.name, {**outputs, CLEAN: pair.clean}))
    return Evaluation(pd.DataFrame(rows), samples)


def format_summary(evaluation: Evaluation) -> str:
    """The per-method means as an aligned text table."""
    return evaluation.summary().to_string(
        index=False, formatters={"psnr": "{:.2f}".format, "ssim": "{:.4f}".format, "gain_db": "{:+.2f}".format}
    )


def detailed_crop(clean: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the `size` x `size` crop with the most detail (largest clean-image std)."""
    height, width = clean.shape[:2]
    size = min(size, height, width)
    best, corner = -1.0, (0, 0)
    for y in range(0, height - size + 1, max(size // 2, 1)):
        for x in range(0, width - size + 1, max(size // 2, 1)):
            spread = float(clean[y : y + size, x : x + size].std())
            if spread > best:
                best, corner = spread, (y, x)
    return corner


def plot_crops(evaluation: Evaluation, path: Path, size: int = 128) -> Path:
    """A PNG grid: one row per kept pair, one column per method (and the clean image), same crop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = evaluation.scores.set_index(["pair", "method"])
    names = list(evaluation.samples[0][1])
    fig, axes = plt.subplots(
        len(evaluation.samples), len(names), squeeze=False, figsize=(2.4 * len(names), 2.6 * len(evaluation.samples))
    )
    for row, (pair, outputs) in enumerate(evaluation.samples):
        y, x = detailed_crop(outputs[CLEAN], size)
        for col, name in enumerate(names):
            ax = axes[row][col]
            ax.imshow(np.clip(outputs[name][y : y + size, x : x + size], 0, 1), interpolation="nearest")
            label = name if name == CLEAN else f"{name}\n{scores.loc[(pair, name), 'psnr']:.2f} dB"
            ax.set_title(
                label if row == 0 or name == CLEAN else f"{scores.loc[(pair, name), 'psnr']:.2f} dB", fontsize=8
            )
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row][0].set_ylabel(pair, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_evaluation(evaluation: Evaluation, out: Path) -> tuple[Path, Path, Path]:
    """scores.csv (per pair and method), summary.txt (the table) and crops.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path, table_path = out / "scores.csv", out / "summary.txt"
    evaluation.scores.to_csv(csv_path, index=False)
    table_path.write_text(format_summary(evaluation) + "\n")
    return csv_path, table_path, plot_crops(evaluation, out / "crops.png")
