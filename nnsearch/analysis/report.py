"""Study reports and candidate tables: Pareto front, hypervolume, latency agreement, top students."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nnsearch.analysis.pareto import DEFAULT_OBJECTIVES, default_reference, hypervolume, knee_point, pareto
from nnsearch.analysis.plots import plot_agreement, plot_hypervolume, plot_pareto
from nnsearch.common.paths import default_results_root, safe_component
from nnsearch.common.precision import Precision
from nnsearch.errors import NNSearchError
from nnsearch.store.dataset_api import LATENCY_PREFIX, data, run_data
from nnsearch.store.engine import Store
from nnsearch.store.query import study_results
from nnsearch.store.timings import study_configuration

REFERENCE_SPACE, REFERENCE_LABEL = "litedenoise", "LiteDenoiseNet"
_MODEL_KEY = ["nn", "prm_uid", "dataset", "transform", "task"]


def candidates(
    db: Store | str | None = None, device: str = "host-cpu", precision: str = Precision.FP32, **filters: Any
) -> pd.DataFrame:
    """One row per trained model (nn x hyperparameters x dataset) from `data()`.

    Columns: the model key, final-epoch `psnr` and `ssim`, `epoch`, `params`,
    `macs`, `gmacs`, every `latency_ms@<device>` column and `latency_ms` (the one
    for `device`). `filters` are those of `data()` (metric is fixed to psnr/ssim).
    With another `precision` than fp32, `psnr`, `ssim` and `latency_ms` are the
    quantized model's (metrics `psnr@P`, `ssim@P`, column `latency_ms@<device>@P`).
    A multi-fidelity student appears once, at the highest rung it reached (`rung`): a
    hyperparameter set that another set of the same model continued is left out.
    """
    if "metric" in filters:
        raise NNSearchError("candidates are built from the psnr and ssim metrics; do not filter on metric")
    names = {Precision.parse(precision).metric(m): m for m in ("psnr", "ssim")}
    rows = data(metric=list(names), device=device, db=db, **filters)
    rows["metric"] = rows["metric"].map(names)
    latency = [c for c in rows.columns if c.startswith(LATENCY_PREFIX)]
    columns = _MODEL_KEY + ["epoch", "rung", "psnr", "ssim", "params", "macs", "gmacs"] + latency + ["latency_ms"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    continued = {(nn, prm.get("continues")) for nn, prm in zip(rows["nn"], rows["prm"]) if prm.get("continues")}
    if continued:
        rows = rows[[(nn, uid) not in continued for nn, uid in zip(rows["nn"], rows["prm_uid"])]]
    last = rows[rows["epoch"] == rows.groupby(_MODEL_KEY)["epoch"].transform("max")]
    quality = last.pivot_table(index=_MODEL_KEY + ["epoch", "rung"], columns="metric", values="accuracy").reset_index()
    facts = last.drop_duplicates(_MODEL_KEY)[_MODEL_KEY + ["params", "macs"] + latency]
    table = quality.merge(facts, on=_MODEL_KEY, how="left")
    for metric in ("psnr", "ssim"):
        if metric not in table:
            table[metric] = np.nan
    table["gmacs"] = table["macs"] / 1e9
    table["latency_ms"] = table.get(f"{LATENCY_PREFIX}{device}{Precision.parse(precision).tag}", np.nan)
    table.columns.name = None
    return table[columns]


def hypervolume_history(rows: pd.DataFrame, objectives: Mapping[str, str], reference: Mapping[str, float]) -> pd.Series:
    """Hypervolume of the rows seen so far, after each row (rows in trial order)."""
    points = rows[list(objectives)].to_numpy(dtype=float)
    senses, ref = list(objectives.values()), [reference[c] for c in objectives]
    volumes = [
        hypervolume(points[: i + 1][~np.isnan(points[: i + 1]).any(axis=1)], ref, senses) for i in range(len(points))
    ]
    return pd.Series(volumes, index=rows.index, name="hypervolume")


def reference_model_name() -> str:
    """The store name of the published LiteDenoiseNet (a reference point of the default space)."""
    from nnsearch.model.space import load_space

    return load_space(REFERENCE_SPACE).reference(REFERENCE_LABEL).name


def markdown_table(frame: pd.DataFrame, formats: Mapping[str, str] | None = None) -> str:
    """A GitHub-flavoured Markdown table; `formats` maps columns to format specs such as '.2f'."""
    formats = formats or {}

    def cell(column: str, value: Any) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            return "-"
        return format(value, formats[column]) if column in formats else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(c, v) for c, v in row.items()) + " |" for _, row in frame.iterrows()]
    return "\n".join(lines)


@dataclass(frozen=True)
class Report:
    """The written report and its images."""

    path: Path
    images: tuple[Path, ...]


TOP_COLUMNS = ["trial", "nn", "rung", "psnr", "ssim", "latency_ms", "params", "gmacs", "knee"]
TOP_FORMATS = {"psnr": ".2f", "ssim": ".4f", "latency_ms": ".2f", "params": ",", "gmacs": ".3f"}


def write_report(
    study: str,
    db: Store | str | None = None,
    results_root: Path | None = None,
    device: str = "host-cpu",
    top: int = 10,
    precision: str = Precision.FP32,
) -> Report:
    """Write `<results_root>/<study>/report.md` with its PNG plots; returns their paths.

    `precision`: whose quality and latency the report shows (fp32, or a quantized one the study recorded).
    """
    out = Path(results_root or default_results_root()) / safe_component(study, "study name")
    store = db if isinstance(db, Store) else Store(db, create=False)
    try:
        config = study_configuration(store, study, device, precision)
        trials = study_results(store, study, latency=config)
        if trials.empty:
            raise NNSearchError(f"study {study!r} has no recorded trials in {store.display_url}")
        out.mkdir(parents=True, exist_ok=True)
        sections = [
            f"# Study `{study}`" + Precision.parse(precision).label(" at "),
            "",
            f"Store `{store.display_url}`; latency on device profile `{device}` at the study's input "
            f"{config.height}x{config.width}, {config.threads} thread(s): measured where measured, else "
            f"predicted, the minimum over runs. {_state_counts(trials)}.{_rung_counts(trials)}",
            "",
        ]
        rows = trials[trials["state"] == "complete"].dropna(subset=list(DEFAULT_OBJECTIVES)).copy()
        if rows.empty:
            raise NNSearchError(f"study {study!r} has no complete trial with PSNR and latency yet")
        rows["gmacs"] = rows["macs"] / 1e9
        images = [
            *_front_section(rows, study, out, sections, store, device, top),
            *_latency_section(trials, out, sections, store, device),
        ]
        path = out / "report.md"
        path.write_text("\n".join(sections) + "\n")
        return Report(path, tuple(images))
    finally:
        if not isinstance(db, Store):
            store.dispose()


def _state_counts(trials: pd.DataFrame) -> str:
    counts = trials["state"].value_counts()
    return f"{len(trials)} trials recorded: " + ", ".join(f"{n} {state}" for state, n in counts.items())


def _rung_counts(trials: pd.DataFrame) -> str:
    """' Multi-fidelity: ...' naming how many students reached each rung (empty for a single-fidelity study)."""
    if not (trials["rung"] > 0).any():
        return ""
    counts = trials["rung"].value_counts().sort_index(ascending=False)
    return (
        " Multi-fidelity study: every student is shown at the highest rung it reached ("
        + ", ".join(f"{n} at rung {r}" for r, n in counts.items())
        + ")."
    )


def _front_section(
    rows: pd.DataFrame, study: str, out: Path, sections: list[str], store: Store, device: str, top: int
) -> list[Path]:
    objectives = dict(DEFAULT_OBJECTIVES)
    front = pareto(rows, objectives)
    knee = knee_point(front, objectives)
    reference = default_reference(rows, objectives)
    volume = hypervolume(front[list(objectives)].to_numpy(float), list(reference.values()), list(objectives.values()))
    ref_point, ref_text = _reference_point(store, device)
    pareto_png = plot_pareto(
        rows,
        front,
        out / "pareto.png",
        reference=ref_point,
        title=f"{study}: PSNR vs latency ({len(rows)} complete trials)",
    )
    history = hypervolume_history(rows.sort_values("trial"), objectives, reference)
    hv_png = plot_hypervolume(
        rows.sort_values("trial")["trial"],
        history,
        out / "hypervolume.png",
        title=f"{study}: hypervolume of the front so far",
    )
    ref_desc = ", ".join(f"{c} {v:.4g}" for c, v in reference.items())
    table = front.assign(knee=np.where(front["nn"] == knee["nn"], "knee", "")).head(top)
    sections += [
        "## Pareto front: PSNR vs latency",
        "",
        f"![PSNR vs latency]({pareto_png.name})",
        "",
        ref_text,
        "",
        f"{len(front)} of {len(rows)} complete trials are Pareto-optimal (PSNR max, latency min). "
        f"Knee point: `{knee['nn']}` (trial {knee['trial']}, {knee['psnr']:.2f} dB, "
        f"{knee['latency_ms']:.2f} ms): the smallest sum of the objectives normalised to [0, 1] over "
        "the front.",
        "",
        f"Hypervolume {volume:.4g} (dB x ms) with reference point ({ref_desc}): the worst value of each "
        "objective over the complete trials, pushed 10% of its range further.",
        "",
        "## Hypervolume over trials",
        "",
        f"![hypervolume over trials]({hv_png.name})",
        "",
        f"## Top students (the front, best PSNR first, at most {top})",
        "",
        markdown_table(table[TOP_COLUMNS], TOP_FORMATS),
        "",
    ]
    return [pareto_png, hv_png]


def _reference_point(store: Store, device: str) -> tuple[tuple[float, float, str] | None, str]:
    """The LiteDenoiseNet point where the store holds its PSNR and latency, and a sentence about it."""
    name = reference_model_name()
    found = candidates(db=store, device=device, nn=name).dropna(subset=["psnr", "latency_ms"])
    if found.empty:
        return None, (
            f"The {REFERENCE_LABEL} reference (`{name}`) was not measured in this store on `{device}`, "
            "so it is not drawn."
        )
    best = found.sort_values("psnr").iloc[-1]
    label = f"{REFERENCE_LABEL} (measured)"
    return (float(best["latency_ms"]), float(best["psnr"]), label), (
        f"The star is {REFERENCE_LABEL} (`{name}`) as measured in this store: {best['psnr']:.2f} dB on "
        f"`{best['dataset']}`, {best['latency_ms']:.2f} ms on `{device}` at "
        f"{_resolutions(run_data(nn=name, device=device, kind='measured', db=store))}."
    )


def _resolutions(runs: pd.DataFrame) -> str:
    """'64x96' or '64x96, 1088x1920': the distinct input sizes of latency records."""
    sizes = sorted({(int(h), int(w)) for h, w in zip(runs["height"], runs["width"])}, key=lambda s: s[0] * s[1])
    return ", ".join(f"{h}x{w}" for h, w in sizes) or "an unrecorded size"


def latency_pairs(runs: pd.DataFrame) -> pd.DataFrame:
    """Predicted and measured latency per nn/device/precision/resolution/threads where both exist.

    Both by the one statistic (`LatencyStat.ms` pooled: the minimum over runs,
    else the median), the one the lookup table sums and `nnsearch.store.timings` ranks by.
    """
    key = ["nn", "device", "precision", "height", "width", "threads"]
    if runs.empty:
        return pd.DataFrame(columns=key + ["predicted", "measured"])
    runs = runs.assign(ms=runs["min_ms"].astype("float64").fillna(runs["median_ms"].astype("float64")))
    medians = runs.pivot_table(index=key, columns="kind", values="ms", aggfunc="min")
    for kind in ("predicted", "measured"):
        if kind not in medians:
            medians[kind] = np.nan
    pairs = medians[["predicted", "measured"]].dropna().reset_index()
    pairs.columns.name = None
    return pairs


def _latency_section(trials: pd.DataFrame, out: Path, sections: list[str], store: Store, device: str) -> list[Path]:
    pairs = latency_pairs(run_data(nn=sorted(set(trials["nn"])), device=device, db=store))
    sections += ["## Predicted vs measured latency", ""]
    if pairs.empty:
        sections += [
            f"No student of this study has both a predicted and a measured latency on `{device}` at the "
            "same resolution, so there is nothing to compare (no plot).",
            "",
        ]
        return []
    error = (pairs["predicted"] / pairs["measured"] - 1).abs()
    png = plot_agreement(
        pairs["predicted"],
        pairs["measured"],
        out / "latency_agreement.png",
        title=f"predicted vs measured latency on {device}",
    )
    sections += [
        f"![predicted vs measured latency]({png.name})",
        "",
        f"{len(pairs)} nn/resolution pairs: mean absolute error {100 * error.mean():.1f}%, "
        f"{100 * (error <= 0.1).mean():.0f}% within +-10%.",
        "",
    ]
    return [png]
