"""Does a study's brief distillation rank students the way a long training does?

1. Students: a fixed list of search_spaces/litedenoise.yaml students spanning the latency
   range up to LiteDenoiseNet's (LiteDenoiseNet among them); latency is the lookup-table
   prediction at 1088x1920 on host-cpu (1 thread), as a study sees it.
2. Brief: every student trained as a study's candidate (nnsearch.search.given_students:
   a study whose trials are these students) at the study's default per-candidate budget
   (DistillConfig: 240 steps, crops 48->64, batch 8), on the real pairs of
   ../shared/data/real/polyu.
3. Long: every student continued from its own weights as `nnsearch train` does
   (nnsearch.train.final_training, new cosine schedule, larger crops) to `--multiple` times
   the brief budget in all.
4. Both are evaluated at full resolution on ../shared/data/real/nam (never trained on).
5. Noise floor: LiteDenoiseNet and one small student are also trained with 2 more seeds
   (other initial weights; in full mode other batch plans too) at both budgets; the floor is
   the largest spread (max - min) of nam PSNR over the seeds of one architecture.

    python benchmarks/fidelity.py --quick --threads 1   # 12 students, 5 nam pairs, polyu <= 256 px
    python benchmarks/fidelity.py --threads 1           # 20 students, all 25 nam pairs, polyu at full size

Both train without the teacher (alpha 0; `--alpha 0.9` distils from the `cpu` teacher trained
on polyu): on a 2-core CPU the teacher's 8-way flip ensemble costs about 3.6x a LiteDenoiseNet
training step per pixel, more than all the students together, and the question (does the
brief order hold?) is about the budget, the same with or without the teacher term. Writes results/benchmarks/fidelity/{fidelity.csv,fidelity.png}. Last line:
`fidelity: n=... kendall_tau=... spearman=... top3_overlap=... regret_db=... brief_steps=... long_steps=...
noise_floor_brief_db=... noise_floor_long_db=...`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnsearch.analysis.evaluate import evaluate_methods, model_method  # noqa: E402
from nnsearch.analysis.fidelity import exceeds, noise_floor, rank_agreement, regret_db  # noqa: E402
from nnsearch.model.arch import Arch  # noqa: E402
from nnsearch.model.space import load_space  # noqa: E402
from nnsearch.search.config import LatencyConfig, StudyConfig  # noqa: E402
from nnsearch.search.given_students import as_module, train_as_candidates, train_further  # noqa: E402
from nnsearch.store.engine import Store  # noqa: E402
from nnsearch.train.datasets import load_data  # noqa: E402
from nnsearch.train.distill import DistillConfig  # noqa: E402
from nnsearch.train.final_training import with_defaults  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "real"
OUT = ROOT / "results" / "benchmarks" / "fidelity"
START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:6.0f} s] {message}", flush=True)


def student(widths: str, blocks: str, skips: str, block: str = "residual", downsample: str = "conv") -> Arch:
    """A litedenoise student from compact text, e.g. student('8-16-32', '000', 'add/add', 'plain')."""
    return Arch(
        widths=tuple(int(w) for w in widths.split("-")),
        blocks=tuple(int(b) for b in blocks),
        skips=tuple(skips.split("/")),
        block=block,
        downsample=downsample,
    )


#: The small student trained with several seeds (with LiteDenoiseNet) for the noise floor.
SMALL = student("12-24-48", "000", "add/add", "plain")
#: Students, cheapest first (MACs at 1088x1920 from 6% to 89% of LiteDenoiseNet's); --quick takes the first 11.
STUDENTS = (
    student("8-16-32", "000", "none/none", "plain", "maxpool"),
    student("8-16-32-64", "0000", "add/add/add", "plain"),
    student("8-16-32-64-128", "00000", "add/add/add/add", "plain"),
    SMALL,
    student("12-24-48-96", "0000", "concat/add/add", "plain"),
    student("8-16-32-64-128", "01111", "add/add/add/add"),
    student("12-24-48-96", "0101", "concat/add/add", "residual", "maxpool"),
    student("12-24-48-96-192", "00011", "concat/add/add/add"),
    student("12-24-48-96-192", "00111", "concat/concat/add/add"),
    student("16-24-48-96-192", "11111", "concat/concat/concat/concat"),
    student("16-32-64-128-256", "11111", "add/add/add/add", "residual", "maxpool"),
    # full mode only
    student("16-32-64", "010", "concat/concat"),
    student("8-16-32-64", "1111", "concat/concat/concat"),
    student("16-32-64-128", "0000", "concat/concat/concat", "plain"),
    student("16-32-64", "111", "add/add"),
    student("12-24-48-96-192", "11111", "add/add/add/add", "plain"),
    student("16-32-64-128", "1111", "concat/concat/concat"),
    student("16-32-64-128-256", "00000", "concat/concat/concat/concat", "plain"),
    student("24-48-96", "100", "concat/concat"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="12 students, 5 nam pairs, polyu <= 256 px")
    parser.add_argument("--students", type=int, help="students incl. LiteDenoiseNet (default 12 quick, 20 full)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the noise-floor students (default 3)")
    parser.add_argument("--brief-steps", type=int, help="brief budget (default: a study's, DistillConfig's steps)")
    parser.add_argument("--multiple", type=int, default=8, help="long budget / brief budget in steps (default 8)")
    parser.add_argument("--long-crops", default="48,64,96", help="crops of the continuation (default 48,64,96)")
    parser.add_argument("--alpha", type=float, default=0.0, help="weight of the teacher term (default 0, see above)")
    parser.add_argument(
        "--vary-plan",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="seeds also change the batch plan, not only the initial weights (default: full mode)",
    )
    parser.add_argument("--eval-pairs", type=int, help="nam pairs evaluated at full resolution (default 5 quick, all)")
    parser.add_argument("--threads", type=int, help="torch threads (default torch's; 1 on a busy machine)")
    parser.add_argument("--train", default=str(SHARED / "polyu"), help="training pairs (default polyu)")
    parser.add_argument("--eval", default=str(SHARED / "nam"), help="evaluation pairs (default nam)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.students = args.students or (12 if args.quick else len(STUDENTS) + 1)
    if not 3 <= args.students <= len(STUDENTS) + 1:
        parser.error(f"--students must be between 3 and {len(STUDENTS) + 1}")
    if args.multiple < 2 or args.seeds < 2:
        parser.error("--multiple and --seeds must be at least 2")
    args.long_crops = tuple(int(c) for c in args.long_crops.split(","))
    args.vary_plan = (not args.quick) if args.vary_plan is None else args.vary_plan
    args.max_side = 256 if args.quick else None
    args.eval_pairs = args.eval_pairs or (5 if args.quick else None)
    return args


@dataclass(frozen=True)
class Run:
    """One architecture trained with one seed: brief, then long."""

    arch: Arch
    seed: int
    label: str


def evenly(items: list, count: int | None) -> list:
    """`count` items spread evenly over `items` (all when None or too many)."""
    if count is None or count >= len(items):
        return items
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)] if count > 1 else items[:1]


def nam_psnr(models: dict[str, torch.nn.Module], pairs: list) -> dict[str, float]:
    """Mean full-resolution PSNR of each model on `pairs`."""
    evaluation = evaluate_methods(
        [model_method(name, model) for name, model in models.items()], pairs, keep=0, verbose=False
    )
    return evaluation.scores.groupby("method")["psnr"].mean().to_dict()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    space = load_space("litedenoise")
    lite = replace(space.reference("LiteDenoiseNet"), label=None)
    archs = list(STUDENTS[: args.students - 1]) + [lite]
    archs = archs if SMALL in archs else [SMALL] + archs[1:]  # the noise-floor student is always one of them
    runs = [Run(arch, 0, arch.describe()) for arch in archs]
    runs += [Run(arch, seed, arch.describe()) for arch in (SMALL, lite) for seed in range(1, args.seeds)]
    data = load_data(args.train, max_side=args.max_side)
    real = load_data(args.eval)
    pairs = evenly(sorted(real.train + real.val, key=lambda p: p.name), args.eval_pairs)
    brief = DistillConfig(alpha=args.alpha)  # the study's default per-candidate budget
    brief = replace(brief, steps=args.brief_steps) if args.brief_steps else brief
    long_steps = args.multiple * brief.steps
    log(
        f"train {data.name}: {len(data.train)} train / {len(data.val)} val (max side {args.max_side}); evaluate on "
        f"{len(pairs)} {real.name} pairs at full resolution; {len(archs)} students, {args.seeds} seeds of "
        f"{SMALL.describe()} and LiteDenoiseNet ({'initial weights and batch plan' if args.vary_plan else 'initial weights'}"
        f"); brief {brief.steps} steps crops {list(brief.crops)}, long {long_steps} steps in all (continued "
        f"{long_steps - brief.steps} steps, crops {list(args.long_crops)}); alpha {args.alpha}; "
        f"torch threads {torch.get_num_threads()}"
    )
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="fidelity-") as scratch:
        stores = {}
        for seed in range(args.seeds):
            stores[seed] = Store(f"sqlite:///{Path(scratch) / f'seed{seed}.db'}")
            chosen = [r.arch for r in runs if r.seed == seed]
            log(f"brief: seed {seed}, {len(chosen)} students as a study's candidates")
            plan_seed = seed if args.vary_plan else 0
            config = StudyConfig.build(
                name=f"fidelity-seed{seed}",
                space=space,
                data=args.train,
                max_side=args.max_side,
                distill=replace(brief, seed=plan_seed),
                seed=seed,
                sampler="random",
                early_stop=None,
                latency=LatencyConfig(height=1088, width=1920, threads=1, measure=False),
            )
            results = train_as_candidates(config, stores[seed], chosen, data=data, results_root=Path(scratch))
            for run in (r for r in runs if r.seed == seed):
                row = results[results["nn"] == run.arch.name].iloc[0]
                rows.append(
                    {
                        "nn": run.arch.name,
                        "student": run.label,
                        "seed": seed,
                        "reference": run.arch == lite,
                        "macs_g": row["macs"] / 1e9,
                        "params": int(row["params"]),
                        "latency_ms": row["latency_ms"],
                        "brief_val_psnr": row["psnr"],
                    }
                )
        table = pd.DataFrame(rows)
        log("brief: evaluating on nam")
        brief_models = {f"{r.nn}/{r.seed}": as_module(_stored(stores[r.seed], r.nn)) for r in table.itertuples()}
        scores = nam_psnr(brief_models, pairs)
        table["brief_nam_psnr"] = [scores[f"{r.nn}/{r.seed}"] for r in table.itertuples()]
        table["long_val_psnr"], table["long_nam_psnr"] = np.nan, np.nan
        order = table.sort_values(["macs_g", "seed"]).index
        for done, index in enumerate(order, 1):
            r = table.loc[index]
            plan_seed = int(r["seed"]) if args.vary_plan else 0
            plan = with_defaults(replace(brief, seed=plan_seed), long_steps - brief.steps, args.long_crops, None)
            log(
                f"long {done}/{len(order)}: {r['student']} seed {r['seed']} ({r['macs_g']:.1f} GMAC), "
                f"{plan.steps} more steps"
            )
            stored = train_further(
                stores[r["seed"]],
                r["nn"],
                plan,
                data=data,
                data_spec=args.train,
                max_side=args.max_side,
                verbose=True,
                resume=False,
            )
            table.loc[index, "long_nam_psnr"] = nam_psnr({"m": as_module(stored)}, pairs)["m"]
            table.loc[index, "long_val_psnr"] = _final_psnr(stores[r["seed"]], r["nn"], stored.prm_uid)
            log(
                f"long {done}/{len(order)}: nam {table.loc[index, 'brief_nam_psnr']:.2f} dB after {brief.steps} "
                f"steps -> {table.loc[index, 'long_nam_psnr']:.2f} dB after {long_steps}"
            )
            _write_csv(table, args.out)
        for store in stores.values():
            store.dispose()
    report(table, args, brief.steps, long_steps)


def _stored(store: Store, nn: str):
    from nnsearch.store.stored_model import load_stored_model

    return load_stored_model(store, nn)


def _final_psnr(store: Store, nn: str, prm: str) -> float:
    """Validation PSNR of the last epoch of `nn` under hyperparameter set `prm`."""
    from sqlalchemy import select

    from nnsearch.store.schema import Stat

    with store.read() as connection:
        rows = connection.execute(
            select(Stat.epoch, Stat.accuracy).where(Stat.nn == nn, Stat.prm == prm, Stat.metric == "psnr")
        ).all()
    return float(max(rows)[1]) if rows else float("nan")


def _write_csv(table: pd.DataFrame, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "fidelity.csv"
    table.to_csv(path, index=False, float_format="%.4f")
    return path


def report(table: pd.DataFrame, args: argparse.Namespace, brief_steps: int, long_steps: int) -> None:
    """Print the per-student table, the rank agreement, the regret and the noise floor; write CSV and PNG."""
    main_runs = table[table["seed"] == 0].sort_values("latency_ms").reset_index(drop=True)
    lite = main_runs[main_runs["reference"]].iloc[0]
    print(
        main_runs[["student", "latency_ms", "macs_g", "brief_val_psnr", "brief_nam_psnr", "long_nam_psnr"]].to_string(
            index=False, float_format="%.2f"
        )
    )
    eligible = (main_runs["latency_ms"] <= lite["latency_ms"]).to_numpy()
    agreement = rank_agreement(main_runs["brief_nam_psnr"], main_runs["long_nam_psnr"])
    regret = regret_db(main_runs["brief_nam_psnr"], main_runs["long_nam_psnr"], eligible)
    study_view = rank_agreement(main_runs["brief_val_psnr"], main_runs["long_nam_psnr"])
    study_regret = regret_db(main_runs["brief_val_psnr"], main_runs["long_nam_psnr"], eligible)
    floors = {}
    for budget in ("brief", "long"):
        seeded = {
            name: group[f"{budget}_nam_psnr"].tolist() for name, group in table.groupby("student") if len(group) > 1
        }
        for name, values in seeded.items():
            print(
                f"noise floor, {budget} ({len(values)} seeds) {name}: nam PSNR {min(values):.2f}..{max(values):.2f} "
                f"dB, spread {max(values) - min(values):.3f} dB, std {np.std(values, ddof=1):.3f} dB"
            )
        floors[budget] = noise_floor(seeded)
    best_long = main_runs.loc[main_runs[eligible]["long_nam_psnr"].idxmax()]
    print(f"rank agreement, brief nam vs long nam: {agreement.line()}")
    print(f"rank agreement, brief validation (what the study ranks by) vs long nam: {study_view.line()}")
    print(
        f"regret within LiteDenoiseNet's latency ({lite['latency_ms']:.1f} ms, {int(eligible.sum())} students): "
        f"choosing by brief nam PSNR loses {regret:.3f} dB, by brief validation PSNR {study_regret:.3f} dB; "
        f"noise floor at the long budget {floors['long']:.3f} dB (regret exceeds it: "
        f"{exceeds(regret, floors['long'])})"
    )
    margin = best_long["long_nam_psnr"] - lite["long_nam_psnr"]
    print(
        f"best at the long budget within the latency: {best_long['student']} {best_long['long_nam_psnr']:.2f} dB, "
        f"{margin:+.3f} dB vs LiteDenoiseNet (exceeds the floor: {exceeds(margin, floors['long'])})"
    )
    csv_path = _write_csv(table, args.out)
    png_path = plot(table, args.out / "fidelity.png", brief_steps, long_steps)
    log(f"wrote {csv_path} and {png_path}")
    print(
        f"fidelity: n={agreement.n} kendall_tau={agreement.kendall_tau:.3f} spearman={agreement.spearman:.3f} "
        f"top3_overlap={agreement.top_overlap} regret_db={regret:.3f} brief_steps={brief_steps} "
        f"long_steps={long_steps} noise_floor_brief_db={floors['brief']:.3f} noise_floor_long_db={floors['long']:.3f}"
    )


def plot(table: pd.DataFrame, path: Path, brief_steps: int, long_steps: int) -> Path:
    """Brief vs long nam PSNR, one point per architecture (seed mean, bars: min..max over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    for _, group in table.groupby("student", sort=False):
        x, y = group["brief_nam_psnr"], group["long_nam_psnr"]
        xerr = [[x.mean() - x.min()], [x.max() - x.mean()]]
        yerr = [[y.mean() - y.min()], [y.max() - y.mean()]]
        reference = bool(group["reference"].iloc[0])
        ax.errorbar(
            x.mean(),
            y.mean(),
            xerr=xerr,
            yerr=yerr,
            fmt="*" if reference else "o",
            capsize=3,
            markersize=12 if reference else 6,
            color="crimson" if reference else "tab:blue",
        )
        ax.annotate(
            "LiteDenoiseNet" if reference else f"{group['latency_ms'].iloc[0]:.0f} ms",
            (x.mean(), y.mean()),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xlabel(f"nam PSNR after {brief_steps} steps (a study's candidate), dB")
    ax.set_ylabel(f"nam PSNR after {long_steps} steps (continued as nnsearch train), dB")
    ax.set_title("Brief vs long training (labels: predicted latency at 1088x1920)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
