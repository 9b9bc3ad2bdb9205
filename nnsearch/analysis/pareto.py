"""Non-dominated selection over any DataFrame of results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from nnsearch.errors import NNSearchError

#: Default objectives: highest PSNR, lowest latency.
DEFAULT_OBJECTIVES: dict[str, str] = {"psnr": "max", "latency_ms": "min"}
#: Comparison operators a constraint may use.
CONSTRAINT_OPS = {"<=": np.less_equal, ">=": np.greater_equal, "<": np.less, ">": np.greater, "==": np.equal}
Constraints = Mapping[str, tuple[str, float]]


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


def parse_objectives(text: str) -> dict[str, str]:
    """'psnr:max,latency_ms@host-cpu:min,params:min' -> {column: sense}, in the order given."""
    objectives: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        column, _, sense = part.rpartition(":")
        if not column or sense not in ("min", "max"):
            raise NNSearchError(
                f"objective {part!r} must look like COLUMN:min or COLUMN:max (e.g. psnr:max,latency_ms@host-cpu:min)"
            )
        if column in objectives:
            raise NNSearchError(f"objective {column!r} is given twice in {text!r}")
        objectives[column] = sense
    return objectives


def apply_constraints(df: pd.DataFrame, constraints: Constraints | None) -> pd.DataFrame:
    """Rows meeting every constraint {column: (op, value)}, e.g. {"latency_ms": ("<=", 50)}.

    A row with a missing value in a constrained column does not meet the constraint.
    """
    keep = np.ones(len(df), dtype=bool)
    for column, (op, value) in (constraints or {}).items():
        if column not in df.columns:
            raise NNSearchError(f"constraint column {column!r} not in the data; columns are {list(df.columns)}")
        if op not in CONSTRAINT_OPS:
            raise NNSearchError(f"constraint operator must be one of {list(CONSTRAINT_OPS)}, got {op!r}")
        values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
        keep &= CONSTRAINT_OPS[op](values, float(value))  # NaN compares False
    return df[keep]


def pareto(
    df: pd.DataFrame, objectives: Mapping[str, str] | None = None, constraints: Constraints | None = None
) -> pd.DataFrame:
    """Rows of `df` that are Pareto-optimal for `objectives` ({column: 'min'|'max'}).

    `constraints` ({column: (op, value)}, op one of <=, >=, <, >, ==) filter the rows
    first, so the front is that of the feasible rows. Rows with a missing objective
    value are ignored. The result is sorted by the first objective, best first.
    """
    objectives = dict(objectives or DEFAULT_OBJECTIVES)
    _as_minimisation(df.iloc[:0], objectives)  # validates names and senses even on empty data
    clean = apply_constraints(df, constraints).dropna(subset=list(objectives))
    if clean.empty:
        return clean
    mask = nondominated_mask(_as_minimisation(clean, objectives))
    first, sense = next(iter(objectives.items()))
    return clean[mask].sort_values(first, ascending=(sense == "min"), kind="stable")


def _signs(senses: Sequence[str]) -> np.ndarray:
    bad = [s for s in senses if s not in ("min", "max")]
    if bad:
        raise NNSearchError(f"objective sense must be 'min' or 'max', got {bad}")
    return np.array([1.0 if s == "min" else -1.0 for s in senses])


def hypervolume(
    points: np.ndarray | Sequence[Sequence[float]], reference: Sequence[float], senses: Sequence[str]
) -> float:
    """Exact hypervolume dominated by `points` and bounded by `reference`.

    `senses` gives 'min' or 'max' per objective; every objective is turned into a
    minimisation (max columns negated, the reference too). Points that do not beat
    the reference in every objective add nothing. The algorithm slices along the
    last objective and recurses (a sweep in 2-D): exact for any number of
    objectives and quick for the 2-3 objectives and tens of points a study has.
    """
    signs = _signs(senses)
    pts = np.asarray(points, dtype=float).reshape(-1, len(signs)) * signs
    ref = np.asarray(reference, dtype=float) * signs
    if ref.shape != signs.shape:
        raise NNSearchError(f"reference has {ref.size} values for {len(signs)} objectives")
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    return float(_hv_min(pts[nondominated_mask(pts)], ref))


def _hv_min(pts: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of minimisation points all strictly below `ref`."""
    if pts.shape[1] == 1:
        return float(ref[0] - pts[:, 0].min())
    order = np.argsort(pts[:, -1], kind="stable")
    pts = pts[order]
    total = 0.0
    for i in range(len(pts)):
        upper = pts[i + 1, -1] if i + 1 < len(pts) else ref[-1]
        depth = upper - pts[i, -1]
        if depth > 0:
            slab = pts[: i + 1, :-1]
            total += depth * _hv_min(slab[nondominated_mask(slab)], ref[:-1])
    return total


def default_reference(df: pd.DataFrame, objectives: Mapping[str, str], margin: float = 0.1) -> dict[str, float]:
    """Reference point: per objective the worst value in `df`, pushed `margin` of the range further.

    The worst value is the minimum of a 'max' column and the maximum of a 'min'
    column (the nadir of all rows, not just the front), so every front point,
    the extremes included, adds volume. A column with zero range is pushed by
    `margin` of its magnitude (or by `margin` if it is 0).
    """
    values = _as_minimisation(df.dropna(subset=list(objectives)), objectives)
    if len(values) == 0:
        raise NNSearchError("no complete rows to derive a hypervolume reference point from")
    worst, best = values.max(axis=0), values.min(axis=0)
    spread = np.where(worst > best, worst - best, np.where(worst != 0, np.abs(worst), 1.0))
    reference = (worst + margin * spread) * _signs(list(objectives.values()))
    return {c: float(v) for c, v in zip(objectives, reference)}


def knee_point(front: pd.DataFrame, objectives: Mapping[str, str]) -> pd.Series:
    """The front's knee: the row closest to the ideal trade-off after normalisation.

    Each objective is scaled to [0, 1] over the front, 0 being its best value (a
    constant objective scales to 0). The knee is the row farthest on the good side
    of the line (2 objectives) or plane (3) through the normalised extremes
    (1, 0), (0, 1) - or (1,0,0), (0,1,0), (0,0,1) - i.e. the row with the smallest
    sum of normalised objectives; ties go to the earlier row.
    """
    if front.empty:
        raise NNSearchError("the front is empty: no knee point")
    values = _as_minimisation(front, objectives)
    low, high = values.min(axis=0), values.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    scores = ((values - low) / span).sum(axis=1)
    return front.iloc[int(np.argmin(scores))]
