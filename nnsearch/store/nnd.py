"""Import from and export to the NN Dataset's file layout.

The layout (as in ABrain-One/nn-dataset, whose `ab/nn` folder is the root here):
    stat/train/<task>_<dataset>_<metric>_<nn>/<epoch>.json   JSON list of trials
    nn/<nn>.py   metric/<metric>.py   transform/<transform>.py   source code
A trial is {"accuracy", "duration", "transform", "uid", <hyperparameters>...}.
nnsearch adds `stat/nn/<nn>.json` with an "nnsearch" block (Arch JSON, size and
cost, latency records); the NN Dataset's own reader skips that key.

`import_nnd` accepts that root, a checkout containing `ab/nn/`, or the stats
folder itself (code files are then looked up in `../../nn/`, next to the stats
and in the config folder). Task, dataset and metric names must not contain
"_"; the model name is the rest of the folder name. Models without a code file
get empty code. Everything is validated before one all-or-nothing write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Connection

from nnsearch.errors import StoreError
from nnsearch.store.dataset_api import data, run_data
from nnsearch.store.engine import Store, open_store
from nnsearch.store.record import NN_STAT_FIELDS, Bundle, record_bundle
from nnsearch.store.schema import NN, NNStat

#: Trial keys that are not hyperparameters.
RESERVED = ("accuracy", "duration", "transform", "uid")
DEFAULT_TRANSFORM = "default"
EXTRA_KEY = "nnsearch"


@dataclass
class ImportSummary:
    """What an import found and wrote."""

    configs: int = 0
    files: int = 0
    stats: int = 0
    new_stats: int = 0
    models_without_code: list[str] = field(default_factory=list)

    def line(self) -> str:
        missing = f", {len(self.models_without_code)} model(s) without a code file" if self.models_without_code else ""
        return (f"imported {self.stats} stat rows ({self.new_stats} new) from {self.files} files in "
                f"{self.configs} configurations{missing}")


@dataclass
class ExportSummary:
    """What an export wrote."""

    configs: int = 0
    files: int = 0
    stats: int = 0
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"exported {self.stats} stat rows to {self.files} files in {self.configs} configurations"


# ---- import -------------------------------------------------------------------------------------

def import_nnd(directory: str | Path, db: Store | str | None = None) -> ImportSummary:
    """Read an NN Dataset stats tree into the store (existing rows are kept)."""
    root, stat_dir = _layout(Path(directory))
    bundle, summary = Bundle(), ImportSummary()
    # name -> folders where its code file may be
    names: dict[str, dict[str, list[Path]]] = {"nn": {}, "metric": {}, "transform": {}}
    for config_dir in sorted(p for p in stat_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        task, dataset, metric, nn = parse_config(config_dir)
        summary.configs += 1
        names["nn"].setdefault(nn, [root / "nn", stat_dir]).append(config_dir)
        names["metric"].setdefault(metric, [root / "metric"])
        for path in sorted(config_dir.glob("*.json")):
            epoch = _epoch_of(path)
            for trial in _read_trials(path):
                row = _trial_row(trial, path)
                names["transform"].setdefault(row["transform"], [root / "transform"])
                bundle.stats.append({"task": task, "dataset": dataset, "metric": metric, "nn": nn,
                                     "epoch": epoch, **row})
            summary.files += 1
    if not summary.configs:
        raise StoreError(f"no NN Dataset statistics under {directory} "
                         "(expected stat/train/<task>_<dataset>_<metric>_<nn>/<epoch>.json)")
    codes = {kind: {n: _read_code(dirs, n) for n, dirs in sorted(found.items())} for kind, found in names.items()}
    summary.models_without_code = sorted(n for n, c in codes["nn"].items() if c is None)
    bundle.nn_code, bundle.metric_code, bundle.transform_code = (
        {n: c or "" for n, c in codes[kind].items()} for kind in ("nn", "metric", "transform"))
    _read_extras(root / "stat" / "nn", names["nn"], bundle)
    summary.stats = len(bundle.stats)
    with open_store(db, create=True) as store:
        summary.new_stats = record_bundle(store, bundle)
    return summary


def _layout(directory: Path) -> tuple[Path, Path]:
    """(root holding nn/ metric/ transform/, stats folder) for the accepted layouts."""
    if not directory.is_dir():
        raise StoreError(f"NN Dataset folder {directory} does not exist or is not a folder")
    root = directory / "ab" / "nn" if (directory / "ab" / "nn").is_dir() else directory
    if (root / "stat" / "train").is_dir():
        return root, root / "stat" / "train"
    # the stats folder itself (ab/nn/stat/train, or a bare folder of config folders)
    return (directory.parent.parent if directory.parent.name == "stat" else directory), directory


def parse_config(config_dir: Path) -> tuple[str, str, str, str]:
    """`<task>_<dataset>_<metric>_<nn>` -> its four names (the nn may contain "_")."""
    parts = config_dir.name.split("_", 3)
    if len(parts) != 4 or not all(parts):
        raise StoreError(f"{config_dir}: folder name is not <task>_<dataset>_<metric>_<nn>")
    return parts[0], parts[1], parts[2], parts[3]


def _epoch_of(path: Path) -> int:
    try:
        return int(path.stem)
    except ValueError:
        raise StoreError(f"{path}: stats file name must be <epoch>.json with an integer epoch") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path}: malformed JSON: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: cannot read: {exc}") from None


def _read_trials(path: Path) -> list[dict[str, Any]]:
    trials = _read_json(path)
    if not isinstance(trials, list) or not all(isinstance(t, dict) for t in trials):
        raise StoreError(f"{path}: expected a JSON list of trial objects")
    return trials


def _trial_row(trial: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """A trial -> accuracy, duration, transform, prm, prm_uid (validated)."""
    where = f"{path}: trial {trial.get('uid', '?')}"
    accuracy, duration = trial.get("accuracy"), trial.get("duration")
    if not isinstance(accuracy, (int, float)) or isinstance(accuracy, bool):
        raise StoreError(f"{where}: 'accuracy' must be a number, got {accuracy!r}")
    if not isinstance(duration, int) or isinstance(duration, bool):
        raise StoreError(f"{where}: 'duration' must be an integer (nanoseconds), got {duration!r}")
    uid, transform = trial.get("uid"), trial.get("transform") or DEFAULT_TRANSFORM
    if uid is not None and (not isinstance(uid, str) or not 0 < len(uid) <= 32):
        raise StoreError(f"{where}: 'uid' must be a string of at most 32 characters")
    if not isinstance(transform, str):
        raise StoreError(f"{where}: 'transform' must be a name, got {transform!r}")
    row = {"accuracy": accuracy, "duration": duration, "transform": transform,
           "prm": {k: v for k, v in trial.items() if k not in RESERVED}}
    if uid is not None:
        row["prm_uid"] = uid
    return row


def _read_code(folders: list[Path], name: str) -> str | None:
    for path in (folder / f"{name}.py" for folder in folders):
        if path.is_file():
            try:
                return path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise StoreError(f"{path}: cannot read the code of {name!r}: {exc}") from None
    return None


def _read_extras(folder: Path, models: Iterable[str], bundle: Bundle) -> None:
    """nnsearch's own facts from `stat/nn/<nn>.json` (files without them are the NN Dataset's: skipped)."""
    for nn in sorted(models):
        path = folder / f"{nn}.json"
        if not path.is_file():
            continue
        extra = _read_json(path)
        extra = extra.get(EXTRA_KEY) if isinstance(extra, dict) else None
        if not isinstance(extra, dict):
            continue
        try:
            bundle.nn_arch = {**bundle.nn_arch, nn: extra.get("arch")}
            if extra.get("nn_stat") is not None:
                bundle.nn_stats = {**bundle.nn_stats, nn: {f: extra["nn_stat"][f] for f in NN_STAT_FIELDS}}
            bundle.latencies.extend({**run, "nn": nn, "created_at": datetime.fromisoformat(run["created_at"])}
                                    for run in extra.get("latency", []))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{path}: malformed '{EXTRA_KEY}' block: {exc!r}") from None


# ---- export -------------------------------------------------------------------------------------

def export_nnd(directory: str | Path, db: Store | str | None = None, **filters: Any) -> ExportSummary:
    """Write the store's records (optionally filtered as in `data()`) in the NN Dataset layout."""
    root = Path(directory)
    summary = ExportSummary()
    with open_store(db) as store:
        frame = data(db=store, **filters)
        models = sorted(frame["nn"].unique().tolist())
        runs = run_data(db=store, nn=models) if models else None
        facts = _model_facts(store, models)
    for column in ("task", "dataset", "metric"):
        bad = sorted({v for v in frame[column].unique().tolist() if "_" in v or not v})
        if bad:
            raise StoreError(f"cannot export: {column} name(s) {bad} contain '_' (or are empty), which the "
                             "NN Dataset uses to separate task, dataset, metric and model in folder names")
    bad_nn = [n for n in models if "_" in n]
    if bad_nn:
        summary.warnings.append(f"{len(bad_nn)} model name(s) contain '_' (e.g. {bad_nn[0]!r}): nnsearch reads "
                                "them back, the NN Dataset's own importer does not")
    for (task, dataset, metric, nn), group in frame.groupby(["task", "dataset", "metric", "nn"], sort=True):
        config = root / "stat" / "train" / f"{task}_{dataset}_{metric}_{nn}"
        for epoch, rows in group.groupby("epoch", sort=True):
            trials = sorted((_trial(r) for r in rows.itertuples(index=False)),
                            key=lambda t: (t["uid"], t["transform"]))
            _write_json(config / f"{epoch}.json", trials)
            summary.files += 1
        summary.configs += 1
    summary.stats = len(frame)
    for kind, column in (("nn", "nn"), ("metric", "metric"), ("transform", "transform")):
        code_column = f"{column}_code"
        for name, code in frame[[column, code_column]].drop_duplicates(column).itertuples(index=False):
            _write_text(root / kind / f"{name}.py", code)
    for nn in models:
        latency = runs[runs["nn"] == nn] if runs is not None else []
        _write_json(root / "stat" / "nn" / f"{nn}.json", _extras(nn, facts.get(nn, {}), latency))
    return summary


