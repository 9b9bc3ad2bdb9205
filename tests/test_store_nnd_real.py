"""NN Dataset interop against real files of the public repository (../shared/data/nnd)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from nnsearch.errors import StoreError
from nnsearch.nnd.exporting import export_nnd
from nnsearch.nnd.importing import import_nnd
from nnsearch.store.dataset_api import data, run_data
from nnsearch.store.engine import Store
from nnsearch.store.schema import TrainStat

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nnd"
LITE = "img-denoising_denoise_psnr_LiteDenoiseNet"
TRIALS = {  # trials per config in the real files
    LITE: 14 + 14 + 2,
    "img-denoising_denoise_psnr_HeavyDenoiseNet": 1,
    "img-denoising_denoise_psnr_DenoiseUNet": 16,
    "img-classification_cifar-10_acc_AlexNet": 9,
}
#: An on-device runtime file as the NN Dataset records them (fields and values of a real
#: stat/run/tflite/int8/.../android_SM-P613.json, its raw benchmark logs left out).
RUNTIME = {
    "model_name": "LiteDenoiseNet",
    "precision": "int8",
    "device_type": "SM-P613",
    "valid": True,
    "emulator": False,
    "iterations": 20,
    "duration": 26650900,
    "unit": "Adreno (TM) 618",
    "cpu_duration": 93093800,
    "cpu_min_duration": 92193000,
    "cpu_max_duration": 97106000,
    "gpu_duration": 26650900,
    "gpu_min_duration": 26497000,
    "gpu_max_duration": 26821000,
    "npu_duration": 26721700,
    "npu_min_duration": 26433000,
    "npu_max_duration": 27232000,
    "duration_ms": 26650900,
    "benchmark": {
        "cpu": {"avg_ms": 93093800.0, "status": "ok"},
        "gpu": {"avg_ms": 26650900.0, "status": "ok"},
        "npu": {"avg_ms": 26721700.0, "status": "ok"},
    },
    "device_analytics": {"timestamp": 1778936801.4403088},
}

pytestmark = pytest.mark.skipif(
    not (REAL / "ab" / "nn" / "stat" / "train").is_dir(),
    reason="the real NN Dataset files (../shared/data/nnd) are not here",
)


def real_copy(tmp_path: Path) -> Path:
    """A copy of the real files plus what the full repository also holds: a non-stats folder and file."""
    root = tmp_path / "nn-dataset"
    shutil.copytree(REAL, root)
    train = root / "ab" / "nn" / "stat" / "train"
    (train / "RESULTS_RLFN").mkdir()
    (train / "RESULTS_RLFN" / "summary.json").write_text("{}")
    (train / "conversion_report.json").write_text('{"converted": 3}')
    (train / LITE / "notes.txt").write_text("not an epoch file")
    return root


def stats_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows in a stable order, without columns an export does not carry (code of models without one)."""
    key = ["task", "dataset", "metric", "nn", "epoch", "transform", "prm_uid", "run"]
    return frame.sort_values(key).reset_index(drop=True)


def test_a_real_checkout_imports_with_non_stats_skipped_and_every_trial_kept(tmp_path, store):
    summary = import_nnd(real_copy(tmp_path), db=store)
    assert sorted(summary.skipped) == [
        "stat/train/RESULTS_RLFN/",
        "stat/train/conversion_report.json",
        f"stat/train/{LITE}/notes.txt",
    ]
    assert "skipped 3 files or folders that are not" in summary.line()
    assert summary.stats == summary.new_stats == sum(TRIALS.values())
    frame = data(db=store)
    assert len(frame) == sum(TRIALS.values())
    lite = frame[frame.nn == "LiteDenoiseNet"]
    assert len(lite) == 30 and sorted(lite.groupby("epoch").size().tolist()) == [2, 14, 14]
    # epoch 1 trains 8 distinct hyperparameter sets 14 times: all kept, numbered by run
    first = lite[lite.epoch == 1]
    assert first.prm_uid.nunique() == 8 and first.run.max() == 2
    repeated = first[first.prm_uid == "e05db15c560a0b57bf7ad4593d75142d"].sort_values("run")
    assert repeated.accuracy.tolist() == [0.7309642450373169, 0.7309627675146011, 0.7293315579521495]
    # DenoiseUNet's trials have no duration: stored as unknown
    assert frame[frame.nn == "DenoiseUNet"].duration.isna().all()
    assert frame[frame.nn == "LiteDenoiseNet"].duration.notna().all()
    alexnet = frame[frame.nn == "AlexNet"]
    assert sorted(alexnet[alexnet.prm_uid == "3cb173d35a780eafb1f1a9fa4dd955d6"].accuracy) == [0.8307, 0.8441]
    # diagnostics are training facts, not hyperparameters: the set's uid still names lr, batch, ...
    assert "train_loss" not in lite.prm.iloc[0] and "lr" in lite.prm.iloc[0]
    with store.read() as conn:
        assert conn.scalar(select(func.count()).select_from(TrainStat)) == 30 + 1 + 1  # Lite, Heavy, AlexNet's nested
    again = import_nnd(real_copy(tmp_path / "again"), db=store)
    assert (again.stats, again.new_stats) == (sum(TRIALS.values()), 0)
    assert "(0 new: the store already held every one)" in again.line() and len(data(db=store)) == sum(TRIALS.values())


