"""Exporting the store to the NN Dataset's file layout (`nnsearch.nnd.layout`): `export_nnd`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Connection

from nnsearch.common.paths import safe_component
from nnsearch.errors import StoreError
from nnsearch.nnd.files import write_files
from nnsearch.nnd.layout import DIAGNOSTICS, METRIC_EXPORT_NAMES, NND_PSNR_CODE, RESERVED, RESULTS, SIDECAR
from nnsearch.nnd.runs import is_nnd_run, run_files
from nnsearch.store.dataset_api import data
from nnsearch.store.engine import Store, open_store
from nnsearch.store.record import METRIC_CODE, NN_STAT_FIELDS
from nnsearch.store.schema import NN, LatencyRun, NNStat, Stat, TrainStat

#: Metric "code" that is a note, not a metric module: read back by name, never written as a code file.
_NOTES = {*METRIC_CODE.values(), NND_PSNR_CODE}


@dataclass
class ExportSummary:
    """What an export wrote."""

    configs: int = 0
    files: int = 0
    unchanged: int = 0
    stats: int = 0
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        same = f" ({self.unchanged} already up to date)" if self.unchanged else ""
        return f"exported {self.stats} stat rows: wrote {self.files} files{same} in {self.configs} configurations"


def export_nnd(
    directory: str | Path, db: Store | str | None = None, force: bool = False, **filters: Any
) -> ExportSummary:
    """Write the store's records (optionally filtered as in `data()`) in the NN Dataset layout.

    Empty files are never written, nor files nnsearch did not write (see
    `nnsearch.nnd.files`; `force` overwrites them).
    """
    root = Path(directory)
    summary = ExportSummary()
    with open_store(db) as store:
        frame = data(db=store, **filters)
        models = sorted(frame["nn"].unique().tolist())
        facts = store.reading(lambda conn: _model_facts(conn, models))
        train = store.reading(lambda conn: _train_stats(conn, models))
    _check_names(frame, models, summary)
    files: dict[str, str] = {}
    config_of: dict[str, str] = {}
    for (task, dataset, metric, nn), group in frame.groupby(["task", "dataset", "metric", "nn"], sort=True):
        config = f"{task}_{dataset}_{METRIC_EXPORT_NAMES.get(metric, metric)}_{nn}"
        config_of.setdefault(nn, config)
        for epoch, rows in group.groupby("epoch", sort=True):
            trials = [
                _trial(r, train)
                for r in sorted(rows.itertuples(index=False), key=lambda r: (r.prm_uid, r.transform, r.run))
            ]
            files[f"stat/train/{config}/{epoch}.json"] = _json(trials)
        summary.configs += 1
    summary.stats = len(frame)
    empty = set()
    for kind, column in (("nn", "nn"), ("metric", "metric"), ("transform", "transform")):
        for name, code in frame[[column, f"{column}_code"]].drop_duplicates(column).itertuples(index=False):
            name = METRIC_EXPORT_NAMES.get(name, name) if kind == "metric" else name
            if code and code not in _NOTES:
                files[f"{kind}/{name}.py"] = code
            elif kind == "nn":
                empty.add(name)
    if empty:
        summary.warnings.append(
            f"{len(empty)} model(s) have no code, so no nn/<nn>.py was written for them (e.g. {sorted(empty)[0]!r})"
        )
    runs = [run for nn in models for run in facts[nn]["latency"]]
    files.update({f"stat/run/{path}": _json(record) for path, record in run_files(runs, config_of).items()})
    for nn in models:
        own = [r for r in facts[nn]["latency"] if not is_nnd_run(r)]
        stat, code = facts[nn]["nn_stat"], frame.loc[frame["nn"] == nn, "nn_code"].iloc[0]
        if stat is not None:
            files[f"stat/nn/{nn}.json"] = _json(_nn_stat_file(stat, code))
        if facts[nn]["arch"] is not None or stat is not None or own:
            files[f"stat/{SIDECAR}/{nn}.json"] = _json(
                {"arch": facts[nn]["arch"], "nn_stat": stat, "latency": [_run_json(r) for r in own]}
            )
    summary.files, summary.unchanged = write_files(root, files, force)
    return summary


def _check_names(frame: Any, models: list[str], summary: ExportSummary) -> None:
    for column in ("task", "dataset", "metric", "nn", "transform"):  # each becomes (part of) a file name
        for name in frame[column].unique().tolist():
            safe_component(name, f"cannot export: the stored {column} name")
    for column in ("task", "dataset", "metric"):
        bad = sorted({v for v in frame[column].unique().tolist() if "_" in v or not v})
        if bad:
            raise StoreError(
                f"cannot export: {column} name(s) {bad} contain '_' (or are empty), which the "
                "NN Dataset uses to separate task, dataset, metric and model in folder names"
            )
    bad_nn = [n for n in models if "_" in n]
    if bad_nn:
        summary.warnings.append(
            f"{len(bad_nn)} model name(s) contain '_' (e.g. {bad_nn[0]!r}): nnsearch reads "
            "them back, the NN Dataset's own importer does not"
        )


def _trial(row: Any, train: Mapping[tuple, Mapping[str, Any]]) -> dict[str, Any]:
    clash = sorted(set(row.prm) & (set(RESERVED) | set(DIAGNOSTICS) | set(RESULTS)))
    if clash:
        raise StoreError(f"cannot export {row.nn}: hyperparameter name(s) {clash} are reserved trial keys")
    trial = {**row.prm, "accuracy": row.accuracy, "transform": row.transform, "uid": row.prm_uid}
    if not _missing(row.duration):
        trial["duration"] = int(row.duration)
    diagnostics = train.get(
        (row.task, row.dataset, row.metric, row.nn, row.epoch, row.transform, row.prm_uid, row.run), {}
    )
    for key, (column, factor) in DIAGNOSTICS.items():
        if diagnostics.get(column) is not None:
            trial[key] = diagnostics[column] / factor
    return trial


def _missing(value: Any) -> bool:
    return value is None or bool(pd.isna(value))


def _model_facts(conn: Connection, models: list[str]) -> dict[str, dict[str, Any]]:
    """nn -> {"arch", "nn_stat" (or None), "latency" (latency_run rows)} for the exported models."""
    facts: dict[str, dict[str, Any]] = {n: {"arch": None, "nn_stat": None, "latency": []} for n in models}
    columns = [c for c in LatencyRun.__table__.columns if c.name != "id"]
    for start in range(0, len(models), 500):
        chunk = models[start : start + 500]
        for name, arch in conn.execute(select(NN.name, NN.arch).where(NN.name.in_(chunk))):
            facts[name]["arch"] = arch
        for row in conn.execute(select(NNStat).where(NNStat.nn.in_(chunk))).mappings():
            facts[row["nn"]]["nn_stat"] = {f: row[f] for f in NN_STAT_FIELDS}
        query = (
            select(*columns)
            .where(LatencyRun.nn.in_(chunk))
            .order_by(LatencyRun.nn, LatencyRun.created_at, LatencyRun.id)
        )
        for row in conn.execute(query).mappings():
            facts[row["nn"]]["latency"].append(dict(row))
    return facts


def _train_stats(conn: Connection, models: list[str]) -> dict[tuple, dict[str, Any]]:
    """Stat key -> its train_stat fields, for the exported models."""
    keys = [Stat.task, Stat.dataset, Stat.metric, Stat.nn, Stat.epoch, Stat.transform, Stat.prm, Stat.run]
    fields = [c for c in TrainStat.__table__.columns if c.name != "stat_id"]
    found: dict[tuple, dict[str, Any]] = {}
    for start in range(0, len(models), 500):
        query = (
            select(*keys, *fields)
            .join(TrainStat, TrainStat.stat_id == Stat.id)
            .where(Stat.nn.in_(models[start : start + 500]))
        )
        for row in conn.execute(query):
            found[tuple(row[: len(keys)])] = {c.name: v for c, v in zip(fields, row[len(keys) :])}
    return found


def _run_json(run: Mapping[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in run.items() if k != "nn"}, "created_at": run["created_at"].isoformat()}


def _nn_stat_file(stat: Mapping[str, Any], code: str) -> dict[str, Any]:
    """`stat/nn/<nn>.json` in the NN Dataset's own keys, for the facts that mean the same there."""
    out = {
        "total_params": int(stat["params"]),
        "trainable_params": int(stat["params"]),
        "frozen_params": 0,
        "flops": round(2 * stat["macs"]),
        "model_size_mb": stat["model_size_bytes"] / 2**20,
    }
    if code:
        out["code_length"] = len(code)
    return out


def _json(value: Any) -> str:
    return json.dumps(value, indent=4, sort_keys=True) + "\n"
