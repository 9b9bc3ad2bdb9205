"""The demo: a small real search study on the tiny space and the built-in data."""

from __future__ import annotations

from nnsearch.commands.summary import StudySummary, format_table, summarize
from nnsearch.model.space import load_space
from nnsearch.search.study import LatencyConfig, Study, StudyConfig
from nnsearch.store.engine import Store
from nnsearch.train.distill import DistillConfig


def demo_config(name: str = "demo", seed: int = 0, teacher: str = "cpu") -> StudyConfig:
    """Tiny space, built-in data, a short distillation, Full HD latency on one thread."""
    return StudyConfig(
        name=name, space=load_space("tiny"), data_spec=None, seed=seed, teacher=teacher,
        distill=DistillConfig(steps=400, epochs=2, batch=8, crops=(48, 64)),
        latency=LatencyConfig(device="host-cpu", height=1088, width=1920, threads=1, runs=3),
    )


def run_demo(db: str | None = None, trials: int = 6, name: str = "demo", teacher: str = "cpu") -> StudySummary:
    """Run (or resume) the demo study and write its Pareto table and plot (`teacher`: a preset or a file)."""
    store = Store(db)
    print(f"store: {store.display_url}")
    study = Study(demo_config(name, teacher=teacher), store)
    study.run(trials)
    summary = summarize(study)
    print("\nPareto-optimal students (PSNR vs latency):")
    print(format_table(summary.front))
    print(f"\nwrote {summary.csv_path} and {summary.png_path}")
    return summary
