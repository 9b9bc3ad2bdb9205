"""`nnsearch evaluate`: a recorded student on a folder of pairs, next to the noisy input, a teacher and NL-means."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_teacher_check import box_blur, script

from nnsearch.cli import main
from nnsearch.model.space import load_space
from nnsearch.search.study import LatencyConfig, Study, StudyConfig
from nnsearch.store.engine import Store
from nnsearch.train.distill import DistillConfig


@pytest.fixture
def recorded_student(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(store URL, name) of a student trained for 4 steps without a teacher on tiny built-in crops."""
    monkeypatch.setenv("NNSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NNSEARCH_RESULTS", str(tmp_path / "results"))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    config = StudyConfig.build(
        name="ev",
        space=load_space("tiny"),
        max_side=64,
        sampler="random",
        distill=DistillConfig(steps=4, epochs=1, batch=2, crops=(32,), alpha=0.0),
        latency=LatencyConfig(height=32, width=32, runs=1, warmup=0),
        early_stop=None,
    )
    study = Study(config, Store(url), verbose=False)
    study.results_dir = tmp_path / "results" / "ev"
    study.run(1)
    name = study.results().query("state == 'complete'")["nn"].iloc[0]
    return url, name


def pair_folder(root: Path, count: int = 3, size: int = 80) -> Path:
    """noisy/ + clean/ subfolders of smooth images with Gaussian noise."""
    for sub in ("noisy", "clean"):
        (root / sub).mkdir(parents=True)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    rng = np.random.default_rng(0)
    for index in range(count):
        clean = np.stack([0.2 + 0.6 * yy, 0.3 + 0.4 * xx, 0.4 + 0.2 * np.sin(6 * xx + index)], axis=2)
        noisy = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1)
        for sub, image in (("clean", clean), ("noisy", noisy)):
            Image.fromarray((image * 255).round().astype(np.uint8)).save(root / sub / f"p{index}.png")
    return root


def test_evaluate_writes_table_csv_and_crops(
    recorded_student: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url, name = recorded_student
    folder = pair_folder(tmp_path / "pairs")
    teacher = script(box_blur(), tmp_path / "blur.pt")
    out = tmp_path / "eval"
    code = main(["evaluate", name, "--data", str(folder), "--teacher", teacher, "--db", url, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    last = captured.out.strip().splitlines()[-1]
    assert last.startswith(f"evaluate: {name} on pairs (3 pairs, noisy input ") and "nl-means" in last
    with (out / "scores.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    methods = {row["method"] for row in rows}
    assert methods == {"noisy input", f"student {name}", "teacher (file blur.pt)", "nl-means"} and len(rows) == 12
    by = {(row["pair"], row["method"]): float(row["psnr"]) for row in rows}
    assert all(by[(p, "nl-means")] > by[(p, "noisy input")] for p in ("p0", "p1", "p2"))  # a real baseline
    assert all(by[(p, "teacher (file blur.pt)")] > by[(p, "noisy input")] + 3 for p in ("p0", "p1", "p2"))
    table = (out / "summary.txt").read_text()
    assert "gain_db" in table and "+0.00" in table
    png = Image.open(out / "crops.png")
    assert png.size[0] > 500 and png.size[1] > 300


def test_evaluate_names_an_unknown_student(
    recorded_student: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url, _ = recorded_student
    code = main(["evaluate", "nope", "--data", str(pair_folder(tmp_path / "pairs")), "--db", url])
    assert code == 2 and "no model named 'nope'" in capsys.readouterr().err
