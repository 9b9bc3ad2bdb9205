"""Does multi-fidelity search pay? A multi-fidelity and a single-fidelity study at equal compute, scored on real photos.

1. Train data: the real pairs of ../shared/data/real/polyu; every student is then
   evaluated at full resolution on every pair of ../shared/data/real/nam (never trained on).
2. Budget: LiteDenoiseNet's predicted latency (lookup table, host-cpu, 1 thread) at
   the benchmark's latency resolution; both studies search search_spaces/litedenoise.yaml
   within it (the guided sampler, neither seeded with the reference students). Every side
   trains on the clean targets only (alpha 0; `--alpha 0.9` distils from the `cpu` teacher
   trained on polyu): on a 2-core CPU the teacher's 8-way flip ensemble over every rung's
   batch plan costs more than the students' training, and the comparison is between two
   ways of spending the same training steps, the same for every side.
3. Multi-fidelity study: rungs (quick 40 -> 120 -> 360 steps, 12 candidates; full 120 ->
   360 -> 1080 on larger crops and batches, 18 candidates), reduction factor 3
   (`nnsearch search --rungs`). Both are sized to finish on a 2-core CPU (about 10 and 50
   minutes); `--rungs 240,720,2160 --candidates 27` starts at a study's default budget.
4. Single-fidelity study, same seed: every candidate trains the top rung's steps, and
   candidates are added until it has spent the multi-fidelity study's distillation steps.
5. LiteDenoiseNet trained apart at the top rung's budget by the same code path (a
   single-fidelity study of one trial that starts from the space's reference).
6. Each study's students that reached the top rung, and LiteDenoiseNet, are scored on nam.
   Hypervolume of each front (nam PSNR max, latency min) w.r.t. (noisy-input PSNR on nam,
   the latency budget); best nam PSNR within LiteDenoiseNet's latency.

    python benchmarks/multifidelity.py --quick    # 3 seeds; polyu <= 256 px, 32-48 px crops, batch 4, latency 272x480
    python benchmarks/multifidelity.py            # 2 seeds; polyu <= 512 px, 48-64 px crops, batch 8, latency 1088x1920

With several `--seeds` it prints each seed's figures and the spread. The last line reads
`multifidelity: hv_ratio=... best_within_budget_db=... single_best_within_budget_db=... litedenoise_db=...
compute_ratio=...` (means over seeds; hv_ratio = multi-fidelity HV / single-fidelity HV;
compute_ratio = distillation steps of the multi-fidelity study / the single-fidelity one's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnsearch.analysis.evaluate import NOISY, Method, evaluate_methods, model_method  # noqa: E402
from nnsearch.analysis.pareto import hypervolume, pareto  # noqa: E402
from nnsearch.latency.service import predict_latency  # noqa: E402
from nnsearch.model.space import load_space  # noqa: E402
from nnsearch.model.student import build_student  # noqa: E402
from nnsearch.search.multifidelity import RungSchedule  # noqa: E402
from nnsearch.search.study import LatencyConfig, Study, StudyConfig  # noqa: E402
from nnsearch.store.engine import Store  # noqa: E402
from nnsearch.train.datasets import load_data  # noqa: E402
from nnsearch.train.distill import DistillConfig  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "real"
START = time.perf_counter()
TRAINED = ("complete", "stopped", "failed")


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:5.0f} s] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="small crops, rungs 40,120,360, latency at 272x480 (see the docstring)"
    )
    parser.add_argument("--candidates", type=int, help="multi-fidelity candidates (default 12 quick, 18 full)")
    parser.add_argument("--seeds", type=int, help="seeds, each a pair of studies (default 3 quick, 2 full)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--rungs", help="cumulative steps per rung (default 40,120,360 quick, 120,360,1080 full)")
    parser.add_argument("--alpha", type=float, default=0.0, help="weight of the teacher term (default 0, see above)")
    parser.add_argument("--train", default=str(SHARED / "polyu"), help="training pairs (default polyu)")
    parser.add_argument("--eval", default=str(SHARED / "nam"), help="evaluation pairs (default nam)")
    parser.add_argument("--db", default=None, help="store (default: a temporary SQLite file)")
    args = parser.parse_args(argv)
    args.candidates = args.candidates or (12 if args.quick else 18)
    args.seeds = args.seeds or (3 if args.quick else 2)
    args.rungs = (
        tuple(int(v) for v in args.rungs.split(","))
        if args.rungs
        else (40, 120, 360)
        if args.quick
        else (120, 360, 1080)
    )
    args.max_side = 256 if args.quick else 512
    args.crops, args.batch = ((32, 48), 4) if args.quick else ((48, 64), 8)
    args.resolution = (272, 480) if args.quick else (1088, 1920)
    return args


@dataclass
class Scored:
    """One study's students at the top rung, scored on the evaluation pairs, and its compute."""

    name: str
    front: pd.DataFrame  # nn, nam_psnr, latency_ms of the non-dominated top-rung students within the budget
    students: int
    steps: int


