"""The end of a study run, as `nnsearch search` and `nnsearch demo` print it: Pareto front, table, CSV and plot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nnsearch.analysis.pareto import pareto
from nnsearch.analysis.plots import plot_pareto
from nnsearch.common.paths import default_results_root
from nnsearch.search.study import TEACHER_PSNR_ATTR, Study
from nnsearch.train.teacher_check import noisy_psnr

TABLE_COLUMNS = ["trial", "nn", "psnr", "ssim", "latency_ms", "params", "gmacs"]


@dataclass(frozen=True)
class StudySummary:
    """The outcome of a study run, as printed at the end."""

    complete: int
    front: pd.DataFrame
    csv_path: Path
    png_path: Path
    store_url: str
    noisy_psnr: float | None = None  # mean validation PSNR of the noisy input
    teacher_psnr: float | None = None  # the teacher's validation PSNR (None without a teacher)

    def line(self, prefix: str = "demo") -> str:
        """One line: trials, front size, best PSNR with its gain over the noisy input and the teacher's, fastest."""
        if self.front.empty:
            return f"{prefix}: {self.complete} trials complete, no Pareto-optimal student yet, store {self.store_url}"
        best = self.front["psnr"].max()
        context = []
        if self.noisy_psnr is not None:
            context.append(f"{best - self.noisy_psnr:+.1f} dB over the noisy input")
        context.append("no teacher" if self.teacher_psnr is None else f"teacher {self.teacher_psnr:.1f} dB")
        return (
            f"{prefix}: {self.complete} trials complete, {len(self.front)} Pareto-optimal, "
            f"best PSNR {best:.2f} dB ({'; '.join(context)}), "
            f"fastest {self.front['latency_ms'].min():.1f} ms, store {self.store_url}"
        )


def summarize(study: Study, results_root: Path | None = None) -> StudySummary:
    """Pareto front of a study's completed trials, written as CSV and PNG."""
    rows = study.results()
    complete = rows[rows["state"] == "complete"]
    rows = complete.drop_duplicates("nn").copy()
    rows["gmacs"] = rows["macs"] / 1e9
    senses = {name: direction[:3] for name, direction in study.config.objectives.items()}  # maximize -> max
    front = pareto(rows, senses)
    out = (results_root or default_results_root()) / study.config.name
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "pareto.csv"
    front[_columns(front)].to_csv(csv_path, index=False)
    png_path = plot_pareto(
        rows, front, out / "pareto.png", title=f"study {study.config.name}: PSNR vs latency ({len(rows)} candidates)"
    )
    teacher = study.optuna.user_attrs.get(TEACHER_PSNR_ATTR) if study.config.distill.alpha > 0 else None
    return StudySummary(
        len(complete),
        front,
        csv_path,
        png_path,
        study.store.display_url,
        noisy_psnr=noisy_psnr(study.data.val),
        teacher_psnr=teacher,
    )


def format_table(front: pd.DataFrame) -> str:
    """The Pareto front as an aligned text table."""
    if front.empty:
        return "(no completed trials)"
    shown = front[_columns(front)].copy()
    return shown.to_string(
        index=False,
        formatters={
            "psnr": "{:.2f}".format,
            "ssim": "{:.4f}".format,
            "latency_ms": "{:.1f}".format,
            "params": "{:,}".format,
            "gmacs": "{:.3f}".format,
        },
    )


def _columns(front: pd.DataFrame) -> list[str]:
    """The table's columns: with the rung each student reached when a multi-fidelity study continued any."""
    return TABLE_COLUMNS + (["rung"] if "rung" in front and (front["rung"] > 0).any() else [])
