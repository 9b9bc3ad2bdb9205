"""The headline: do searched students denoise real photos at least as well as LiteDenoiseNet, as fast?

1. Train data: the real pairs of ../shared/data/real/polyu (its own split gives the
   validation pairs a study checks candidates on). The teacher is the `cpu` preset
   trained on them (cached), checked against the noisy input like any study's.
2. Budget: LiteDenoiseNet's (the reference point of search_spaces/litedenoise.yaml)
   predicted latency at 1088x1920 on this host (1 thread), from the lookup table.
3. A search study on litedenoise.yaml within that budget (alpha 0.9, the guided sampler),
   started from the space's reference (LiteDenoiseNet is its first trial), as a user
   improving on a hand design would run it.
4. LiteDenoiseNet: the study's own training of it (its trial 0), so both sides of
   `best_vs_litedenoise_db` come out of the same code path (a study's candidate).
5. The noise floor: LiteDenoiseNet and the best student trained again as a study's
   candidates with 2 more seeds (other initial weights, same data, teacher and batch plan);
   the floor is the largest spread of their Nam gain over the seeds. A margin counts only
   when it exceeds the floor (`*_exceeds_floor`).
6. The best student trained as a candidate with alpha 0 (no teacher), same budget: `kd_gain_db`.
7. Everything is evaluated at full resolution on every pair of ../shared/data/real/nam,
   which none of them trained on; the best student is exported (.onnx with dynamic
   height and width, .tflite) to results/benchmarks/real_quality/.

    python benchmarks/real_quality.py --quick   # polyu at <= 256 px, 8 trials x 600 steps, teacher 1200 steps
    python benchmarks/real_quality.py           # polyu at 512 px, 24 trials x 1200 steps

Writes results/benchmarks/real_quality/{scores.csv,summary.txt,crops.png} and the
exported student. The last line reads
`real_quality: best_gain_db=... litedenoise_gain_db=... best_vs_litedenoise_db=... best_latency_ratio=...
kd_gain_db=... teacher_gain_db=... noise_floor_db=... best_vs_litedenoise_exceeds_floor=... kd_gain_exceeds_floor=...`
(gains over the noisy input on the Nam pairs; the best student's and LiteDenoiseNet's are means over the seeds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnsearch.analysis.evaluate import (  # noqa: E402
    CLASSICAL,
    NOISY,
    Method,
    evaluate_methods,
    format_summary,
    model_method,
    nl_means,
    write_evaluation,
)
from nnsearch.analysis.fidelity import exceeds, noise_floor  # noqa: E402
from nnsearch.export.student import export_student  # noqa: E402
from nnsearch.latency.service import predict_latency  # noqa: E402
from nnsearch.model.arch import Arch  # noqa: E402
from nnsearch.model.space import load_space  # noqa: E402
from nnsearch.search.given_students import as_module, train_as_candidates  # noqa: E402
from nnsearch.search.study import LatencyConfig, Study, StudyConfig  # noqa: E402
from nnsearch.store.engine import Store  # noqa: E402
from nnsearch.store.stored_model import load_stored_model  # noqa: E402
from nnsearch.train.datasets import load_data  # noqa: E402
from nnsearch.train.distill import DistillConfig  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "real"
OUT = ROOT / "results" / "benchmarks" / "real_quality"
START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:5.0f} s] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="polyu at <= 256 px, 8 trials x 600 steps")
    parser.add_argument("--trials", type=int, help="search trials (default 8 quick, 24 full)")
    parser.add_argument("--steps", type=int, help="distillation steps per candidate (default 600 quick, 1200 full)")
    parser.add_argument("--train", default=str(SHARED / "polyu"), help="training pairs (default polyu)")
    parser.add_argument("--eval", default=str(SHARED / "nam"), help="evaluation pairs (default nam)")
    parser.add_argument("--teacher-steps", type=int, help="teacher training steps (default 1200 quick, the preset's)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the noise floor (default 3, at least 2)")
    parser.add_argument("--db", default=None, help="store (default: a temporary SQLite file)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.trials = args.trials or (8 if args.quick else 24)
    args.steps = args.steps or (600 if args.quick else 1200)
    args.max_side = 256 if args.quick else None
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 (the noise floor is a spread over seeds)")
    return args


def extra_seeds(args: argparse.Namespace) -> range:
    """The seeds trained beside the study (seed 0) for the noise floor."""
    return range(1, args.seeds)


def side_config(config: StudyConfig, name: str, seed: int, **distill) -> StudyConfig:
    """`config` for a study of named students: another seed (initial weights), the whole budget for each."""
    return replace(config, name=name).replace(
        seed=seed,
        distill=replace(config.distill, **distill),
        sampler="random",
        early_stop=None,
        max_latency_ms=None,
        start_from_references=False,
    )


def as_candidates(config: StudyConfig, archs: list[Arch], data, scratch: Path) -> dict[str, torch.nn.Module]:
    """`archs` trained as the candidates of study `config` in a store of their own; name -> trained module."""
    store = Store(f"sqlite:///{Path(scratch) / (config.name + '.db')}")
    try:
        train_as_candidates(config, store, archs, data=data, results_root=Path(scratch))
        return {arch.name: as_module(load_stored_model(store, arch.name)) for arch in archs}
    finally:
        store.dispose()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data = load_data(args.train, max_side=args.max_side)
    real = load_data(args.eval)
    real_pairs = list(real.train + real.val)
    log(
        f"train {data.name}: {len(data.train)} train / {len(data.val)} val (max side {args.max_side}); "
        f"evaluate on {len(real_pairs)} {real.name} pairs; torch threads {torch.get_num_threads()}"
    )
    with tempfile.TemporaryDirectory(prefix="real-quality-") as scratch:
        store = Store(args.db or f"sqlite:///{Path(scratch) / 'store.db'}")
        space = load_space("litedenoise")
        lite = space.reference("LiteDenoiseNet")
        budget = predict_latency(store, lite, "host-cpu", 1088, 1920, threads=1)
        log(f"budget: LiteDenoiseNet predicted {budget:.1f} ms at 1088x1920 (host-cpu, 1 thread)")
        distill_config = DistillConfig(steps=args.steps, epochs=2, batch=8, crops=(48, 64), alpha=0.9)
        config = StudyConfig.build(
            name="real-quality",
            space=space,
            data=args.train,
            max_side=args.max_side,
            teacher_steps=args.teacher_steps or (1200 if args.quick else None),  # quick: distill.py's
            distill=distill_config,
            max_latency_ms=budget,
            start_from_references=True,
            latency=LatencyConfig(height=1088, width=1920, threads=1, measure=False),
        )
        study = Study(config, store, data=data)
        study.run(args.trials)
        quality = study.optuna.user_attrs.get("teacher_psnr")
        rows = study.results()
        done = rows[(rows["state"] == "complete") & (rows["latency_ms"] <= budget)]
        if done.empty:
            raise SystemExit("real_quality: no student finished within the budget; run more --trials")
        best = done.sort_values("psnr", ascending=False).iloc[0]
        stored = load_stored_model(store, best["nn"])
        best_model = as_module(stored)
        lite_model = as_module(load_stored_model(store, lite.name))  # the study's own training of it: same path
        log(
            f"best student {best['nn']}: {stored.arch.describe()}, validation {best['psnr']:.2f} dB, "
            f"predicted {best['latency_ms']:.1f} ms (teacher validation {quality:.2f} dB)"
            + (" = LiteDenoiseNet" if best["nn"] == lite.name else "")
        )

        seeded = [lite] + ([stored.arch] if best["nn"] != lite.name else [])
        runs = {0: {lite.name: lite_model, best["nn"]: best_model}}
        for seed in extra_seeds(args):
            log(f"noise floor: seed {seed}, {len(seeded)} students as a study's candidates")
            runs[seed] = as_candidates(
                side_config(config, f"real-quality-seed{seed}", 1000 * seed), seeded, data, Path(scratch)
            )
        log("kd: the best student as a candidate with alpha 0 (no teacher), same budget")
        plain = as_candidates(
            side_config(config, "real-quality-alpha0", 0, alpha=0.0), [stored.arch], data, Path(scratch)
        )[best["nn"]]
        teacher = targets_teacher(study)

        methods = [
            Method(NOISY, lambda noisy: noisy),
            model_method(f"best {best['nn']}", best_model),
            model_method("LiteDenoiseNet", lite_model),
            model_method("best, alpha 0", plain),
            model_method("teacher", teacher),
            Method(CLASSICAL, nl_means),
        ]
        methods += [
            model_method(f"seed {seed} {nn}", model)
            for seed, models in runs.items()
            if seed
            for nn, model in models.items()
        ]
        evaluation = evaluate_methods(methods, real_pairs)
        write_evaluation(evaluation, args.out)
        print(format_summary(evaluation))
        export = export_student(best["nn"], args.out, db=store, resolution=(256, 256))
        log(export.line())
        store.dispose()

    gain = evaluation.gain
    spreads, means = {}, {}
    for arch in seeded:
        name = f"best {best['nn']}" if arch.name == best["nn"] else "LiteDenoiseNet"
        gains = [gain(name)] + [gain(f"seed {seed} {arch.name}") for seed in extra_seeds(args)]
        spreads[arch.describe()] = gains
        means[name] = statistics.fmean(gains)
        print(
            f"noise floor: {arch.describe()} Nam gain over {len(gains)} seeds "
            + " ".join(f"{g:+.2f}" for g in gains)
            + f" dB (mean {means[name]:+.2f}), spread {max(gains) - min(gains):.2f} dB"
        )
    floor = noise_floor(spreads)
    best_gain, lite_gain = means[f"best {best['nn']}"], means["LiteDenoiseNet"]
    kd = best_gain - gain("best, alpha 0")
    beats = exceeds(best_gain - lite_gain, floor)
    print(
        f"noise floor {floor:.2f} dB: best vs LiteDenoiseNet {best_gain - lite_gain:+.2f} dB over the seeds' means "
        f"({'exceeds' if beats else 'within'} the floor), kd gain {kd:+.2f} dB "
        f"({'exceeds' if exceeds(kd, floor) else 'within'} the floor)"
    )
    print(
        f"real_quality: best_gain_db={best_gain:.2f} litedenoise_gain_db={lite_gain:.2f} "
        f"best_vs_litedenoise_db={best_gain - lite_gain:.2f} best_latency_ratio={best['latency_ms'] / budget:.2f} "
        f"kd_gain_db={kd:.2f} teacher_gain_db={gain('teacher'):.2f} noise_floor_db={floor:.2f} "
        f"best_vs_litedenoise_exceeds_floor={'yes' if beats else 'no'} "
        f"kd_gain_exceeds_floor={'yes' if exceeds(kd, floor) else 'no'}"
    )


def targets_teacher(study: Study) -> torch.nn.Module:
    """The study's (checked, cached) teacher module."""
    from nnsearch.train.teacher_check import load_teacher

    return load_teacher(study.config.teacher.source, study.data, device="cpu", verbose=False).module


if __name__ == "__main__":
    main()
