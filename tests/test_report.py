"""`nnsearch report` and `nnsearch pareto` on a finished tiny study."""

import json
from datetime import datetime

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import delete, select
from test_export import tiny_study  # noqa: F401 - the shared module-scoped study fixture

from nnsearch.cli import main
from nnsearch.store.engine import Store
from nnsearch.store.schema import LatencyRun


def assert_real_image(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 0


def set_predictions(url: str, factor: float | None) -> int:
    """Replace the predicted latencies: none, or one per measured record, `factor` times its minimum."""
    store = Store(url)
    with store.session() as session:
        session.execute(delete(LatencyRun).where(LatencyRun.kind == "predicted"))
        measured = (
            [] if factor is None else session.scalars(select(LatencyRun).where(LatencyRun.kind == "measured")).all()
        )
        for run in measured:
            session.add(
                LatencyRun(
                    nn=run.nn,
                    device=run.device,
                    runtime="lut",
                    runtime_version=run.runtime_version,
                    threads=run.threads,
                    height=run.height,
                    width=run.width,
                    kind="predicted",
                    median_ms=(run.min_ms or run.median_ms) * factor,
                    min_ms=None,
                    max_ms=None,
                    runs=1,
                    created_at=datetime(2026, 1, 1),
                )
            )
    store.dispose()
    return len(measured)


def test_report_without_predictions_says_so(tiny_study, capsys):
    _, url, root = tiny_study
    set_predictions(url, None)
    assert main(["report", "--study", "tiny", "--db", url, "--results", str(root / "r1")]) == 0
    out = root / "r1" / "tiny"
    text = (out / "report.md").read_text()
    for png in ("pareto.png", "hypervolume.png"):
        assert f"]({png})" in text
        assert_real_image(out / png)
    assert "nothing to compare (no plot)" in text and not (out / "latency_agreement.png").exists()
    assert "LiteDenoiseNet reference" in text and "was not measured" in text
    assert "Knee point" in text and "Hypervolume" in text and "| trial | nn |" in text


def test_report_with_predictions_plots_them(tiny_study):
    _, url, root = tiny_study
    assert set_predictions(url, 1.1) >= 1
    assert main(["report", "--study", "tiny", "--db", url, "--results", str(root / "r2")]) == 0
    out = root / "r2" / "tiny"
    for png in ("pareto.png", "hypervolume.png", "latency_agreement.png"):
        assert_real_image(out / png)
    assert "mean absolute error 10.0%" in (out / "report.md").read_text()


def test_report_of_unknown_study_is_a_clear_error(tiny_study, capsys):
    _, url, root = tiny_study
    assert main(["report", "--study", "nope", "--db", url, "--results", str(root / "r3")]) == 2
    assert "no recorded trials" in capsys.readouterr().err


def test_pareto_command(tiny_study, capsys):
    _, url, _ = tiny_study
    assert (
        main(
            [
                "pareto",
                "--study",
                "tiny",
                "--db",
                url,
                "--format",
                "json",
                "--objectives",
                "psnr:max,latency_ms@host-cpu:min,params:min",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["knee"] in {row["nn"] for row in result["front"]}
    assert result["hypervolume"] > 0 and set(result["reference"]) == {"psnr", "latency_ms@host-cpu", "params"}
    assert main(["pareto", "--study", "tiny", "--db", url, "--max-latency-ms", "1e9", "--min-psnr", "0"]) == 0
    assert "hypervolume" in capsys.readouterr().out
    assert main(["pareto", "--study", "tiny", "--db", url, "--min-psnr", "1000"]) == 2
    assert "meets the constraints" in capsys.readouterr().err
    assert main(["pareto", "--db", url, "--objectives", "psnr:best"]) == 2


def test_measured_lite_denoise_net_is_drawn(tiny_study):
    from conftest import model_record

    from nnsearch.analysis.report import reference_model_name
    from nnsearch.model.space import load_space
    from nnsearch.store.recording import record_trial

    _, url, root = tiny_study
    arch = load_space("litedenoise").reference("LiteDenoiseNet")
    assert arch.name == reference_model_name()
    rec = model_record(
        0, nn=arch.name, code=arch.model_code(), arch_json=json.dumps(arch.to_dict()), latency_ms=3.0, weights=None
    )
    record_trial(Store(url), "reference", 0, rec)
    assert main(["report", "--study", "tiny", "--db", url, "--results", str(root / "r4")]) == 0
    text = (root / "r4" / "tiny" / "report.md").read_text()
    assert f"The star is LiteDenoiseNet (`{arch.name}`) as measured" in text and "at 64x96" in text
    assert_real_image(root / "r4" / "tiny" / "pareto.png")


def test_one_latency_for_a_student_timed_at_two_resolutions_and_thread_counts(tiny_study, capsys):
    """The study, its live status, the report, `nnsearch pareto`, data() and replay agree on a student's latency."""
    from nnsearch.latency.service import profile_nn
    from nnsearch.replay.table import study_candidates
    from nnsearch.search.live import StudyStatus
    from nnsearch.store.dataset_api import data
    from nnsearch.store.timings import student_latency

    study, url, root = tiny_study
    store = Store(url)
    complete = study.results().query("state == 'complete'").sort_values("latency_ms")
    nn, trial = complete["nn"].iloc[0], int(complete["trial"].iloc[0])  # the fastest: on every Pareto front
    figure = float(complete["latency_ms"].iloc[0])
    assert figure == pytest.approx(study.optuna.trials[trial].values[1])  # the objective the study reported
    profile_nn(store, nn, 32, 48, threads=1, runs=2, warmup=0)  # a smaller input: a smaller figure
    profile_nn(store, nn, 64, 96, threads=2, runs=2, warmup=0)  # the study's input on two threads
    assert student_latency(store, nn, height=32, width=48).ms < figure
    assert student_latency(store, nn, threads=2).threads == 2

    def same(value):
        assert float(value) == pytest.approx(figure, rel=1e-12), (value, figure)

    same(study.results().set_index("nn").loc[nn, "latency_ms"].min())
    status = StudyStatus.read(study.optuna, store, 3, "host-cpu")
    same(next(row["latency_ms"] for row in status.recent if row["nn"] == nn))
    same(data(db=url, nn=nn)["latency_ms@host-cpu"].iloc[0])
    same(data(db=url, nn=nn, study="tiny")["latency_ms@host-cpu"].iloc[0])
    same(study_candidates(store, "tiny").set_index("nn").loc[nn, "latency_ms"])
    assert main(["pareto", "--study", "tiny", "--db", url, "--format", "json"]) == 0
    front = {row["nn"]: row for row in json.loads(capsys.readouterr().out)["front"]}
    same(front[nn]["latency_ms"])
    assert main(["report", "--study", "tiny", "--db", url, "--results", str(root / "r5")]) == 0
    text = (root / "r5" / "tiny" / "report.md").read_text()
    assert "64x96, 1 thread(s)" in text
    row = next(line for line in text.splitlines() if line.startswith("|") and f"| {nn} |" in line)
    assert f"| {figure:.2f} |" in row
    store.dispose()