def config(args: argparse.Namespace, name: str, seed: int, steps: int, budget: float | None, **extra) -> StudyConfig:
    """A study of the benchmark: real polyu pairs, the latency budget, no early stopping, predicted latency only."""
    height, width = args.resolution
    return StudyConfig.build(
        name,
        load_space("litedenoise"),
        data=args.train,
        max_side=args.max_side,
        seed=seed,
        teacher_steps=1200,
        distill=DistillConfig(steps=steps, epochs=2, batch=args.batch, crops=args.crops, alpha=args.alpha, seed=seed),
        latency=LatencyConfig(height=height, width=width, threads=1, measure=False),
        max_latency_ms=budget,
        early_stop=None,
        **extra,
    )


def steps_spent(study: Study) -> int:
    """Distillation steps the study's recorded trainings took (a repeated student trained once)."""
    rows = study.reader().rung_results()
    rows = rows[rows["state"].isin(TRAINED)].drop_duplicates(["nn", "rung"])
    rungs = study.config.rungs
    if rungs is None:
        return len(rows) * study.config.distill.steps
    return rungs.total_steps(rows["rung"].value_counts().to_dict())


def top_rung_models(study: Study) -> list[tuple[str, float, torch.nn.Module]]:
    """(nn, predicted latency, trained model) of every complete student at the study's top rung."""
    rows = study.reader().rung_results()
    top = study.config.rungs.top if study.config.rungs is not None else 0
    rows = rows[(rows["rung"] == top) & (rows["state"] == "complete")].drop_duplicates("nn")
    models: list[tuple[str, float, torch.nn.Module]] = []
    for row in rows.itertuples():
        params = study.optuna.trials[int(row.trial)].params
        student = build_student(study.config.space.sample(lambda name, _choices: params[name]))  # noqa: B023
        student.load_state_dict(study.recorder.weights(row.nn, row.prm))
        models.append((str(row.nn), float(row.latency_ms), student.eval()))
    return models


def score(name: str, study: Study, pairs, budget: float, noisy_db: float) -> Scored:
    models = top_rung_models(study)
    log(f"{name}: scoring {len(models)} top-rung students on {len(pairs)} evaluation pairs at full resolution")
    evaluation = evaluate_methods([model_method(nn, model) for nn, _, model in models], pairs, keep=0, verbose=False)
    psnr = evaluation.scores.groupby("method")["psnr"].mean()
    table = pd.DataFrame({"nn": [nn for nn, _, _ in models], "latency_ms": [ms for _, ms, _ in models]})
    table["nam_psnr"] = table["nn"].map(psnr)
    within = table["latency_ms"] <= budget * (1 + 1e-6)  # LiteDenoiseNet itself is at the budget
    front = pareto(table[within], {"nam_psnr": "max", "latency_ms": "min"})
    return Scored(name, front, len(models), steps_spent(study))


def volume(front: pd.DataFrame, noisy_db: float, budget: float) -> float:
    """Hypervolume of (nam PSNR, latency) points over the noisy input's PSNR, within the latency budget."""
    points = front[["nam_psnr", "latency_ms"]].to_numpy(float)
    return hypervolume(points, [noisy_db, budget], ["max", "min"])


