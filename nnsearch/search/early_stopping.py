"""Early stopping of hopeless candidates in a multi-objective study.

Optuna's pruners are single-objective, so nnsearch uses a dominance rule of its
own. After every epoch but the last, a candidate is stopped when an already
finished trial of the study that is at most as slow (predicted latency on the
study's device) had reached a validation PSNR at least `margin_db` higher *at
the same epoch*. Such a candidate is very unlikely to end up Pareto-optimal.
Comparing at the same epoch keeps the rule fair to slow starters; the margin
(1 dB by default) absorbs the noise of brief trainings. The rule only acts
once `min_history` trials have finished.

A stopped trial is recorded with the epochs it ran and state `stopped`, and
Optuna sees it as PRUNED.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from nnsearch.errors import NNSearchError
from nnsearch.search.config import EarlyStopRule
from nnsearch.store.engine import Store
from nnsearch.store.query import StudyReader
from nnsearch.store.timings import LatencyQuery, study_configuration


class StoppedEarly(NNSearchError):
    """Raised from the epoch callback to stop a dominated candidate."""


@dataclass(frozen=True)
class EpochHistory:
    """Finished trials' PSNR per epoch with their predicted latency (a snapshot)."""

    table: pd.DataFrame  # columns: trial, epoch, value, latency_ms

    @classmethod
    def load(cls, store: Store, study: str, device: str, latency: LatencyQuery | None = None) -> EpochHistory:
        """A snapshot read afresh; latency at `latency`, by default the study's configuration on `device`."""
        return cls.of(StudyReader(store, study, latency or study_configuration(store, study, device)))

    @classmethod
    def of(cls, reader: StudyReader) -> EpochHistory:
        """A snapshot from an incremental reader (it reads only the trials finished since its last read)."""
        per_epoch = reader.epochs("psnr").copy()
        results = reader.results().set_index("trial")
        latency = results["predicted_ms"].fillna(results["latency_ms"])
        per_epoch["latency_ms"] = per_epoch["trial"].map(latency)
        return cls(per_epoch.dropna(subset=["latency_ms"]))

    @property
    def trials(self) -> int:
        return int(self.table["trial"].nunique()) if not self.table.empty else 0

    def dominating(self, rule: EarlyStopRule, epoch: int, psnr: float, latency_ms: float) -> pd.Series | None:
        """The best finished trial that dominates (epoch, psnr, latency) by the rule, if any."""
        if self.trials < rule.min_history:
            return None
        rows = self.table[
            (self.table["epoch"] == epoch)
            & (self.table["latency_ms"] <= latency_ms)
            & (self.table["value"] >= psnr + rule.margin_db)
        ]
        return None if rows.empty else rows.loc[rows["value"].idxmax()]


def check_epoch(
    rule: EarlyStopRule | None,
    history: EpochHistory | None,
    epoch: int,
    last_epoch: int,
    psnr: float,
    latency_ms: float | None,
) -> None:
    """Raise `StoppedEarly` when the rule says this candidate is hopeless after `epoch`."""
    if rule is None or history is None or latency_ms is None or epoch >= last_epoch:
        return
    better = history.dominating(rule, epoch, psnr, latency_ms)
    if better is not None:
        raise StoppedEarly(
            f"stopped after epoch {epoch}: PSNR {psnr:.2f} dB, while trial {int(better['trial'])} "
            f"(predicted {better['latency_ms']:.1f} ms <= {latency_ms:.1f} ms) had {better['value']:.2f} dB "
            f"at the same epoch (margin {rule.margin_db:g} dB)"
        )