def _trial(row: Any) -> dict[str, Any]:
    clash = sorted(set(row.prm) & set(RESERVED))
    if clash:
        raise StoreError(f"cannot export {row.nn}: hyperparameter name(s) {clash} are reserved trial keys")
    return {**row.prm, "accuracy": row.accuracy, "duration": int(row.duration), "transform": row.transform,
            "uid": row.prm_uid}


def _model_facts(store: Store, models: list[str]) -> dict[str, dict[str, Any]]:
    """nn -> {"arch": ..., "nn_stat": {...} or None} for the exported models."""
    def read(conn: Connection) -> dict[str, dict[str, Any]]:
        facts: dict[str, dict[str, Any]] = {}
        for start in range(0, len(models), 500):
            chunk = models[start:start + 500]
            for name, arch in conn.execute(select(NN.name, NN.arch).where(NN.name.in_(chunk))):
                facts[name] = {"arch": arch, "nn_stat": None}
            for row in conn.execute(select(NNStat).where(NNStat.nn.in_(chunk))).mappings():
                facts[row["nn"]]["nn_stat"] = {f: row[f] for f in NN_STAT_FIELDS}
        return facts

    return store.reading(read)


def _extras(nn: str, facts: Mapping[str, Any], latency: Any) -> dict[str, Any]:
    stat = facts.get("nn_stat")
    runs = [] if len(latency) == 0 else [
        {**{k: _plain(v) for k, v in run.items() if k != "nn"}, "created_at": run["created_at"].isoformat()}
        for run in latency.to_dict("records")
    ]
    out: dict[str, Any] = {EXTRA_KEY: {"arch": facts.get("arch"), "nn_stat": stat, "latency": runs}}
    if stat is not None:  # the NN Dataset's own nn_stat keys, where they mean the same
        out.update({"total_params": stat["params"], "model_size_mb": stat["model_size_bytes"] / 1e6})
    return out


def _plain(value: Any) -> Any:
    """numpy / pandas scalars -> Python (None for missing values)."""
    if value is None:
        return None
    if isinstance(value, float | np.floating) and np.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _write_json(path: Path, value: Any) -> None:
    _write_text(path, json.dumps(value, indent=4, sort_keys=True) + "\n")


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
