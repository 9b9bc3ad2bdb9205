"""Non-dominated selection over any DataFrame of results."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from nnsearch.errors import NNSearchError

#: Default objectives: highest PSNR, lowest latency.
DEFAULT_OBJECTIVES: dict[str, str] = {"psnr": "max", "latency_ms": "min"}


def _as_minimisation(df: pd.DataFrame, objectives: Mapping[str, str]) -> np.ndarray:
    missing = [c for c in objectives if c not in df.columns]
    if missing:
        raise NNSearchError(f"objective column(s) {missing} not in the data; columns are {list(df.columns)}")
    bad = {c: s for c, s in objectives.items() if s not in ("min", "max")}
    if bad:
        raise NNSearchError(f"objective sense must be 'min' or 'max', got {bad}")
    values = df[list(objectives)].to_numpy(dtype=float)
    signs = np.array([1.0 if s == "min" else -1.0 for s in objectives.values()])
    return values * signs


def nondominated_mask(points: np.ndarray) -> np.ndarray:
    """Boolean mask of rows not dominated by any other row (all objectives minimised)."""
    n = len(points)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        if not mask[i]:
            continue
        dominates_i = np.all(points <= points[i], axis=1) & np.any(points < points[i], axis=1)
        if dominates_i.any():
            mask[i] = False
    return mask


def pareto(df: pd.DataFrame, objectives: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Rows of `df` that are Pareto-optimal for `objectives` ({column: 'min'|'max'}).

    Rows with a missing objective value are ignored. The result is sorted by the
    first objective, best first.
    """
    objectives = dict(objectives or DEFAULT_OBJECTIVES)
    clean = df.dropna(subset=[c for c in objectives if c in df.columns])
    if clean.empty:
        return clean
    mask = nondominated_mask(_as_minimisation(clean, objectives))
    first, sense = next(iter(objectives.items()))
    return clean[mask].sort_values(first, ascending=(sense == "min"))
