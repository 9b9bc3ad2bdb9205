"""Reading results back as pandas DataFrames."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import and_, func, select

from nnsearch.store.engine import Store
from nnsearch.store.record import precision_metric
from nnsearch.store.schema import LatencyRun, NNStat, Stat, TrialLink


def study_results(store: Store, study: str, device: str = "host-cpu", precision: str = "fp32") -> pd.DataFrame:
    """One row per recorded trial of `study`: final-epoch PSNR/SSIM, latency on `device`, size.

    `latency_ms` is the measured whole-model latency where one exists, else the
    lookup-table prediction (`measured_ms` and `predicted_ms` hold both).
    With a `precision` other than fp32, `psnr`, `ssim` and the latencies are
    those of that precision's quantized model (stat metrics 'psnr@P', 'ssim@P').
    """
    last_epoch = (
        select(Stat.nn, Stat.prm, Stat.dataset, func.max(Stat.epoch).label("epoch"))
        .group_by(Stat.nn, Stat.prm, Stat.dataset).subquery()
    )
    psnr, ssim = (
        select(Stat.nn, Stat.prm, Stat.dataset, Stat.epoch, Stat.accuracy.label(metric))
        .where(Stat.metric == precision_metric(metric, precision)).subquery()
        for metric in ("psnr", "ssim")
    )
    measured, predicted = (
        select(LatencyRun.nn, func.min(func.coalesce(LatencyRun.min_ms, LatencyRun.median_ms)).label("ms"))
        .where(LatencyRun.kind == kind, LatencyRun.device == device, LatencyRun.precision == precision)
        .group_by(LatencyRun.nn).subquery()
        for kind in ("measured", "predicted")
    )
    query = (
        select(
            TrialLink.trial_number.label("trial"), TrialLink.nn, TrialLink.state, TrialLink.dataset,
            psnr.c.psnr, ssim.c.ssim, func.coalesce(measured.c.ms, predicted.c.ms).label("latency_ms"),
            measured.c.ms.label("measured_ms"), predicted.c.ms.label("predicted_ms"), NNStat.params, NNStat.macs,
        )
        .where(TrialLink.study == study)
        .outerjoin(last_epoch, and_(last_epoch.c.nn == TrialLink.nn, last_epoch.c.prm == TrialLink.prm,
                                    last_epoch.c.dataset == TrialLink.dataset))
        .outerjoin(psnr, and_(psnr.c.nn == TrialLink.nn, psnr.c.prm == TrialLink.prm,
                              psnr.c.dataset == TrialLink.dataset, psnr.c.epoch == last_epoch.c.epoch))
        .outerjoin(ssim, and_(ssim.c.nn == TrialLink.nn, ssim.c.prm == TrialLink.prm,
                              ssim.c.dataset == TrialLink.dataset, ssim.c.epoch == last_epoch.c.epoch))
        .outerjoin(measured, measured.c.nn == TrialLink.nn)
        .outerjoin(predicted, predicted.c.nn == TrialLink.nn)
        .outerjoin(NNStat, NNStat.nn == TrialLink.nn)
        .order_by(TrialLink.trial_number)
    )
    return store.reading(lambda conn: pd.read_sql(query, conn))


def epoch_metric(store: Store, study: str, metric: str = "psnr", state: str = "complete") -> pd.DataFrame:
    """Per-epoch values of `metric` for the trials of `study` in `state`: trial, nn, epoch, value."""
    query = (
        select(TrialLink.trial_number.label("trial"), TrialLink.nn, Stat.epoch, Stat.accuracy.label("value"))
        .join(Stat, and_(Stat.nn == TrialLink.nn, Stat.prm == TrialLink.prm, Stat.dataset == TrialLink.dataset))
        .where(TrialLink.study == study, TrialLink.state == state, Stat.metric == metric)
        .order_by(TrialLink.trial_number, Stat.epoch)
    )
    return store.reading(lambda conn: pd.read_sql(query, conn))
