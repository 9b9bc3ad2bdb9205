"""How well a cheap figure (a brief training) stands in for an expensive one (a long training).

All functions take per-student figures in the same order (higher is better, e.g. PSNR).
`rank_agreement` says whether the two orders agree; `regret_db` what choosing by the
cheap figure costs in the expensive one; `seed_spread` / `noise_floor` how much the
figure of one architecture moves from seed to seed, the margin any "A beats B" must exceed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nnsearch.errors import NNSearchError


@dataclass(frozen=True)
class RankAgreement:
    """Kendall's tau-b, Spearman's rho and the overlap of the top `top` students of two orders."""

    n: int
    kendall_tau: float
    spearman: float
    top_overlap: int
    top: int

    def line(self) -> str:
        return (
            f"n={self.n} kendall_tau={self.kendall_tau:.3f} spearman={self.spearman:.3f} "
            f"top{self.top}_overlap={self.top_overlap}/{self.top}"
        )


def _paired(cheap: Sequence[float], costly: Sequence[float], minimum: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(cheap, dtype=float), np.asarray(costly, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise NNSearchError(f"need two equally long lists of figures, got {a.shape} and {b.shape}")
    if len(a) < minimum or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise NNSearchError(f"need at least {minimum} students with finite figures on both sides, got {len(a)}")
    return a, b


def top_indices(values: np.ndarray, top: int) -> set[int]:
    """Indices of the `top` highest values (ties broken by position, stably)."""
    return set(np.argsort(-values, kind="stable")[:top].tolist())


def rank_agreement(cheap: Sequence[float], costly: Sequence[float], top: int = 3) -> RankAgreement:
    """How well the order of `cheap` predicts the order of `costly` (same students, same order)."""
    from scipy.stats import kendalltau, spearmanr

    a, b = _paired(cheap, costly, max(top, 3))
    tau = float(kendalltau(a, b).statistic)
    rho = float(spearmanr(a, b).statistic)
    return RankAgreement(len(a), tau, rho, len(top_indices(a, top) & top_indices(b, top)), top)


def regret_db(cheap: Sequence[float], costly: Sequence[float], eligible: Sequence[bool] | None = None) -> float:
    """`costly` figure lost by picking the eligible student best by `cheap` instead of the best by `costly`.

    0 when both figures pick the same student; never negative.
    """
    a, b = _paired(cheap, costly, 1)
    mask = np.ones(len(a), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    if not mask.any():
        raise NNSearchError("no eligible student to choose from")
    index = np.flatnonzero(mask)
    chosen = index[int(np.argmax(a[index]))]
    return float(b[index].max() - b[chosen])


def seed_spread(values: Sequence[float]) -> float:
    """Largest minus smallest figure of one architecture over its seeds (needs at least 2 seeds)."""
    array = np.asarray(values, dtype=float)
    if len(array) < 2 or not np.isfinite(array).all():
        raise NNSearchError(f"a seed-to-seed spread needs at least 2 finite figures, got {list(values)}")
    return float(array.max() - array.min())


def noise_floor(by_architecture: Mapping[str, Sequence[float]]) -> float:
    """The largest seed-to-seed spread among the architectures given (name -> figures over seeds)."""
    if not by_architecture:
        raise NNSearchError("a noise floor needs at least one architecture trained with several seeds")
    return max(seed_spread(values) for values in by_architecture.values())


def exceeds(margin_db: float, floor_db: float) -> bool:
    """Whether a difference between two students is larger than the seed-to-seed noise floor."""
    return abs(margin_db) > floor_db
