"""How quickly do the samplers find good students? Guided, TPE, NSGA-II and random replayed on a recorded study.

The benchmark first builds (or reuses) a recorded study of distinct students
of search_spaces/litedenoise.yaml, sampled at random through the public study
API at a cheap fidelity: one epoch of a few distillation steps on small crops
of the built-in data (images at most `max_side` px), latency predicted from
this host's per-layer lookup table at 272x480 (no whole-model timing). The
store is an SQLite file under results/benchmarks/, so a second run reuses it.
Its lookup table is then filled for every layer the space can have (the guided
sampler, like in a search, predicts each proposal's latency from it).
Then `nnsearch.replay.compare` runs each sampler of `nnsearch.search.samplers.SAMPLERS` for
several seeds with the same number of trials against that table and compares
the hypervolume of the (PSNR, latency) fronts they find. An unrecorded
proposal gets the nearest recorded student that no other proposal of the run
got (neighbour rule "distinct", see nnsearch/replay.py); the default sampler
and random are then replayed once more under rule "nearest" (the nearest
student, even if already given out), printed for comparison.

    python benchmarks/search_efficiency.py --quick   # 200 students, 8 steps at 32 px, 10 seeds x 100 trials
    python benchmarks/search_efficiency.py           # 300 students, 24 steps at 32-48 px, 20 seeds x 150 trials
    python benchmarks/search_efficiency.py --table-seed 1   # another random sample of students (its own study)

Writes runs.csv, summary.csv and hypervolume.png to
results/benchmarks/search_efficiency[_quick][_seedK]/. The last line reads
`search_efficiency: hv_ratio_default_vs_random=... trials_to_random_final=...`:
the default sampler's mean final hypervolume over random's, and the fraction
of the trials after which the default sampler's mean curve first reaches
random's mean final hypervolume (inf if it never does).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnsearch.common.progress import progress  # noqa: E402
from nnsearch.latency.service import fill_space_table  # noqa: E402
from nnsearch.model.space import load_space  # noqa: E402
from nnsearch.replay.compare import ReplayResult, replay, write_outputs  # noqa: E402
from nnsearch.replay.table import ReplayTable  # noqa: E402
from nnsearch.search.config import SamplerConfig  # noqa: E402
from nnsearch.search.study import LatencyConfig, Study, StudyConfig  # noqa: E402
from nnsearch.store.engine import Store  # noqa: E402
from nnsearch.store.query import study_results  # noqa: E402
from nnsearch.train.distill import DistillConfig  # noqa: E402

START = time.perf_counter()
SAMPLERS = ("guided", "tpe", "nsga2", "random")
DEFAULT_SAMPLER = SamplerConfig().name  # a study's default sampler (StudyConfig.sampler)
LATENCY = LatencyConfig(height=272, width=480, measure=False)


@dataclass(frozen=True)
class Fidelity:
    """How the recorded study is built and how it is replayed."""

    study: str
    candidates: int
    steps: int
    crops: tuple[int, ...]
    max_side: int
    teacher_steps: int | None
    trials: int
    seeds: int
    batch: int = 4
    seed: int = 0  # another seed records another random sample of students (study name gets "-seed{N}")

    @property
    def name(self) -> str:
        return self.study if self.seed == 0 else f"{self.study}-seed{self.seed}"

    def config(self) -> StudyConfig:
        return StudyConfig.build(
            name=self.name,
            space=load_space("litedenoise"),
            sampler="random",
            seed=self.seed,
            distill=DistillConfig(steps=self.steps, epochs=1, batch=self.batch, crops=self.crops),
            latency=LATENCY,
            max_side=self.max_side,
            teacher_steps=self.teacher_steps,
            early_stop=None,  # a tabular benchmark needs every student's final value
            teacher_margin_db=-math.inf,  # samplers are compared on a fixed table; teacher quality does not matter
        )

    def describe(self) -> str:
        return (
            f"{self.candidates} random students of litedenoise, 1 epoch of {self.steps} distillation steps "
            f"(batch {self.batch}, crops {'-'.join(map(str, self.crops))} px) on the built-in data at <= "
            f"{self.max_side} px, teacher {self.teacher_steps or 'default'} steps, latency predicted from the "
            f"lookup table at {LATENCY.height}x{LATENCY.width}"
        )


QUICK = Fidelity(
    "search-efficiency-quick",
    candidates=200,
    steps=8,
    crops=(32,),
    max_side=96,
    teacher_steps=100,
    trials=100,
    seeds=10,
)
FULL = Fidelity(
    "search-efficiency",
    candidates=300,
    steps=24,
    crops=(32, 48),
    max_side=128,
    teacher_steps=None,
    trials=150,
    seeds=20,
)


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:6.0f} s] {message}", flush=True)


def recorded_candidates(store: Store, study: str) -> int:
    """Distinct students of `study` with a final PSNR and a latency."""
    rows = study_results(store, study, device=LATENCY.device)
    done = rows[rows["state"] == "complete"].dropna(subset=["psnr", "latency_ms"])
    return int(done["nn"].nunique())


def build(store: Store, fidelity: Fidelity, max_rounds: int = 3) -> None:
    """Record trials until the study has `fidelity.candidates` distinct students (repeats and failures add trials)."""
    have = recorded_candidates(store, fidelity.name)
    if have >= fidelity.candidates:
        log(f"reusing study '{fidelity.name}': {have} recorded students")
        return
    log(f"recording {fidelity.candidates - have} more students into study '{fidelity.name}' ({have} so far)")
    study = Study(fidelity.config(), store, verbose=False)
    began, added = time.perf_counter(), 0
    for _ in range(max_rounds):
        missing = fidelity.candidates - recorded_candidates(store, fidelity.name)
        if missing <= 0:
            break
        for _ in progress(range(missing), desc="recording students"):
            study.run(study.counts().finished + 1)  # one more trial
            added += 1
    have = recorded_candidates(store, fidelity.name)
    if have < fidelity.candidates:
        raise SystemExit(f"only {have} distinct students after {max_rounds} rounds; see the study's failed trials")
    log(
        f"recorded {added} trials in {time.perf_counter() - began:.0f} s "
        f"({(time.perf_counter() - began) / max(added, 1):.1f} s per trial, lookup-table probes included)"
    )


def parse_args(argv: list[str] | None = None) -> tuple[Fidelity, Path, Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, cheaper students and fewer seeds")
    parser.add_argument(
        "--db",
        type=Path,
        default=ROOT / "results" / "benchmarks" / "search_efficiency.db",
        help="SQLite file of the recorded studies (default %(default)s)",
    )
    parser.add_argument("--trials", type=int, help="trials per replay run (default 100 quick, 150 full)")
    parser.add_argument("--seeds", type=int, help="replay runs per sampler (default 10 quick, 20 full)")
    parser.add_argument(
        "--table-seed",
        type=int,
        default=0,
        help="seed of the recorded study: another seed records another random sample of students "
        "into its own study (default %(default)s)",
    )
    args = parser.parse_args(argv)
    fidelity = QUICK if args.quick else FULL
    overrides = {k: v for k, v in (("trials", args.trials), ("seeds", args.seeds)) if v is not None}
    fidelity = dataclasses.replace(fidelity, seed=args.table_seed, **overrides)
    folder = "search_efficiency_quick" if args.quick else "search_efficiency"
    out = ROOT / "results" / "benchmarks" / (folder if args.table_seed == 0 else f"{folder}_seed{args.table_seed}")
    return fidelity, args.db, out


def main(argv: list[str] | None = None) -> None:
    fidelity, db, out = parse_args(argv)
    db.parent.mkdir(parents=True, exist_ok=True)
    log(f"fidelity: {fidelity.describe()}")
    store = Store(f"sqlite:///{db.resolve()}")
    try:
        build(store, fidelity)
        began = time.perf_counter()
        measured, total = fill_space_table(
            store, fidelity.config().space, LATENCY.height, LATENCY.width, LATENCY.threads
        )
        log(
            f"lookup table: {total} layer keys of the space at {LATENCY.height}x{LATENCY.width}, {measured} measured "
            f"now ({time.perf_counter() - began:.0f} s); the guided sampler predicts every proposal from it"
        )
        table = ReplayTable.load(store, fidelity.name, device=LATENCY.device)
    finally:
        store.dispose()
    log(f"table: {len(table)} students; space read from the {table.space.source}")
    result = replay(table, SAMPLERS, trials=fidelity.trials, seeds=fidelity.seeds)
    log(
        "reference point: "
        + ", ".join(f"{c}={v:.5g}" for c, v in result.reference.items())
        + f"; hypervolume of the whole table {result.table_volume:.6g}"
    )
    print(f"{result.trials} trials x {fidelity.seeds} seeds per sampler, mean +- std over seeds:")
    print(result.table_text())
    random_final = float(result.at_fraction("random", 1.0).mean())
    print(f"neighbour rule '{result.rule}' (see nnsearch/replay.py)")
    for sampler in SAMPLERS:
        print(
            f"{sampler}: reaches random's mean final hypervolume ({random_final:.6g}) after "
            f"{result.trials_to_reach(sampler, random_final):.2f} of the trials"
        )
    for path in write_outputs(result, out):
        log(f"wrote {path.relative_to(ROOT)}")
    compare_nearest_rule(table, fidelity, result.reference)
    ratio, needed = verdict(result)
    log(f"done (default sampler: {DEFAULT_SAMPLER}, neighbour rule '{result.rule}')")
    print(f"search_efficiency: hv_ratio_default_vs_random={ratio:.2f} trials_to_random_final={needed:.2f}")


def verdict(result: ReplayResult) -> tuple[float, float]:
    """(default sampler's mean final hypervolume / random's, fraction of trials it needs to reach random's)."""
    random_final = float(result.at_fraction("random", 1.0).mean())
    default_final = float(result.at_fraction(DEFAULT_SAMPLER, 1.0).mean())
    ratio = default_final / random_final if random_final > 0 else float("nan")
    return ratio, result.trials_to_reach(DEFAULT_SAMPLER, random_final)


def compare_nearest_rule(table: ReplayTable, fidelity: Fidelity, reference: dict[str, float]) -> None:
    """The default sampler and random again under the "nearest" neighbour rule, for comparison."""
    result = replay(
        table,
        (DEFAULT_SAMPLER, "random"),
        trials=fidelity.trials,
        seeds=fidelity.seeds,
        reference=reference,
        rule="nearest",
        verbose=False,
    )
    print(
        "for comparison, neighbour rule 'nearest' (a proposal gets the nearest recorded student even if "
        "other proposals got it):"
    )
    print(result.table_text())
    ratio, needed = verdict(result)
    print(f"rule 'nearest': hv_ratio_default_vs_random={ratio:.2f} trials_to_random_final={needed:.2f}")


if __name__ == "__main__":
    main()