def test_lemur_psnr_and_nnsearch_psnr_never_share_a_metric_name(tmp_path, store):
    from conftest import model_record

    from nnsearch.store.recording import record_trial

    root = real_copy(tmp_path)
    (root / "ab" / "nn" / "metric").mkdir()
    (root / "ab" / "nn" / "metric" / "psnr.py").write_text("# the NN Dataset's psnr metric module\n")
    import_nnd(root, db=store)
    record_trial(store, "s", 0, model_record(0))
    normalised, decibels = data(db=store, metric="psnr-nnd"), data(db=store, metric="psnr")
    assert len(normalised) == 30 + 1 + 16 and normalised.accuracy.between(0, 1).all()
    assert set(normalised.metric_code) == {"# the NN Dataset's psnr metric module\n"}  # its own file, by its name
    assert set(decibels.nn) == {model_record(0).nn} and (decibels.accuracy > 1).all()
    out = tmp_path / "out"
    export_nnd(out, db=store)
    folders = {p.name for p in (out / "stat" / "train").iterdir()}
    assert LITE in folders  # back under the NN Dataset's own name
    assert f"img-denoising_{model_record(0).dataset}_psnrdb_{model_record(0).nn}" in folders
    assert (out / "metric" / "psnr.py").read_text() == "# the NN Dataset's psnr metric module\n"
    assert not (out / "metric" / "psnrdb.py").exists()  # nnsearch's psnr has a note, not a metric module


def test_export_of_the_real_store_writes_no_empty_file_and_imports_back_to_the_same_rows(tmp_path, store):
    import_nnd(real_copy(tmp_path), db=store)
    out = tmp_path / "exported" / "ab" / "nn"
    summary = export_nnd(out, db=store)
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written and all(p.stat().st_size > 0 for p in written)
    assert not (out / "nn").exists(), "the real files come without model code: no code file is written"
    assert any("no code" in w for w in summary.warnings)
    for path in (out / "stat" / "train" / LITE).glob("*.json"):  # every trial is back, in LEMUR's keys
        trials = json.loads(path.read_text())
        original = json.loads((REAL / "ab" / "nn" / "stat" / "train" / LITE / path.name).read_text())
        assert len(trials) == len(original)
        assert {k for t in trials for k in t} <= {k for t in original for k in t}
    copy = Store(f"sqlite:///{tmp_path / 'copy.db'}")
    again = import_nnd(tmp_path / "exported", db=copy)
    assert again.new_stats == len(data(db=store)) and again.skipped == []
    pd.testing.assert_frame_equal(stats_of(data(db=copy)), stats_of(data(db=store)))
    with copy.read() as conn:
        assert conn.scalar(select(func.count()).select_from(TrainStat)) == 32
    copy.dispose()


def test_a_malformed_trial_stops_the_import_naming_file_trial_and_field(tmp_path, store):
    root = real_copy(tmp_path)
    path = root / "ab" / "nn" / "stat" / "train" / LITE / "2.json"
    trials = json.loads(path.read_text())
    trials[3]["accuracy"] = "0.73"
    path.write_text(json.dumps(trials))
    with pytest.raises(StoreError) as caught:
        import_nnd(root, db=store)
    message = str(caught.value)
    assert f"{LITE}/2.json: trial 3 (uid {trials[3]['uid']}): 'accuracy' must be a number" in message
    assert data(db=store).empty  # one transaction: nothing of the other files was written


