"""Import from and export to the NN Dataset's file layout.

The layout (as in ABrain-One/nn-dataset, whose `ab/nn` folder is the root here):
    stat/train/<task>_<dataset>_<metric>_<nn>/<epoch>.json   JSON list of trials
    stat/run/<runtime>/<precision>/<config>/<os>_<device>.json   on-device runtimes (`nnd_run`)
    stat/nn/<nn>.json   per-model statistics (params, flops, ...)
    nn/<nn>.py   metric/<metric>.py   transform/<transform>.py   source code
A trial is {"accuracy", "duration", "transform", "uid", <hyperparameters>..., <training diagnostics>...}.
nnsearch adds `stat/nnsearch/<nn>.json` (Arch JSON, size and cost, its own
latency runs), a file the NN Dataset's reader never looks at.

`import_nnd` accepts that root, a checkout containing `ab/nn/`, or the stats
folder itself (code files are then looked up in `../../nn/`). Code is read as
text from `nn/`, `metric/` and `transform/` only; files in the stats folders
are never read as code. Every name that comes from the folder and becomes part
of a path on export (task, dataset, metric, model, transform, runtime,
precision, device) must be a plain file name (`common.paths.safe_component`). Task, dataset and metric names must not contain
"_"; the model name is the rest of the folder name. Folders and files that are
not statistics (`RESULTS_RLFN/`, `conversion_report.json`) are skipped and
counted. A trial without `duration` is stored with an unknown (NULL) one.
Trials that repeat a hyperparameter set (`uid`) in one file are all kept, as
runs 0, 1, 2, ... in file order. Training diagnostics (`train_loss`,
`test_loss`, `gradient_norm`, `samples_per_second`, `gpu_memory_kb`, flat or in
a nested `train_stat`) go to `train_stat`; other per-trial results
(`best_accuracy`, `lr_now`, ...) are not hyperparameters and are not kept.
Everything is validated before one all-or-nothing write.

One scale per metric name: the NN Dataset's `psnr` is a normalised score (about
0.7), nnsearch's `psnr` is decibels. Its `psnr` folders are imported as metric
`psnr-nnd`, and nnsearch's decibel `psnr` is exported as folder metric `psnrdb`
(imported back as `psnr`); see `METRIC_IMPORT_NAMES`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Connection

from nnsearch.common.paths import safe_component
from nnsearch.common.progress import progress
from nnsearch.common.trust import HOW_TO_TRUST, code_trusted
from nnsearch.errors import NNSearchError, StoreError
from nnsearch.model.arch import Arch
from nnsearch.store.dataset_api import data
from nnsearch.store.engine import Store, open_store
from nnsearch.store.nnd_files import write_files
from nnsearch.store.nnd_models import IMAGE_TASKS, rebuild, reference_archs, stored_archs
from nnsearch.store.nnd_run import is_nnd_run, read_run_tree, run_files
from nnsearch.store.record import METRIC_CODE, NN_STAT_FIELDS, Bundle, prm_uid, record_bundle
from nnsearch.store.schema import NN, LatencyRun, NNStat, Stat, TrainStat

#: Trial keys that are not hyperparameters.
RESERVED = ("accuracy", "duration", "transform", "uid")
#: The NN Dataset's training diagnostics -> (train_stat field, factor to its unit).
DIAGNOSTICS = {"train_loss": ("train_loss", 1.0), "test_loss": ("val_loss", 1.0),
               "gradient_norm": ("grad_norm", 1.0), "samples_per_second": ("samples_per_s", 1.0),
               "gpu_memory_kb": ("gpu_mem_mb", 1 / 1024)}
#: Per-trial results that are neither hyperparameters nor kept.
RESULTS = ("train_stat", "train_accuracy", "best_accuracy", "best_epoch", "lr_now")
#: Folder metric name -> stored metric name, where the two differ (one scale per stored name).
METRIC_IMPORT_NAMES = {"psnr": "psnr-nnd", "psnrdb": "psnr"}
METRIC_EXPORT_NAMES = {v: k for k, v in METRIC_IMPORT_NAMES.items()}
NND_PSNR_CODE = "# The NN Dataset's 'psnr': a normalised score in [0, 1] (not decibels), as its files record it\n"
#: Metric "code" that is a note, not a metric module: read back by name, never written as a code file.
_NOTES = {*METRIC_CODE.values(), NND_PSNR_CODE}
DEFAULT_TRANSFORM = "default"
SIDECAR = "nnsearch"
_NOT_STATS = "<task>_<dataset>_<metric>_<nn>/<epoch>.json"


@dataclass
class ImportSummary:
    """What an import found and wrote."""

    configs: int = 0
    files: int = 0
    stats: int = 0
    new_stats: int = 0
    runs: int = 0
    models_without_code: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    linked: dict[str, str] = field(default_factory=dict)
    not_rebuilt: dict[str, str] = field(default_factory=dict)
    not_run: list[str] = field(default_factory=list)  # models whose code was not run (no opt-in)

    @property
    def warnings(self) -> list[str]:
        """What the user should know and may act on: models not rebuilt because their code was not run."""
        if not self.not_run:
            return []
        shown = ", ".join(self.not_run[:3]) + (f" and {len(self.not_run) - 3} more" if len(self.not_run) > 3 else "")
        return [f"{len(self.not_run)} model(s) with code were not rebuilt ({shown}): rebuilding runs the folder's "
                f"Python code, which nnsearch does not do without the opt-in; their statistics, runtimes and code "
                f"(as text) were imported. To count and link them, import again and {HOW_TO_TRUST}"]

    def line(self) -> str:
        parts = [f"imported {self.stats} stat rows ({self.new_stats} new"
                 + (": the store already held every one" if self.stats and not self.new_stats else "")
                 + f") from {self.files} files in {self.configs} configurations"]
        if self.runs:
            parts.append(f"{self.runs} on-device runtimes")
        if self.rebuilt:
            linked = "".join(f", {n} = {a}" for n, a in sorted(self.linked.items()))
            parts.append(f"{len(self.rebuilt)} model(s) rebuilt from their code ({len(self.linked)} linked to a "
                         f"search-space architecture{linked})")
        if self.not_run:
            parts.append(f"{len(self.not_run)} model(s) not rebuilt: their code was not run (see --trust-code)")
        if self.not_rebuilt:
            parts.append(f"{len(self.not_rebuilt)} model(s) whose code did not build: "
                         + "; ".join(f"{n}: {m}" for n, m in sorted(self.not_rebuilt.items())[:3]))
        if self.models_without_code:
            parts.append(f"{len(self.models_without_code)} model(s) without a code file")
        if self.skipped:
            shown = ", ".join(self.skipped[:5]) + (f", ... ({len(self.skipped) - 5} more)" if len(self.skipped) > 5 else "")
            parts.append(f"skipped {len(self.skipped)} files or folders that are not {_NOT_STATS} "
                         f"statistics: {shown}")
        return "; ".join(parts)


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


# ---- import -------------------------------------------------------------------------------------

def import_nnd(directory: str | Path, db: Store | str | None = None, trust_code: bool = False) -> ImportSummary:
    """Read an NN Dataset tree (statistics, runtimes, code) into the store (existing rows are kept).

    Model code is recorded as text; it is run (to rebuild, count and link the
    models) only when `trust_code` or the NNSEARCH_TRUST_CODE setting allows it.
    """
    root, stat_dir = _layout(Path(directory))
    bundle, summary = Bundle(), ImportSummary()
    skip = _skipper(root, summary)
    # name -> folders where its code file may be
    names: dict[str, dict[str, list[Path]]] = {"nn": {}, "metric": {}, "transform": {}}
    first_prm: dict[str, tuple[str, Mapping[str, Any]]] = {}  # nn -> (task, hyperparameters of its first trial)
    configs = sorted(p for p in stat_dir.iterdir() if not p.name.startswith(".")) if stat_dir else []
    for config_dir in progress(configs, desc="reading NN Dataset statistics"):
        parsed = parse_config(config_dir) if config_dir.is_dir() else None
        if parsed is None:
            skip(config_dir)
            continue
        summary.configs += 1
        names["nn"].setdefault(parsed[3], [root / "nn"])  # code only from nn/, never from the stats folders
        names["metric"].setdefault(METRIC_IMPORT_NAMES.get(parsed[2], parsed[2]), [root / "metric"])
        for row in _read_config(config_dir, parsed, skip, summary):
            names["transform"].setdefault(row["transform"], [root / "transform"])
            first_prm.setdefault(row["nn"], (row["task"], row["prm"]))
            bundle.stats.append(row)
    bundle.latencies = _read_runs(root, names, skip)
    summary.runs = len(bundle.latencies)
    if not summary.configs and not bundle.latencies:
        raise StoreError(f"no NN Dataset statistics under {directory} (expected stat/train/{_NOT_STATS})")
    _read_codes(names, bundle, summary)
    _read_sidecars(root / "stat", names["nn"], bundle)
    summary.stats = len(bundle.stats)
    with open_store(db, create=True) as store:
        counted = store.reading(lambda conn: set(conn.scalars(select(NNStat.nn))))
        _rebuild_models(store, bundle, {n: p for n, p in first_prm.items() if n not in counted}, summary,
                        code_trusted(trust_code))
        summary.new_stats = record_bundle(store, bundle)
    return summary


def _read_config(config_dir: Path, parsed: tuple[str, str, str, str], skip: Any,
                 summary: ImportSummary) -> Iterator[dict[str, Any]]:
    """The stat rows of one `<task>_<dataset>_<metric>_<nn>` folder; other entries in it are skipped."""
    task, dataset, folder_metric, nn = parsed
    metric = METRIC_IMPORT_NAMES.get(folder_metric, folder_metric)
    for path in sorted(p for p in config_dir.iterdir() if not p.name.startswith(".")):
        epoch = _epoch_of(path)
        if epoch is None:
            skip(path)
            continue
        repeats: dict[tuple[str, str], int] = {}
        for index, trial in enumerate(_read_trials(path)):
            row = _trial_row(trial, f"{path}: trial {index} (uid {trial.get('uid', '?')})")
            key = (row["transform"], row.get("prm_uid") or prm_uid(row["prm"]))
            row["run"] = repeats[key] = repeats.get(key, -1) + 1
            yield {"task": task, "dataset": dataset, "metric": metric, "nn": nn, "epoch": epoch, **row}
        summary.files += 1


def _read_codes(names: Mapping[str, Mapping[str, list[Path]]], bundle: Bundle, summary: ImportSummary) -> None:
    """The code of every model, metric and transform named (metric files under the NN Dataset's names)."""
    codes = {kind: {n: _read_code(dirs, METRIC_EXPORT_NAMES.get(n, n) if kind == "metric" else n)
                    for n, dirs in sorted(found.items())} for kind, found in names.items()}
    summary.models_without_code = sorted(n for n, c in codes["nn"].items() if c is None)
    bundle.nn_code, bundle.transform_code = ({n: c or "" for n, c in codes[k].items()} for k in ("nn", "transform"))
    bundle.metric_code = {n: c or _known_metric_code(n) for n, c in codes["metric"].items()}


def _skipper(root: Path, summary: ImportSummary):  # -> callable noting one skipped path
    def skip(path: Path) -> None:
        try:
            shown = path.relative_to(root)
        except ValueError:
            shown = path
        summary.skipped.append(f"{shown}/" if path.is_dir() else str(shown))
    return skip


def _layout(directory: Path) -> tuple[Path, Path | None]:
    """(root holding nn/ metric/ transform/, stats folder or None) for the accepted layouts."""
    if not directory.is_dir():
        raise StoreError(f"NN Dataset folder {directory} does not exist or is not a folder")
    root = directory / "ab" / "nn" if (directory / "ab" / "nn").is_dir() else directory
    if (root / "stat" / "train").is_dir():
        return root, root / "stat" / "train"
    if (root / "stat" / "run").is_dir():  # runtimes only
        return root, None
    # the stats folder itself (ab/nn/stat/train, or a bare folder of config folders)
    return (directory.parent.parent if directory.parent.name == "stat" else directory), directory


def parse_config(config_dir: Path) -> tuple[str, str, str, str] | None:
    """`<task>_<dataset>_<metric>_<nn>` -> its four names (the nn may contain "_"); None for other names.

    A name that cannot be a file name of its own ('..') raises NNSearchError naming the folder.
    """
    parts = config_dir.name.split("_", 3)
    if len(parts) != 4 or not all(parts):
        return None
    for kind, name in zip(("task", "dataset", "metric", "model"), parts):
        safe_component(name, f"{config_dir}: {kind} name")
    return parts[0], parts[1], parts[2], parts[3]


def _epoch_of(path: Path) -> int | None:
    """The epoch of a `<epoch>.json` stats file; None for any other entry."""
    if not path.is_file() or path.suffix != ".json" or not path.stem.isdigit():
        return None
    return int(path.stem)


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


def _trial_row(trial: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A trial -> accuracy, duration, transform, prm, prm_uid, train (validated; `where` names it in errors)."""
    accuracy, duration = trial.get("accuracy"), trial.get("duration")
    if not isinstance(accuracy, (int, float)) or isinstance(accuracy, bool):
        raise StoreError(f"{where}: 'accuracy' must be a number, got {accuracy!r}")
    if duration is not None and (not isinstance(duration, int) or isinstance(duration, bool) or duration < 0):
        raise StoreError(f"{where}: 'duration' must be an integer (nanoseconds) or absent, got {duration!r}")
    uid, transform = trial.get("uid"), trial.get("transform") or DEFAULT_TRANSFORM
    if uid is not None and (not isinstance(uid, str) or not 0 < len(uid) <= 32):
        raise StoreError(f"{where}: 'uid' must be a string of at most 32 characters")
    if not isinstance(transform, str):
        raise StoreError(f"{where}: 'transform' must be a name, got {transform!r}")
    safe_component(transform, f"{where}: 'transform'")  # transform/<name>.py is read and written
    nested = trial.get("train_stat")
    if nested is not None and not isinstance(nested, dict):
        raise StoreError(f"{where}: 'train_stat' must be an object, got {nested!r}")
    train = {}
    for source in (nested or {}, trial):
        for key, (column, factor) in DIAGNOSTICS.items():
            value = source.get(key)
            if value is None:
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise StoreError(f"{where}: '{key}' must be a number, got {value!r}")
            train[column] = value * factor
    skipped = set(RESERVED) | set(DIAGNOSTICS) | set(RESULTS)
    row = {"accuracy": accuracy, "duration": duration, "transform": transform,
           "prm": {k: v for k, v in trial.items() if k not in skipped}, "train": train or None, "source": where}
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


def _known_metric_code(name: str) -> str:
    """Code text for a metric without a code file: ours for nnsearch's metrics, a note for the NN Dataset's psnr."""
    return NND_PSNR_CODE if name == "psnr-nnd" else METRIC_CODE.get(name, "")


def _read_runs(root: Path, names: dict[str, dict[str, list[Path]]], skip: Any) -> list[dict[str, Any]]:
    run_dir = root / "stat" / "run"
    if not run_dir.is_dir():
        return []

    def model_of(config_dir: Path) -> str | None:
        parsed = parse_config(config_dir)
        if parsed is None:
            return None
        names["nn"].setdefault(parsed[3], [root / "nn"])
        return parsed[3]

    rows = read_run_tree(run_dir, _read_json, skip, model_of)
    return [{k: v for k, v in row.items() if k != "config"} for row in rows]


def _read_sidecars(stat: Path, models: Iterable[str], bundle: Bundle) -> None:
    """nnsearch's own facts from `stat/nnsearch/<nn>.json`: architecture, size and cost, latency runs.

    Exports of earlier nnsearch versions kept them under a "nnsearch" key of `stat/nn/<nn>.json`.
    """
    for nn in sorted(models):
        path, older = stat / SIDECAR / f"{nn}.json", stat / "nn" / f"{nn}.json"
        if path.is_file():
            extra = _read_json(path)
        else:
            found = _read_json(older) if older.is_file() else None
            if not isinstance(found, dict) or SIDECAR not in found:
                continue
            path, extra = older, found[SIDECAR]
        try:
            if extra.get("arch") is not None:
                bundle.nn_arch = {**bundle.nn_arch, nn: extra["arch"]}
            if extra.get("nn_stat") is not None:
                bundle.nn_stats = {**bundle.nn_stats, nn: {f: extra["nn_stat"][f] for f in NN_STAT_FIELDS}}
            runs = [{**run, "nn": nn, "created_at": datetime.fromisoformat(run["created_at"])}
                    for run in extra.get("latency", [])]
            for run in runs:  # export writes stat/run/<runtime>/<precision>/.../<device>.json
                for key in ("runtime", "precision", "device"):
                    safe_component(run[key], f"{path}: latency run '{key}'")
            bundle.latencies.extend(runs)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{path}: malformed nnsearch model file: {exc!r}") from None


def _rebuild_models(store: Store, bundle: Bundle, first_prm: Mapping[str, tuple[str, Mapping[str, Any]]],
                    summary: ImportSummary, trusted: bool) -> None:
    """Count models with code (and link them to a space's architecture) unless a sidecar already did.

    Without `trusted` no code runs: the models are listed in `summary.not_run`.
    """
    todo = [n for n, code in sorted(bundle.nn_code.items()) if code and n in first_prm and n not in bundle.nn_arch
            and n not in bundle.nn_stats and first_prm[n][0] in IMAGE_TASKS]
    if not todo:
        return
    if not trusted:
        summary.not_run = todo
        return
    references = reference_archs()

    def candidates(params: int) -> list[Arch]:
        return references + stored_archs(store, params)

    arch, stats = dict(bundle.nn_arch), dict(bundle.nn_stats)
    for nn in progress(todo, desc="rebuilding models from their code"):
        task, prm = first_prm[nn]
        try:
            found = rebuild(nn, bundle.nn_code[nn], task, prm, candidates)
        except NNSearchError as exc:
            summary.not_rebuilt[nn] = str(exc)
            continue
        if found is None:
            continue
        summary.rebuilt.append(nn)
        stats[nn] = found.nn_stat
        if found.arch_json is not None:
            arch[nn] = found.arch_json
            summary.linked[nn] = found.arch_label or "an architecture"
    bundle.nn_arch, bundle.nn_stats = arch, stats


# ---- export -------------------------------------------------------------------------------------

def export_nnd(directory: str | Path, db: Store | str | None = None, force: bool = False,
               **filters: Any) -> ExportSummary:
    """Write the store's records (optionally filtered as in `data()`) in the NN Dataset layout.

    Empty files are never written, nor files nnsearch did not write (see
    `nnsearch.store.nnd_files`; `force` overwrites them).
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
            trials = [_trial(r, train) for r in sorted(rows.itertuples(index=False),
                                                        key=lambda r: (r.prm_uid, r.transform, r.run))]
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
        summary.warnings.append(f"{len(empty)} model(s) have no code, so no nn/<nn>.py was written for them "
                                f"(e.g. {sorted(empty)[0]!r})")
    runs = [run for nn in models for run in facts[nn]["latency"]]
    files.update({f"stat/run/{path}": _json(record) for path, record in run_files(runs, config_of).items()})
    for nn in models:
        own = [r for r in facts[nn]["latency"] if not is_nnd_run(r)]
        stat, code = facts[nn]["nn_stat"], frame.loc[frame["nn"] == nn, "nn_code"].iloc[0]
        if stat is not None:
            files[f"stat/nn/{nn}.json"] = _json(_nn_stat_file(stat, code))
        if facts[nn]["arch"] is not None or stat is not None or own:
            files[f"stat/{SIDECAR}/{nn}.json"] = _json({"arch": facts[nn]["arch"], "nn_stat": stat,
                                                        "latency": [_run_json(r) for r in own]})
    summary.files, summary.unchanged = write_files(root, files, force)
    return summary


def _check_names(frame: Any, models: list[str], summary: ExportSummary) -> None:
    for column in ("task", "dataset", "metric", "nn", "transform"):  # each becomes (part of) a file name
        for name in frame[column].unique().tolist():
            safe_component(name, f"cannot export: the stored {column} name")
    for column in ("task", "dataset", "metric"):
        bad = sorted({v for v in frame[column].unique().tolist() if "_" in v or not v})
        if bad:
            raise StoreError(f"cannot export: {column} name(s) {bad} contain '_' (or are empty), which the "
                             "NN Dataset uses to separate task, dataset, metric and model in folder names")
    bad_nn = [n for n in models if "_" in n]
    if bad_nn:
        summary.warnings.append(f"{len(bad_nn)} model name(s) contain '_' (e.g. {bad_nn[0]!r}): nnsearch reads "
                                "them back, the NN Dataset's own importer does not")


def _trial(row: Any, train: Mapping[tuple, Mapping[str, Any]]) -> dict[str, Any]:
    clash = sorted(set(row.prm) & (set(RESERVED) | set(DIAGNOSTICS) | set(RESULTS)))
    if clash:
        raise StoreError(f"cannot export {row.nn}: hyperparameter name(s) {clash} are reserved trial keys")
    trial = {**row.prm, "accuracy": row.accuracy, "transform": row.transform, "uid": row.prm_uid}
    if not _missing(row.duration):
        trial["duration"] = int(row.duration)
    diagnostics = train.get((row.task, row.dataset, row.metric, row.nn, row.epoch, row.transform, row.prm_uid,
                             row.run), {})
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
        chunk = models[start:start + 500]
        for name, arch in conn.execute(select(NN.name, NN.arch).where(NN.name.in_(chunk))):
            facts[name]["arch"] = arch
        for row in conn.execute(select(NNStat).where(NNStat.nn.in_(chunk))).mappings():
            facts[row["nn"]]["nn_stat"] = {f: row[f] for f in NN_STAT_FIELDS}
        query = select(*columns).where(LatencyRun.nn.in_(chunk)).order_by(LatencyRun.nn, LatencyRun.created_at,
                                                                          LatencyRun.id)
        for row in conn.execute(query).mappings():
            facts[row["nn"]]["latency"].append(dict(row))
    return facts


def _train_stats(conn: Connection, models: list[str]) -> dict[tuple, dict[str, Any]]:
    """Stat key -> its train_stat fields, for the exported models."""
    keys = [Stat.task, Stat.dataset, Stat.metric, Stat.nn, Stat.epoch, Stat.transform, Stat.prm, Stat.run]
    fields = [c for c in TrainStat.__table__.columns if c.name != "stat_id"]
    found: dict[tuple, dict[str, Any]] = {}
    for start in range(0, len(models), 500):
        query = (select(*keys, *fields).join(TrainStat, TrainStat.stat_id == Stat.id)
                 .where(Stat.nn.in_(models[start:start + 500])))
        for row in conn.execute(query):
            found[tuple(row[:len(keys)])] = {c.name: v for c, v in zip(fields, row[len(keys):])}
    return found


def _run_json(run: Mapping[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in run.items() if k != "nn"}, "created_at": run["created_at"].isoformat()}


def _nn_stat_file(stat: Mapping[str, Any], code: str) -> dict[str, Any]:
    """`stat/nn/<nn>.json` in the NN Dataset's own keys, for the facts that mean the same there."""
    out = {"total_params": int(stat["params"]), "trainable_params": int(stat["params"]), "frozen_params": 0,
           "flops": int(round(2 * stat["macs"])), "model_size_mb": stat["model_size_bytes"] / 2 ** 20}
    if code:
        out["code_length"] = len(code)
    return out


def _json(value: Any) -> str:
    return json.dumps(value, indent=4, sort_keys=True) + "\n"
