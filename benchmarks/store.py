"""Store speed: bulk-insert N stat rows and read them back with `data()`; a study's per-trial read overhead.

Usage: python benchmarks/store.py [--quick] [--rows N] [--pg URL | --no-pg]

Runs on PostgreSQL (a temporary schema, dropped afterwards; skipped with a note
when the server is unreachable) and then on a temporary SQLite file, printing
one line per engine, SQLite last:
    store: engine=sqlite rows=100000 insert_rows_per_s=... data_100k_s=...
The layout is a study's: 50 rows per model (5 hyperparameter sets x 5 epochs x
PSNR/SSIM), each model with its own ~7 kB model file. `data_*_s` is the median
of 3 full reads.

Then, on SQLite, the reads a running study makes after each trial (the repeat
check, the early-stopping history, the live status line; `StudyReader`, which
reads only new trials) in a study that already has 10 and 1,000 recorded
trials: the median over 10 more trials of the time those reads take, and for
comparison the same reads done in full (`full_ms_*`, what each trial cost
before the reads were incremental). Last line:
    store: per_trial_ms_10=... per_trial_ms_1000=... full_ms_10=... full_ms_1000=...
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from nnsearch.model.arch import Arch
from nnsearch.store.dataset_api import data
from nnsearch.store.engine import Store
from nnsearch.store.record import METRIC_CODE
from nnsearch.store.recording import record_stats_bulk

DEFAULT_PG = os.environ.get("NNSEARCH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PRM_SETS, EPOCHS = 5, 5


def workload(rows: int, seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Stat rows and model code for `rows` rows (a multiple of 50)."""
    rng = random.Random(seed)
    body = Arch(widths=(16, 32, 64), blocks=(1, 1, 1), skips=("concat", "concat")).model_code()
    per_model = PRM_SETS * EPOCHS * len(METRIC_CODE)
    stats: list[dict[str, Any]] = []
    code: dict[str, str] = {}
    for m in range(max(1, rows // per_model)):
        nn = f"BenchNet-{m:06d}"
        code[nn] = f"# {nn}\n{body}"
        for _ in range(PRM_SETS):
            prm = {
                "lr": rng.uniform(1e-4, 1e-2),
                "batch": rng.choice([4, 8, 16]),
                "alpha": 0.9,
                "steps": 240,
                "crops": [64, 128],
            }
            for epoch in range(EPOCHS):
                for metric in METRIC_CODE:
                    stats.append(
                        {
                            "task": "img-denoising",
                            "dataset": "bench",
                            "metric": metric,
                            "nn": nn,
                            "transform": "crop",
                            "epoch": epoch,
                            "prm": prm,
                            "accuracy": rng.uniform(20, 40),
                            "duration": rng.randrange(10**9, 10**11),
                        }
                    )
    return stats, code


def measure(url: str, rows: int) -> str:
    """Insert the workload into a fresh store at `url`, read it back, return the result line."""
    stats, code = workload(rows)
    store = Store(url)
    try:
        began = time.perf_counter()
        new = record_stats_bulk(
            store, stats, nn_code=code, metric_code=METRIC_CODE, transform_code={"crop": "# crop\n"}
        )
        insert_s = time.perf_counter() - began
        assert new == len(stats), (new, len(stats))
        reads = []
        for _ in range(3):
            began = time.perf_counter()
            frame = data(db=store)
            reads.append(time.perf_counter() - began)
        assert len(frame) == len(stats), (len(frame), len(stats))
    finally:
        store.dispose()
    label = f"{len(stats) // 1000}k" if len(stats) % 1000 == 0 else str(len(stats))
    return (
        f"store: engine={store.dialect} rows={len(stats)} insert_rows_per_s={len(stats) / insert_s:.0f} "
        f"data_{label}_s={statistics.median(reads):.3f}"
    )


def trial_record(number: int):  # -> ModelRecord
    """A recorded trial as a study writes it: 3 epochs of PSNR/SSIM, a predicted and a measured latency."""
    from nnsearch.store.record import EpochRecord, LatencyRecord, ModelRecord

    rng = random.Random(number)
    arch = Arch(widths=(8 + 2 * (number % 7), 16), blocks=(1, number % 3), skips=("concat",))
    latencies = [
        LatencyRecord(
            device="host-cpu",
            runtime="tflite-cpu",
            runtime_version="bench",
            threads=1,
            height=64,
            width=96,
            kind=kind,
            median_ms=ms,
            min_ms=ms,
            runs=3,
        )
        for kind, ms in (("predicted", rng.uniform(1, 9)), ("measured", rng.uniform(1, 9)))
    ]
    return ModelRecord(
        nn=f"BenchNet-{number:06d}",
        code=f"# {number}\n",
        arch_json=json.dumps(arch.to_dict()),
        prm={"steps": 6},
        dataset="bench",
        transform="crops_32",
        transform_code="# crops\n",
        params=1000 + number,
        macs=1e6,
        macs_hw=(64, 96),
        depth=4,
        model_size_bytes=4000,
        latencies=latencies,
        epochs=[EpochRecord(epoch=e, psnr=rng.uniform(20, 30) + e, ssim=0.8, duration_ns=10**9) for e in range(3)],
    )


def per_trial_overhead(url: str, recorded: int, more: int = 10) -> tuple[float, float]:
    """(incremental, full) median ms of a trial's reads in a study with `recorded` trials."""
    import optuna

    from nnsearch.search.early_stopping import EpochHistory
    from nnsearch.search.live import StudyStatus
    from nnsearch.store.query import StudyReader
    from nnsearch.store.recording import record_trial
    from nnsearch.store.timings import LatencyQuery

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = Store(url)
    study = optuna.create_study(storage=url, study_name="bench", directions=["maximize", "minimize"])
    query = LatencyQuery("host-cpu", 64, 96, 1)
    try:
        for number in range(recorded):
            record_trial(store, "bench", number, trial_record(number))
        study.add_trials([optuna.trial.create_trial(values=[25.0, 5.0]) for _ in range(recorded)])
        reader = StudyReader(store, "bench", query)
        reader.results()  # a worker's first read is of the whole study
        incremental: list[float] = []
        full: list[float] = []
        for number in range(recorded, recorded + more):
            record_trial(store, "bench", number, trial_record(number))
            study.add_trial(optuna.trial.create_trial(values=[25.0, 5.0]))
            for times, make in ((incremental, lambda: reader), (full, lambda: StudyReader(store, "bench", query))):
                began = time.perf_counter()
                EpochHistory.of(make())
                StudyStatus.read(study, store, recorded + more, reader=make())
                times.append((time.perf_counter() - began) * 1000)
    finally:
        store.dispose()
    return statistics.median(incremental), statistics.median(full)


def overhead_line(folder: Path) -> str:
    figures: dict[str, float] = {}
    for recorded in (10, 1000):
        url = f"sqlite:///{folder / f'trials-{recorded}.db'}"
        figures[f"per_trial_ms_{recorded}"], figures[f"full_ms_{recorded}"] = per_trial_overhead(url, recorded)
    return "store: " + " ".join(
        f"{name}={value:.1f}" for name, value in sorted(figures.items(), key=lambda kv: kv[0].startswith("full"))
    )


def postgres_schema(admin_url: str) -> Iterator[str]:
    """A URL on a fresh schema of the server at `admin_url`, dropped afterwards."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def run_engine(name: str, make_url_: Callable[[], Iterator[str]], rows: int) -> None:
    try:
        for url in make_url_():
            print(measure(url, rows), flush=True)
    except Exception as exc:  # an unreachable server is a note, not a crash
        if name == "sqlite":
            raise
        print(f"store: engine={name} skipped: {str(exc).splitlines()[0]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 rows instead of 100,000")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL URL whose database may get a temporary schema")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    rows = args.rows or (10_000 if args.quick else 100_000)
    if not args.no_pg:
        run_engine("postgresql", lambda: postgres_schema(args.pg), rows)
    with tempfile.TemporaryDirectory() as tmp:
        run_engine("sqlite", lambda: iter([f"sqlite:///{Path(tmp) / 'bench.db'}"]), rows)
        print(overhead_line(Path(tmp)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
