"""Importing the NN Dataset's file layout (`nnsearch.nnd.layout`) into the store: `import_nnd`.

`import_nnd` accepts the layout's root, a checkout containing `ab/nn/`, or the stats
folder itself (code files are then looked up in `../../nn/`). Code is read as
text from `nn/`, `metric/` and `transform/` only; files in the stats folders
are never read as code, and model code runs only with the user's opt-in
(`nnsearch.common.trust`). Every name that comes from the folder and becomes
part of a path on export (task, dataset, metric, model, transform, runtime,
precision, device) must be a plain file name (`common.paths.safe_component`).
Task, dataset and metric names must not contain "_"; the model name is the
rest of the folder name. Folders and files that are not statistics
(`RESULTS_RLFN/`, `conversion_report.json`) are skipped and counted. A trial without `duration` is stored with an unknown (NULL) one.
Trials that repeat a hyperparameter set (`uid`) in one file are all kept, as
runs 0, 1, 2, ... in file order. Training diagnostics (`train_loss`,
`test_loss`, `gradient_norm`, `samples_per_second`, `gpu_memory_kb`, flat or in
a nested `train_stat`) go to `train_stat`; other per-trial results
(`best_accuracy`, `lr_now`, ...) are not hyperparameters and are not kept.
Everything is validated before one all-or-nothing write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from nnsearch.common.paths import safe_component
from nnsearch.common.progress import progress
from nnsearch.common.trust import HOW_TO_TRUST, code_trusted
from nnsearch.errors import NNSearchError, StoreError
from nnsearch.model.arch import Arch
from nnsearch.nnd.layout import (
    DEFAULT_TRANSFORM,
    DIAGNOSTICS,
    METRIC_EXPORT_NAMES,
    METRIC_IMPORT_NAMES,
    NND_PSNR_CODE,
    RESERVED,
    RESULTS,
    SIDECAR,
)
from nnsearch.nnd.models import IMAGE_TASKS, rebuild, reference_archs, stored_archs
from nnsearch.nnd.runs import read_run_tree
from nnsearch.store.engine import Store, open_store
from nnsearch.store.hashing import prm_uid
from nnsearch.store.record import METRIC_CODE, NN_STAT_FIELDS, Bundle
from nnsearch.store.recording import record_bundle
from nnsearch.store.schema import NNStat

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
        return [
            f"{len(self.not_run)} model(s) with code were not rebuilt ({shown}): rebuilding runs the folder's "
            f"Python code, which nnsearch does not do without the opt-in; their statistics, runtimes and code "
            f"(as text) were imported. To count and link them, import again and {HOW_TO_TRUST}"
        ]

    def line(self) -> str:
        parts = [
            f"imported {self.stats} stat rows ({self.new_stats} new"
            + (": the store already held every one" if self.stats and not self.new_stats else "")
            + f") from {self.files} files in {self.configs} configurations"
        ]
        if self.runs:
            parts.append(f"{self.runs} on-device runtimes")
        if self.rebuilt:
            linked = "".join(f", {n} = {a}" for n, a in sorted(self.linked.items()))
            parts.append(
                f"{len(self.rebuilt)} model(s) rebuilt from their code ({len(self.linked)} linked to a "
                f"search-space architecture{linked})"
            )
        if self.not_run:
            parts.append(f"{len(self.not_run)} model(s) not rebuilt: their code was not run (see --trust-code)")
        if self.not_rebuilt:
            parts.append(
                f"{len(self.not_rebuilt)} model(s) whose code did not build: "
                + "; ".join(f"{n}: {m}" for n, m in sorted(self.not_rebuilt.items())[:3])
            )
        if self.models_without_code:
            parts.append(f"{len(self.models_without_code)} model(s) without a code file")
        if self.skipped:
            shown = ", ".join(self.skipped[:5]) + (
                f", ... ({len(self.skipped) - 5} more)" if len(self.skipped) > 5 else ""
            )
            parts.append(f"skipped {len(self.skipped)} files or folders that are not {_NOT_STATS} statistics: {shown}")
        return "; ".join(parts)


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
        _rebuild_models(
            store, bundle, {n: p for n, p in first_prm.items() if n not in counted}, summary, code_trusted(trust_code)
        )
        summary.new_stats = record_bundle(store, bundle)
    return summary


def _read_config(
    config_dir: Path, parsed: tuple[str, str, str, str], skip: Any, summary: ImportSummary
) -> Iterator[dict[str, Any]]:
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
    codes = {
        kind: {
            n: _read_code(dirs, METRIC_EXPORT_NAMES.get(n, n) if kind == "metric" else n)
            for n, dirs in sorted(found.items())
        }
        for kind, found in names.items()
    }
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
    row = {
        "accuracy": accuracy,
        "duration": duration,
        "transform": transform,
        "prm": {k: v for k, v in trial.items() if k not in skipped},
        "train": train or None,
        "source": where,
    }
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
            runs = [
                {**run, "nn": nn, "created_at": datetime.fromisoformat(run["created_at"])}
                for run in extra.get("latency", [])
            ]
            for run in runs:  # export writes stat/run/<runtime>/<precision>/.../<device>.json
                for key in ("runtime", "precision", "device"):
                    safe_component(run[key], f"{path}: latency run '{key}'")
            bundle.latencies.extend(runs)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{path}: malformed nnsearch model file: {exc!r}") from None


def _rebuild_models(
    store: Store,
    bundle: Bundle,
    first_prm: Mapping[str, tuple[str, Mapping[str, Any]]],
    summary: ImportSummary,
    trusted: bool,
) -> None:
    """Count models with code (and link them to a space's architecture) unless a sidecar already did.

    Without `trusted` no code runs: the models are listed in `summary.not_run`.
    """
    todo = [
        n
        for n, code in sorted(bundle.nn_code.items())
        if code
        and n in first_prm
        and n not in bundle.nn_arch
        and n not in bundle.nn_stats
        and first_prm[n][0] in IMAGE_TASKS
    ]
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
