"""The demo: a small real search study on the tiny space and the built-in data."""

from __future__ import annotations

from nnsearch.commands.summary import StudySummary, format_table, summarize
from nnsearch.model.space import load_space
from nnsearch.search.study import Study, StudyConfig
from nnsearch.store.engine import Store

#: The demo's settings that differ from the library defaults (`nnsearch.search.config`): a short distillation.
DEMO_SETTINGS = {"steps": 400}


def demo_config(name: str = "demo", seed: int = 0, teacher: str = "cpu") -> StudyConfig:
    """Tiny space, built-in data, a short distillation, Full HD latency on one thread."""
    return StudyConfig.build(name, load_space("tiny"), seed=seed, teacher=teacher, **DEMO_SETTINGS)


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
