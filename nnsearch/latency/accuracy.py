"""How well a device's lookup table predicts it: every whole-model measurement paired with its prediction.

A study records each candidate's prediction (`latency_run` kind 'predicted')
and, where the device timed the whole model, its measurement (kind
'measured'); a pair is one model at one configuration (input size, threads,
precision) with both. `prediction_accuracy` gives the share of pairs whose
prediction is within +-10% of the measurement and the Spearman rank
correlation of the two; `warning` says when the table predicts badly, so
measured figures are the ones to trust there (NPUs that fuse layers can
break the sum of one-op timings).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import select

from nnsearch.store.engine import Store
from nnsearch.store.schema import LatencyRun
from nnsearch.store.stat import LatencyStat

#: Below either figure, with at least `MIN_PAIRS` pairs, a device's table is said to predict badly.
GOOD_WITHIN10, GOOD_SPEARMAN, MIN_PAIRS = 0.7, 0.8, 4


@dataclass(frozen=True)
class PredictionAccuracy:
    """Measured vs predicted whole-model latency on one device profile name."""

    device: str
    pairs: int
    within10: float  # share of pairs with |predicted / measured - 1| <= 0.1
    spearman: float  # rank correlation of predicted and measured (nan under 2 pairs)
    median_ratio: float  # median of predicted / measured

    @property
    def bad(self) -> bool:
        """Enough pairs, and too few within +-10% or too weak a rank correlation."""
        weak = self.within10 < GOOD_WITHIN10 or not self.spearman >= GOOD_SPEARMAN
        return self.pairs >= MIN_PAIRS and weak

    def line(self) -> str:
        return (
            f"{self.device}: {self.pairs} whole-model measurement(s) paired with the table's prediction: "
            f"within +-10% {self.within10:.0%}, Spearman {self.spearman:.3f}, predicted/measured median "
            f"{self.median_ratio:.2f}"
        )

    def warning(self) -> str | None:
        """A warning when the table predicts this device badly, else None."""
        if not self.bad:
            return None
        return (
            f"the lookup table of device '{self.device}' predicts it badly ({self.within10:.0%} of "
            f"{self.pairs} measured models within +-10%, Spearman {self.spearman:.2f}); rely on measured "
            "figures there (keep whole-model timing on, and --latency-wait)"
        )


def prediction_pairs(store: Store, device: str) -> pd.DataFrame:
    """One row per model x configuration with both figures: nn, height, width, threads, precision, measured, predicted."""
    query = select(
        LatencyRun.nn,
        LatencyRun.height,
        LatencyRun.width,
        LatencyRun.threads,
        LatencyRun.precision,
        LatencyRun.kind,
        LatencyRun.median_ms,
        LatencyRun.min_ms,
    ).where(LatencyRun.device == device)
    groups: dict[tuple, dict[str, list[LatencyStat]]] = {}
    for row in store.reading(lambda conn: conn.execute(query).all()):
        kinds = groups.setdefault((row.nn, row.height, row.width, row.threads, row.precision), {})
        kinds.setdefault(row.kind, []).append(LatencyStat(median_ms=row.median_ms, min_ms=row.min_ms))
    rows = [
        (*config, LatencyStat.pooled(k["measured"]).ms, LatencyStat.pooled(k["predicted"]).ms)
        for config, k in groups.items()
        if "measured" in k and "predicted" in k
    ]
    return pd.DataFrame(rows, columns=["nn", "height", "width", "threads", "precision", "measured", "predicted"])


def prediction_accuracy(store: Store, device: str) -> PredictionAccuracy | None:
    """The table's accuracy on `device` over all paired models; None without any pair."""
    pairs = prediction_pairs(store, device)
    pairs = pairs[pairs["measured"] > 0]
    if pairs.empty:
        return None
    ratio = pairs["predicted"] / pairs["measured"]
    spearman = float(pairs["predicted"].corr(pairs["measured"], method="spearman")) if len(pairs) > 1 else float("nan")
    return PredictionAccuracy(
        device, len(pairs), float(((ratio - 1).abs() <= 0.1).mean()), spearman, float(ratio.median())
    )