def run_seed(
    args: argparse.Namespace, store: Store, data, pairs, seed: int, budget: float, noisy_db: float
) -> dict[str, float]:
    rungs = RungSchedule(args.rungs, 3)
    log(f"seed {seed}: multi-fidelity study, {args.candidates} candidates, rungs {rungs.steps}, eta 3")
    multi = Study(config(args, f"multi-{seed}", seed, rungs.steps[0], budget, rungs=rungs), store, data=data)
    multi.run(args.candidates)
    target = steps_spent(multi)
    log(
        f"seed {seed}: multi-fidelity study spent {target} steps; single-fidelity study at {rungs.steps[-1]} steps "
        "per candidate until it has spent as many"
    )
    single = Study(config(args, f"single-{seed}", seed, rungs.steps[-1], budget), store, data=data)
    trials = 0
    while trials == 0 or steps_spent(single) + rungs.steps[-1] / 2 <= target:  # the nearest number of trainings
        trials += 1
        single.run(trials)
    log(f"seed {seed}: LiteDenoiseNet at {rungs.steps[-1]} steps (the same code path: a one-trial study)")
    lite = Study(
        config(args, f"litedenoise-{seed}", seed, rungs.steps[-1], None, start_from_references=True), store, data=data
    )
    lite.run(1)
    scored = [
        score(name, study, pairs, budget, noisy_db)
        for name, study in (("multi-fidelity", multi), ("single-fidelity", single), ("LiteDenoiseNet", lite))
    ]
    for item in scored:
        shown = item.front.to_string(
            index=False, formatters={"nam_psnr": "{:.2f}".format, "latency_ms": "{:.1f}".format}
        )
        log(
            f"seed {seed} {item.name}: {item.students} top-rung students, {item.steps} steps, HV "
            f"{volume(item.front, noisy_db, budget):.4g}; front within the budget:\n{shown}"
        )
    mf, sf, ld = scored
    best = lambda s: float(s.front["nam_psnr"].max()) if len(s.front) else float("nan")  # noqa: E731
    figures = {
        "hv_ratio": volume(mf.front, noisy_db, budget) / volume(sf.front, noisy_db, budget),
        "best_within_budget_db": best(mf),
        "single_best_within_budget_db": best(sf),
        "litedenoise_db": float(ld.front["nam_psnr"].max()),
        "compute_ratio": mf.steps / sf.steps,
    }
    log(f"seed {seed}: " + " ".join(f"{k}={v:.3f}" for k, v in figures.items()))
    return figures


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data = load_data(args.train, max_side=args.max_side)
    real = load_data(args.eval)
    pairs = list(real.train + real.val)
    noisy = evaluate_methods([Method(NOISY, lambda image: image)], pairs, keep=0, verbose=False)
    noisy_db = float(noisy.scores["psnr"].mean())
    log(
        f"train {data.name}: {len(data.train)} train / {len(data.val)} val (max side {args.max_side}); evaluate on "
        f"{len(pairs)} {real.name} pairs (noisy input {noisy_db:.2f} dB); torch threads {torch.get_num_threads()}"
    )
    with tempfile.TemporaryDirectory(prefix="multifidelity-") as scratch:
        store = Store(args.db or f"sqlite:///{Path(scratch) / 'store.db'}")
        height, width = args.resolution
        lite = load_space("litedenoise").reference("LiteDenoiseNet")
        budget = predict_latency(store, lite, "host-cpu", height, width, threads=1)
        log(f"budget: LiteDenoiseNet predicted {budget:.1f} ms at {height}x{width} (host-cpu, 1 thread)")
        runs = [
            run_seed(args, store, data, pairs, seed, budget, noisy_db)
            for seed in range(args.first_seed, args.first_seed + args.seeds)
        ]
        store.dispose()
    means = {key: statistics.fmean(run[key] for run in runs) for key in runs[0]}
    if len(runs) > 1:
        log(
            "spread over seeds: "
            + " ".join(f"{k}={min(r[k] for r in runs):.3f}..{max(r[k] for r in runs):.3f}" for k in means)
        )
    print(
        "multifidelity: "
        + " ".join(f"{key}={value:.3f}" if "ratio" in key else f"{key}={value:.2f}" for key, value in means.items())
    )


if __name__ == "__main__":
    main()
