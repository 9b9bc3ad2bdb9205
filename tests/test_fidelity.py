"""Rank agreement, regret and noise floor of a cheap figure standing in for an expensive one."""

from __future__ import annotations

import pytest

from nnsearch.analysis.fidelity import (
    exceeds,
    noise_floor,
    rank_agreement,
    regret_db,
    seed_spread,
)
from nnsearch.errors import NNSearchError


def test_same_order_agrees_fully_and_reversed_order_not_at_all():
    same = rank_agreement([30.0, 31.0, 32.0, 33.0], [35.0, 35.5, 36.0, 37.0])
    assert (same.kendall_tau, same.spearman, same.top_overlap) == (pytest.approx(1.0), pytest.approx(1.0), 3)
    reverse = rank_agreement([30.0, 31.0, 32.0, 33.0], [37.0, 36.0, 35.5, 35.0])
    assert (reverse.kendall_tau, reverse.spearman, reverse.top_overlap) == (pytest.approx(-1.0), pytest.approx(-1.0), 2)


def test_one_swap_lowers_tau_by_the_share_of_discordant_pairs():
    agreement = rank_agreement([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 4.0, 3.0])
    assert agreement.kendall_tau == pytest.approx(1 - 2 * 1 / 6)
    assert agreement.top_overlap == 3


def test_regret_is_what_the_cheap_choice_loses_among_eligible_students():
    cheap = [30.0, 32.0, 31.0, 29.0]
    costly = [36.0, 35.0, 36.5, 40.0]
    assert regret_db(cheap, costly) == pytest.approx(40.0 - 35.0)
    assert regret_db(cheap, costly, [True, True, True, False]) == pytest.approx(36.5 - 35.0)
    assert regret_db(cheap, costly, [False, False, True, False]) == 0.0
    with pytest.raises(NNSearchError, match="no eligible"):
        regret_db(cheap, costly, [False] * 4)


def test_noise_floor_is_the_largest_seed_spread_and_a_margin_must_exceed_it():
    assert seed_spread([36.1, 36.4, 36.2]) == pytest.approx(0.3)
    floor = noise_floor({"a": [36.1, 36.4, 36.2], "b": [34.0, 34.05, 34.02]})
    assert floor == pytest.approx(0.3)
    assert exceeds(-0.31, floor) and not exceeds(0.29, floor)
    with pytest.raises(NNSearchError, match="at least 2"):
        noise_floor({"a": [36.0]})


def test_mismatched_or_too_few_figures_are_refused():
    with pytest.raises(NNSearchError, match="equally long"):
        rank_agreement([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(NNSearchError, match="at least 3"):
        rank_agreement([1.0, 2.0], [1.0, 2.0])
