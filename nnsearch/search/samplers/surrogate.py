"""A cheap PSNR model for model-based sampling: one-hot architecture features and Bayesian ridge regression.

`ArchFeatures` turns a student into a fixed-length vector: one column per
(decision, choice) of its search space (a decision a shallower student does
not make is all zeros) and the log of its predicted latency, a capacity
measure the lookup table gives for free. `BayesianRidge` fits a linear model
with a Gaussian prior and returns a mean and a standard deviation per
prediction; the deviation is large for choices the data has rarely seen,
which is what drives exploration in `nnsearch.search.samplers.guided`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from nnsearch.model.arch import Arch
from nnsearch.model.space import SearchSpace


@dataclass(frozen=True, eq=False)
class ArchFeatures:
    """One-hot decisions of a search space plus log latency."""

    space: SearchSpace
    columns: tuple[tuple[str, object], ...] = field(init=False)

    def __post_init__(self) -> None:
        columns = [(name, choice) for name in self.space.decision_names() for choice in self.space.choices_of(name)]
        object.__setattr__(self, "columns", tuple(columns))

    @property
    def width(self) -> int:
        return len(self.columns) + 1

    def encode(self, archs: Sequence[Arch], latency_ms: Sequence[float] | np.ndarray) -> np.ndarray:
        """Feature matrix (len(archs), width): the one-hot decisions, then log(latency)."""
        index = {column: i for i, column in enumerate(self.columns)}
        matrix = np.zeros((len(archs), self.width))
        for row, arch in enumerate(archs):
            for name, value in self.space.params_of(arch).items():
                column = index.get((name, value))
                if column is not None:
                    matrix[row, column] = 1.0
        matrix[:, -1] = np.log(np.maximum(np.asarray(latency_ms, dtype=float), 1e-6))
        return matrix


@dataclass
class BayesianRidge:
    """Linear regression with a N(0, 1/prior_precision) prior on standardised features.

    The noise variance is estimated from the residuals with the effective
    number of parameters (the trace of the hat matrix) as degrees of freedom.
    """

    prior_precision: float = 1.0
    _mean_x: np.ndarray = field(init=False, repr=False)
    _scale_x: np.ndarray = field(init=False, repr=False)
    _mean_y: float = field(init=False, repr=False)
    _weights: np.ndarray = field(init=False, repr=False)
    _covariance: np.ndarray = field(init=False, repr=False)
    noise_var: float = field(init=False, default=math.nan)

    def fit(self, x: np.ndarray, y: np.ndarray) -> BayesianRidge:
        """Fit on rows of `x` (n, d) and targets `y` (n,); needs n >= 2."""
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        self._mean_x = x.mean(axis=0)
        spread = x.std(axis=0)
        self._scale_x = np.where(spread > 1e-12, spread, 1.0)
        self._mean_y = float(y.mean())
        z, target = (x - self._mean_x) / self._scale_x, y - self._mean_y
        precision = z.T @ z + self.prior_precision * np.eye(z.shape[1])
        self._covariance = np.linalg.inv(precision)
        self._weights = self._covariance @ z.T @ target
        residual = target - z @ self._weights
        dof = max(len(y) - float(np.trace(z @ self._covariance @ z.T)), 1.0)
        floor = 1e-6 * max(float(target.var()), 1e-12)
        self.noise_var = max(float(residual @ residual) / dof, floor)
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard deviation of the mean) for each row of `x`."""
        z = (np.asarray(x, dtype=float) - self._mean_x) / self._scale_x
        mean = self._mean_y + z @ self._weights
        var = self.noise_var * np.einsum("ij,jk,ik->i", z, self._covariance, z)
        return mean, np.sqrt(np.maximum(var, 0.0))
