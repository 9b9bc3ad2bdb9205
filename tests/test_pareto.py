"""Non-dominated sets, hypervolume, knee point and constraints on random point sets."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna._hypervolume import compute_hypervolume

from nnsearch.analysis.pareto import (
    default_reference,
    hypervolume,
    knee_point,
    nondominated_mask,
    pareto,
    parse_objectives,
)
from nnsearch.errors import NNSearchError

# Small integer grids make ties and duplicates likely, which is where dominance bugs hide.
values = st.integers(min_value=0, max_value=6).map(float)


@st.composite
def point_sets(draw):
    k = draw(st.sampled_from([2, 3]))
    n = draw(st.integers(min_value=1, max_value=14))
    points = np.array(draw(st.lists(st.lists(values, min_size=k, max_size=k), min_size=n, max_size=n)))
    senses = draw(st.lists(st.sampled_from(["min", "max"]), min_size=k, max_size=k))
    return points, senses


def brute_force_front(points: np.ndarray, senses: list[str]) -> set[int]:
    signs = np.array([1.0 if s == "min" else -1.0 for s in senses])
    p = points * signs
    return {i for i in range(len(p)) if not any(np.all(p[j] <= p[i]) and np.any(p[j] < p[i]) for j in range(len(p)))}


def frame(points: np.ndarray) -> tuple[pd.DataFrame, list[str]]:
    columns = [f"o{i}" for i in range(points.shape[1])]
    return pd.DataFrame(points, columns=columns), columns


@settings(max_examples=150, deadline=None)
@given(point_sets())
def test_front_matches_brute_force(case):
    points, senses = case
    df, columns = frame(points)
    front = pareto(df, dict(zip(columns, senses)))
    assert set(front.index) == brute_force_front(points, senses)


@settings(max_examples=150, deadline=None)
@given(point_sets(), st.floats(min_value=0.0, max_value=3.0))
def test_hypervolume_matches_optuna(case, slack):
    points, senses = case
    signs = np.array([1.0 if s == "min" else -1.0 for s in senses])
    reference = np.where(signs > 0, 6.0 + slack, -slack)  # beyond every point in every objective
    expected = compute_hypervolume(points * signs, reference * signs)
    assert hypervolume(points, reference, senses) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(point_sets())
def test_hypervolume_ignores_points_beyond_a_tight_reference(case):
    points, senses = case
    signs = np.array([1.0 if s == "min" else -1.0 for s in senses])
    reference = np.full(len(senses), 3.0)
    inside = points[np.all(points * signs < reference * signs, axis=1)]
    expected = compute_hypervolume(inside * signs, reference * signs) if len(inside) else 0.0
    assert hypervolume(points, reference, senses) == pytest.approx(expected, abs=1e-9)


def test_hypervolume_of_known_2d_and_3d_sets():
    assert hypervolume([[1, 1]], [2, 2], ["min", "min"]) == 1.0
    assert hypervolume([[1, 2], [2, 1]], [3, 3], ["min", "min"]) == 3.0
    assert hypervolume([[30.0, 10.0]], [25.0, 20.0], ["max", "min"]) == 50.0
    assert hypervolume([[0, 0, 0]], [1, 2, 3], ["min"] * 3) == 6.0


def test_default_reference_lies_beyond_the_nadir():
    df = pd.DataFrame({"psnr": [30.0, 32.0, 35.0], "latency_ms": [10.0, 20.0, 40.0]})
    ref = default_reference(df, {"psnr": "max", "latency_ms": "min"})
    assert ref == pytest.approx({"psnr": 29.5, "latency_ms": 43.0})


def test_knee_point_is_the_balanced_trade_off():
    df = pd.DataFrame({"psnr": [30.0, 34.5, 35.0], "latency_ms": [10.0, 12.0, 40.0]})
    front = pareto(df)
    assert knee_point(front, {"psnr": "max", "latency_ms": "min"})["latency_ms"] == 12.0


def test_constraints_filter_before_selection():
    df = pd.DataFrame({"psnr": [30.0, 34.0, 36.0, np.nan], "latency_ms": [10.0, 30.0, 60.0, 5.0]})
    front = pareto(df, constraints={"latency_ms": ("<=", 50), "psnr": (">=", 31)})
    assert list(front["psnr"]) == [34.0]
    with pytest.raises(NNSearchError, match="constraint column"):
        pareto(df, constraints={"nope": ("<=", 1)})


def test_parse_objectives():
    assert parse_objectives("psnr:max,latency_ms@host-cpu:min,params:min") == {
        "psnr": "max",
        "latency_ms@host-cpu": "min",
        "params": "min",
    }
    for bad in ("psnr", "psnr:up", "psnr:max,psnr:min"):
        with pytest.raises(NNSearchError):
            parse_objectives(bad)


def test_nondominated_mask_keeps_duplicates():
    assert nondominated_mask(np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]])).tolist() == [True, True, False]
