"""PNG plots of study results (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def plot_pareto(all_rows: pd.DataFrame, front: pd.DataFrame, path: Path, *, title: str = "",
                x: str = "latency_ms", y: str = "psnr") -> Path:
    """Scatter of every candidate with the Pareto front drawn as a staircase."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter(all_rows[x], all_rows[y], s=22, color="#9aa5b1", label="candidates")
    ordered = front.sort_values(x)
    ax.step(ordered[x], ordered[y], where="post", color="#d1495b", linewidth=1.2)
    ax.scatter(ordered[x], ordered[y], s=40, color="#d1495b", label="Pareto-optimal", zorder=3)
    for _, row in ordered.iterrows():
        ax.annotate(str(row.get("nn", ""))[-6:], (row[x], row[y]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    ax.set_xlabel("latency (ms)" if x == "latency_ms" else x)
    ax.set_ylabel("PSNR (dB)" if y == "psnr" else y)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
