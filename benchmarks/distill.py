"""Does distillation help, and what does the teacher-output cache save per candidate?

A student representative of search candidates (the `tiny-unet` reference of
search_spaces/tiny.yaml, the space of `nnsearch demo`) is distilled from the
`cpu` teacher preset (391k parameters, 17x the student) trained for longer
than the preset's 400 steps, so that the teacher is clearly better than any
student of that budget. Training data are the real noisy/clean pairs of PolyU
(../shared/data/real/polyu: 50 pairs, 5 camera models, ISO 800-12800; its own
38/12 split gives the validation images the students are checked on while
training); every model is evaluated on the 25 real pairs of Nam et al.
(../shared/data/real/nam, full 512x512, other scenes and other shots), which
none of them saw. `--train clean:PATH` trains on clean photos with synthetic
camera noise instead.

For each of 3 seeds (seed = crop plan and student initialisation):
  (a) alpha = 0.9 vs alpha = 0 (no teacher): `kd_gain_db` = mean PSNR gain on the Nam pairs;
  (b) time per candidate (targets + distillation + its validation, as in a study,
      without the TFLite latency step) when the candidate runs the teacher over
      its batches itself (cache=False) vs when the outputs come from the cache,
      measured one after the other for the same seed; `cache_speedup` = uncached /
      cached. The uncached candidate's outputs are written to a temporary cache
      (what the first candidate of a study does), which the cached one loads; the
      two students must come out bit-identical;
  (c) teacher, student (alpha 0.9, mean over seeds) and noisy-input PSNR on the Nam pairs.

    python benchmarks/distill.py --quick    # polyu at <= 256 px, 600 student steps, teacher 1200 steps
    python benchmarks/distill.py            # polyu at 512 px, 1200 student steps, teacher 3000 steps

The teacher is trained on first use and cached in $NNSEARCH_CACHE/teachers
(`nnsearch teacher train --data ../shared/data/real/polyu --max-side 256
--steps 1200` builds the quick one ahead). Figures and timings:
docs/benchmarks/distill.md.

Writes results/benchmarks/distill.csv (per-seed figures) and distill.png (PSNR
per seed, alpha 0.9 vs 0, with teacher and noisy input). The last line reads
`distill: kd_gain_db=... cache_speedup=... teacher_db=... student_db=... noisy_db=...`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnsearch.model.space import load_space  # noqa: E402
from nnsearch.model.student import build_student  # noqa: E402
from nnsearch.train.crops import BatchPlan  # noqa: E402
from nnsearch.train.datasets import DenoiseData, ImagePair, Pair, load_data  # noqa: E402
from nnsearch.train.datasets.streaming import StreamedPair  # noqa: E402
from nnsearch.train.distill import DistillConfig, TeacherTargets, distill  # noqa: E402
from nnsearch.train.metrics import mean_quality, psnr  # noqa: E402
from nnsearch.train.teacher import load_or_train_teacher, teacher_config  # noqa: E402
from nnsearch.train.teacher_outputs import outputs_key, outputs_path, save_outputs  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
START = time.perf_counter()


@dataclass
class Settings:
    train: list[str]
    real: list[str]
    max_side: int | None
    teacher_steps: int
    distill: DistillConfig
    seeds: list[int]
    out: Path


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="polyu at <= 256 px, 600 student steps, teacher 1200 steps (default: full size, 1200 and 3000)",
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--teacher-steps", type=int, help="default 1200 quick, 3000 full")
    parser.add_argument("--steps", type=int, help="student steps per candidate (default 600 quick, 1200 full)")
    parser.add_argument(
        "--train",
        action="append",
        metavar="SPEC",
        help="training data spec, repeatable, e.g. clean:../shared/data/clean/kodak24 for synthetic "
        "noise (default: the real pairs of ../shared/data/real/polyu)",
    )
    parser.add_argument(
        "--eval",
        action="append",
        metavar="FOLDER",
        help="real-pair folder to evaluate on, repeatable (default: ../shared/data/real/nam)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "distill.png")
    a = parser.parse_args(argv)
    steps = a.steps or (600 if a.quick else 1200)
    return Settings(
        train=a.train or [str(SHARED / "real" / "polyu")],
        real=a.eval or [str(SHARED / "real" / "nam")],
        max_side=256 if a.quick else None,
        teacher_steps=a.teacher_steps or (1200 if a.quick else 3000),
        distill=DistillConfig(steps=steps, epochs=2, batch=8, crops=(48, 64), alpha=0.9),
        seeds=list(range(a.seeds)),
        out=a.out,
    )


def training_data(specs: list[str], max_side: int | None) -> DenoiseData:
    """The clean folders (+ synthetic noise, seed 0) merged into one dataset."""
    parts = [load_data(spec, max_side=max_side) for spec in specs]
    if len(parts) == 1:
        return parts[0]
    merged = hashlib.sha256("".join(p.fingerprint for p in parts).encode()).hexdigest()
    return DenoiseData(
        name="+".join(p.name for p in parts),
        train=sum((p.train for p in parts), ()),
        val=sum((p.val for p in parts), ()),
        fingerprint=merged,
        source=" + ".join(p.source for p in parts),
    )


def real_pairs(folders: list[str]) -> list[Pair]:
    """Every pair of the real-noise folders (both sides of load_data's split)."""
    pairs: list[Pair] = []
    for folder in folders:
        data = load_data(folder)
        for p in data.train + data.val:
            assert isinstance(p, (ImagePair, StreamedPair))  # load_data's pairs are dataclasses
            pairs.append(replace(p, name=f"{data.name}/{p.name}"))
    return pairs


def candidate(arch, data: DenoiseData, config: DistillConfig, teacher, multiple: int, *, cache: bool):
    """One search candidate without the latency step: (seconds, trained student, its targets)."""
    began = time.perf_counter()
    targets = TeacherTargets.build(teacher, data, config, multiple=multiple, cache=cache)
    torch.manual_seed(config.seed)
    student = build_student(arch)
    distill(student, targets, data.val, config)
    return time.perf_counter() - began, student, targets


def prefill_cache(teacher, data: DenoiseData, targets: TeacherTargets) -> None:
    """Store the outputs an uncached candidate computed, as the first candidate of a study would."""
    # candidate(cache=False) with a teacher: make_batch_plan's plan and every batch's output
    assert isinstance(targets.plan, BatchPlan) and targets.outputs is not None
    outputs = [o for o in targets.outputs if o is not None]
    assert len(outputs) == len(targets.outputs)
    key = outputs_key(teacher, data.fingerprint, targets.plan)
    save_outputs(outputs_path(key), key, outputs)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def plot(rows: list[dict], teacher_db: float, noisy_db: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = [r["seed"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    width = 0.38
    axes[0].bar([s - width / 2 for s in seeds], [r["psnr_alpha0.9"] for r in rows], width, label="alpha 0.9 (KD)")
    axes[0].bar([s + width / 2 for s in seeds], [r["psnr_alpha0"] for r in rows], width, label="alpha 0 (no teacher)")
    axes[0].axhline(teacher_db, color="k", ls="--", lw=1, label=f"teacher {teacher_db:.2f} dB")
    axes[0].axhline(noisy_db, color="0.5", ls=":", lw=1, label=f"noisy input {noisy_db:.2f} dB")
    low = min(noisy_db, *(r["psnr_alpha0"] for r in rows), *(r["psnr_alpha0.9"] for r in rows)) - 0.5
    axes[0].set(
        xticks=seeds,
        xlabel="seed",
        ylabel="PSNR on real pairs (dB)",
        ylim=(low, teacher_db + 0.5),
        title="student PSNR per seed",
    )
    axes[0].legend(fontsize=8)
    axes[1].bar(
        [s - width / 2 for s in seeds], [r["seconds_uncached"] for r in rows], width, label="teacher run per candidate"
    )
    axes[1].bar([s + width / 2 for s in seeds], [r["seconds_cached"] for r in rows], width, label="outputs from cache")
    axes[1].set(xticks=seeds, xlabel="seed", ylabel="seconds per candidate", title="time per candidate")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:5.0f} s] {message}", flush=True)


def main(argv: list[str] | None = None) -> None:
    s = parse_args(argv)
    data = training_data(s.train, s.max_side)
    real = real_pairs(s.real)
    space = load_space("tiny")
    arch = space.reference("tiny-unet")
    multiple = 2 ** (space.max_levels - 1)
    params = sum(p.numel() for p in build_student(arch).parameters())
    log(
        f"distill: train {data.name} ({len(data.train)} train / {len(data.val)} val, max side {s.max_side}); "
        f"real pairs {len(real)} from {', '.join(Path(r).name for r in s.real)}; student tiny-unet ({params:,} "
        f"parameters), {s.distill.steps} steps x batch {s.distill.batch}, crops {list(s.distill.crops)}; "
        f"teacher preset cpu, {s.teacher_steps} steps; seeds {s.seeds}; torch threads {torch.get_num_threads()}"
    )

    teacher = load_or_train_teacher(teacher_config("cpu", s.teacher_steps), data, device=torch.device("cpu"))
    log(f"teacher ready ({sum(p.numel() for p in teacher.parameters()):,} parameters)")
    teacher_db = mean_quality(teacher, real)["psnr"]
    noisy_db = statistics.mean(psnr(p.noisy, p.clean) for p in real)
    log(f"real pairs: noisy input {noisy_db:.2f} dB, teacher {teacher_db:.2f} dB")

    rows = []
    with tempfile.TemporaryDirectory(prefix="distill-bench-cache-") as folder:
        user_cache = os.environ.get("NNSEARCH_CACHE")
        os.environ["NNSEARCH_CACHE"] = folder  # teacher outputs only: a cold cache every run
        try:
            for seed in s.seeds:
                kd = replace(s.distill, seed=seed)
                uncached_s, uncached, targets = candidate(arch, data, kd, teacher, multiple, cache=False)
                began = time.perf_counter()
                prefill_cache(teacher, data, targets)
                write_s = time.perf_counter() - began
                cached_s, student, _ = candidate(arch, data, kd, teacher, multiple, cache=True)
                same = same_weights(student, uncached)
                _, plain, _ = candidate(arch, data, replace(kd, alpha=0.0), None, multiple, cache=True)
                kd_db, plain_db = mean_quality(student, real)["psnr"], mean_quality(plain, real)["psnr"]
                rows.append(
                    {
                        "seed": seed,
                        "psnr_alpha0.9": round(kd_db, 4),
                        "psnr_alpha0": round(plain_db, 4),
                        "gain_db": round(kd_db - plain_db, 4),
                        "seconds_cached": round(cached_s, 2),
                        "seconds_uncached": round(uncached_s, 2),
                        "cache_write_s": round(write_s, 2),
                        "identical_students": same,
                    }
                )
                log(
                    f"seed {seed}: alpha 0.9 {kd_db:.2f} dB, alpha 0 {plain_db:.2f} dB (gain {kd_db - plain_db:+.3f}); "
                    f"candidate {uncached_s:.1f} s running the teacher vs {cached_s:.1f} s from the cache "
                    f"(writing the cache {write_s:.1f} s); cached and uncached students identical: {same}"
                )
        finally:
            if user_cache is None:
                os.environ.pop("NNSEARCH_CACHE", None)
            else:
                os.environ["NNSEARCH_CACHE"] = user_cache

    kd_gain = statistics.mean(r["gain_db"] for r in rows)
    speedup = statistics.mean(r["seconds_uncached"] for r in rows) / statistics.mean(r["seconds_cached"] for r in rows)
    student_db = statistics.mean(r["psnr_alpha0.9"] for r in rows)
    plain_mean = statistics.mean(r["psnr_alpha0"] for r in rows)
    plot(rows, teacher_db, noisy_db, s.out)
    write_csv(rows, s.out.with_suffix(".csv"))
    log(f"wrote {s.out} and {s.out.with_suffix('.csv')}")
    gains = ", ".join(f"{r['gain_db']:+.3f}" for r in rows)
    print(
        f"mean over {len(rows)} seeds: alpha 0.9 {student_db:.2f} dB, alpha 0 {plain_mean:.2f} dB "
        f"(gain per seed {gains}); time per candidate "
        f"{statistics.mean(r['seconds_uncached'] for r in rows):.1f} s without vs "
        f"{statistics.mean(r['seconds_cached'] for r in rows):.1f} s with the cache"
    )
    print(
        f"distill: kd_gain_db={kd_gain:.2f} cache_speedup={speedup:.2f} teacher_db={teacher_db:.1f} "
        f"student_db={student_db:.1f} noisy_db={noisy_db:.1f}"
    )


if __name__ == "__main__":
    main()
