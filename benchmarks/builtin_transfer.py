"""Do students trained only on the built-in data make real photos better (never worse)?

Runs (or resumes) the demo study (`nnsearch demo`: tiny space, built-in
scikit-image photos with synthetic camera noise, the shipped `cpu` teacher), takes
its best student (highest validation PSNR) and evaluates it at full resolution on
every real pair in ../shared/data/real (nam: 25 pairs, polyu: 50 pairs), next to the
noisy input, the shipped teacher and non-local means.

    python benchmarks/builtin_transfer.py --quick          # the 6-trial demo study
    python benchmarks/builtin_transfer.py --db db/nnsearch.db   # the store `make demo` wrote

Writes results/benchmarks/builtin_transfer/<set>/{scores.csv,summary.txt,crops.png}.
The last line reads `builtin_transfer: gain_db=... nam_gain_db=... polyu_gain_db=... worst_pair_gain_db=...
teacher_nam_gain_db=... teacher_polyu_gain_db=...`
(the student's mean PSNR gain over the noisy input; worst_pair: the lowest per-pair gain).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnsearch.analysis.evaluate import NOISY, evaluate_methods, format_summary, standard_methods, write_evaluation  # noqa: E402
from nnsearch.commands.demo import demo_config  # noqa: E402
from nnsearch.search.study import Study  # noqa: E402
from nnsearch.store.engine import Store  # noqa: E402
from nnsearch.store.stored_model import build_model, load_stored_model  # noqa: E402
from nnsearch.train.datasets import load_data  # noqa: E402
from nnsearch.train.teacher_check import load_teacher  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"
OUT = ROOT / "results" / "benchmarks" / "builtin_transfer"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the 6-trial demo study (the default budget)")
    parser.add_argument("--trials", type=int, default=6, help="demo trials (default 6)")
    parser.add_argument("--db", default=None, help="store holding a demo study (default: a fresh temporary one)")
    parser.add_argument("--study", default="demo")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="builtin-transfer-") as scratch:
        store = Store(args.db or f"sqlite:///{Path(scratch) / 'store.db'}")
        study = Study(demo_config(args.study), store)
        study.run(args.trials)  # until the study has that many finished trials
        rows = study.results()
        best = rows[rows["state"] == "complete"].sort_values("psnr", ascending=False).iloc[0]
        stored = load_stored_model(store, best["nn"])
        store.dispose()
    student = build_model(stored, (1, 3, 64, 64))
    print(
        f"best demo student {best['nn']}: {stored.arch.describe()}, validation PSNR {best['psnr']:.2f} dB "
        f"on the built-in data"
    )
    name = f"student {best['nn']}"
    teacher = ("teacher (shipped cpu)", load_teacher("cpu", load_data(), verbose=False).module)
    gains, per_pair, teacher_gains = {}, [], {}
    for folder in sorted(p for p in REAL.iterdir() if p.is_dir()):
        data = load_data(folder)
        evaluation = evaluate_methods(standard_methods((name, student), teacher), list(data.train + data.val))
        write_evaluation(evaluation, OUT / folder.name)
        print(f"{folder.name} ({len(data.train) + len(data.val)} pairs):\n{format_summary(evaluation)}")
        gains[folder.name] = evaluation.gain(name)
        teacher_gains[folder.name] = evaluation.gain(teacher[0])
        table = evaluation.scores.pivot(index="pair", columns="method", values="psnr")
        per_pair += list(table[name] - table[NOISY])
    print(
        f"builtin_transfer: gain_db={np.mean(per_pair):.2f} "
        + " ".join(f"{k}_gain_db={v:.2f}" for k, v in gains.items())
        + f" worst_pair_gain_db={min(per_pair):.2f} "
        + " ".join(f"teacher_{k}_gain_db={v:.2f}" for k, v in teacher_gains.items())
    )


if __name__ == "__main__":
    main()
