"""PNG plots of study results (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def _save(fig: plt.Figure, ax: plt.Axes, path: Path, title: str) -> Path:
    """Title, grid, layout, write the PNG and close the figure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_pareto(
    all_rows: pd.DataFrame,
    front: pd.DataFrame,
    path: Path,
    *,
    title: str = "",
    x: str = "latency_ms",
    y: str = "psnr",
    reference: tuple[float, float, str] | None = None,
) -> Path:
    """Scatter of every candidate with the Pareto front drawn as a staircase.

    `reference`: an (x, y, label) point drawn as a star, e.g. a measured LiteDenoiseNet.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter(all_rows[x], all_rows[y], s=22, color="#9aa5b1", label="candidates")
    ordered = front.sort_values(x)
    ax.step(ordered[x], ordered[y], where="post", color="#d1495b", linewidth=1.2)
    ax.scatter(ordered[x], ordered[y], s=40, color="#d1495b", label="Pareto-optimal", zorder=3)
    for _, row in ordered.iterrows():
        ax.annotate(
            str(row.get("nn", ""))[-6:], (row[x], row[y]), fontsize=7, xytext=(4, 3), textcoords="offset points"
        )
    if reference is not None:
        ax.scatter(
            [reference[0]],
            [reference[1]],
            s=120,
            marker="*",
            color="#edae49",
            edgecolor="black",
            label=reference[2],
            zorder=4,
        )
    ax.set_xlabel("latency (ms)" if x == "latency_ms" else x)
    ax.set_ylabel("PSNR (dB)" if y == "psnr" else y)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, ax, path, title)


def plot_hypervolume(trials: pd.Series, volumes: pd.Series, path: Path, *, title: str = "") -> Path:
    """Hypervolume of the front found so far, after each trial."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.step(trials, volumes, where="post", color="#00798c", linewidth=1.5)
    ax.scatter(trials, volumes, s=16, color="#00798c", zorder=3)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume")
    return _save(fig, ax, path, title)


def plot_agreement(predicted: pd.Series, measured: pd.Series, path: Path, *, title: str = "", unit: str = "ms") -> Path:
    """Predicted against measured values with the y = x line."""
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.scatter(measured, predicted, s=24, color="#30638e", zorder=3)
    both = np.concatenate([np.asarray(predicted, float), np.asarray(measured, float)])
    low, high = float(both.min()), float(both.max())
    pad = 0.05 * (high - low or abs(high) or 1.0)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], color="#9aa5b1", linestyle="--", label="y = x")
    ax.set_xlabel(f"measured ({unit})")
    ax.set_ylabel(f"predicted ({unit})")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, ax, path, title)