def test_export_refuses_to_overwrite_files_it_did_not_write(tmp_path, store):
    root = real_copy(tmp_path)
    import_nnd(root, db=store)
    target = root / "ab" / "nn"
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    with pytest.raises(StoreError, match="exist that nnsearch did not write") as caught:
        export_nnd(target, db=store)
    assert f"stat/train/{LITE}/1.json" in str(caught.value) and "--force" in str(caught.value)
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before  # nothing written
    # into its own earlier export it writes again; a file changed by hand since is refused again
    mine = tmp_path / "mine"
    export_nnd(mine, db=store)
    export_nnd(mine, db=store)
    edited = mine / "stat" / "train" / LITE / "300.json"
    edited.write_text("[]\n")
    with pytest.raises(StoreError, match="300.json"):
        export_nnd(mine, db=store)
    export_nnd(mine, db=store, force=True)
    assert len(json.loads(edited.read_text())) == 2


def test_per_model_statistics_are_written_in_the_repository_format(tmp_path, store):
    root = real_copy(tmp_path)
    code = Path(__file__).parent / "data" / "nnd_code" / "LiteDenoiseNet.py"
    (root / "ab" / "nn" / "nn").mkdir()
    shutil.copy(code, root / "ab" / "nn" / "nn" / "LiteDenoiseNet.py")
    import_nnd(root, db=store, trust_code=True)
    out = tmp_path / "out"
    export_nnd(out, db=store)
    written = json.loads((out / "stat" / "nn" / "LiteDenoiseNet.json").read_text())
    theirs = json.loads((REAL / "ab" / "nn" / "stat" / "nn" / "DenoiseUNet.json").read_text())
    assert set(written) <= set(theirs) and "nnsearch" not in written  # the NN Dataset's keys only
    assert written["total_params"] == 1963411 and isinstance(written["flops"], int)
    assert written["code_length"] == len(code.read_text())
    assert json.loads((out / "stat" / "nnsearch" / "LiteDenoiseNet.json").read_text())["nn_stat"]["params"] == 1963411


def test_on_device_runtimes_import_as_latency_runs_and_export_back(tmp_path, store):
    root = real_copy(tmp_path)
    runs = root / "ab" / "nn" / "stat" / "run" / "tflite"
    for precision, record in (
        ("int8", RUNTIME),
        ("fp32", {**RUNTIME, "precision": "fp32", "in_dim_0": 1, "in_dim_1": 256, "in_dim_2": 256, "in_dim_3": 3}),
    ):
        folder = runs / precision / LITE
        folder.mkdir(parents=True)
        (folder / "android_SM-P613.json").write_text(json.dumps(record, indent=2))
    (runs / "int8" / "all_models.json").write_text("[]")
    summary = import_nnd(root, db=store)
    assert summary.runs == 6 and "stat/run/tflite/int8/all_models.json" in summary.skipped
    frame = run_data(db=store, nn="LiteDenoiseNet")
    gpu = frame[frame.device == "android_SM-P613-gpu"].sort_values("height")
    assert gpu.median_ms.tolist() == [26.6509, 26.6509]  # 26650900 ns labelled ms
    assert (gpu.min_ms.tolist(), gpu.max_ms.tolist(), gpu.runs.tolist()) == ([26.497] * 2, [26.821] * 2, [20, 20])
    assert gpu.runtime.tolist() == ["tflite", "tflite"] and gpu.height.tolist() == [0, 256]
    with store.read() as conn:
        from sqlalchemy import text

        precisions = conn.execute(text("SELECT DISTINCT precision FROM latency_run ORDER BY precision")).all()
    assert [p[0] for p in precisions] == ["fp32", "int8"]
    out = tmp_path / "out"
    export_nnd(out, db=store)
    exported = json.loads((out / "stat" / "run" / "tflite" / "int8" / LITE / "android_SM-P613.json").read_text())
    assert (exported["gpu_duration"], exported["npu_min_duration"], exported["duration"]) == (
        26650900,
        26433000,
        26650900,
    )
    copy = Store(f"sqlite:///{tmp_path / 'copy.db'}")
    import_nnd(out, db=copy)
    pd.testing.assert_frame_equal(run_data(db=copy), run_data(db=store))
    copy.dispose()
