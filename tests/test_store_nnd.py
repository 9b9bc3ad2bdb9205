"""NN Dataset interop: import, export, a lossless round trip and clear errors on bad input."""

from __future__ import annotations

import filecmp
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import model_record

from nnsearch.errors import StoreError
from nnsearch.nnd.exporting import export_nnd
from nnsearch.nnd.importing import import_nnd
from nnsearch.store.dataset_api import data, run_data
from nnsearch.store.engine import Store
from nnsearch.store.recording import record_trial

CONFIG = "img-classification_celeba-gender_acc_AlexNet"
TRIALS = [
    {
        "accuracy": 0.6267408075343152,
        "batch": 256,
        "dropout": 0.43383192893398725,
        "duration": 62378821936,
        "lr": 0.11139364594548308,
        "momentum": 0.41838524881308503,
        "transform": "echo_32_flip",
        "uid": "096b8b9ec1ab89323e203150343f378c",
    },
    {
        "accuracy": 0.613515679791604,
        "batch": 16,
        "dropout": 0.24801712643894785,
        "duration": 121971398591,
        "lr": 0.8090505193815676,
        "momentum": 0.9596922490370101,
        "transform": "norm_64",
        "uid": "25cd9380798be179816a04ee99d53574",
    },
]


def write_nnd(root: Path, config: str = CONFIG, trials: list | None = None, epoch: str = "1") -> Path:
    """A small tree in the NN Dataset's `ab/nn` layout."""
    stats = root / "stat" / "train" / config
    stats.mkdir(parents=True, exist_ok=True)
    (stats / f"{epoch}.json").write_text(json.dumps(TRIALS if trials is None else trials, indent=4))
    for kind, name in (("nn", "AlexNet"), ("metric", "acc"), ("transform", "norm_64")):
        (root / kind).mkdir(exist_ok=True)
        (root / kind / f"{name}.py").write_text(f"# {kind} {name}\n")
    return root


def fill(store: Store) -> None:
    record_trial(store, "s", 0, model_record(0, {"lr": 1 / 3, "batch": 4, "crops": [32, 64], "tag": "a b"}))
    record_trial(store, "s", 1, model_record(1, {"lr": 1e-7, "flag": True, "none": None}, epochs=3))
    record_trial(store, "s", 2, model_record(2, {}, epochs=1, latency_ms=None), state="failed")


def test_import_reads_the_nn_dataset_layout(tmp_path, store):
    summary = import_nnd(write_nnd(tmp_path / "nnd"), db=store)
    assert (summary.configs, summary.files, summary.stats, summary.new_stats) == (1, 1, 2, 2)
    frame = data(db=store)
    assert set(frame.task) == {"img-classification"} and set(frame.dataset) == {"celeba-gender"}
    assert set(frame.metric) == {"acc"} and set(frame.nn) == {"AlexNet"} and set(frame.epoch) == {1}
    first = frame[frame.prm_uid == TRIALS[0]["uid"]].iloc[0]
    assert first.accuracy == TRIALS[0]["accuracy"] and first.duration == TRIALS[0]["duration"]
    assert first.prm == {k: TRIALS[0][k] for k in ("batch", "dropout", "lr", "momentum")}
    assert first["transform"] == "echo_32_flip" and first.nn_code == "# nn AlexNet\n"
    assert first.transform_code == "" and first.metric_code == "# metric acc\n"  # no echo_32_flip.py
    again = import_nnd(tmp_path / "nnd", db=store)
    assert again.new_stats == 0 and len(data(db=store)) == 2


@pytest.mark.parametrize("where", ["checkout", "stats"])
def test_import_finds_the_tree_from_a_checkout_or_the_stats_folder(tmp_path, where):
    root = write_nnd(tmp_path / "repo" / "ab" / "nn")
    directory = tmp_path / "repo" if where == "checkout" else root / "stat" / "train"
    db = f"sqlite:///{tmp_path / 'x.db'}"
    import_nnd(directory, db=db)
    frame = data(db=db)
    assert len(frame) == 2 and set(frame.nn_code) == {"# nn AlexNet\n"}


def test_models_without_code_are_imported_and_reported(tmp_path, store):
    root = write_nnd(tmp_path / "nnd", config="img-denoising_sidd_psnr_Lonely-Net")
    summary = import_nnd(root, db=store)
    assert summary.models_without_code == ["Lonely-Net"] and "without a code file" in summary.line()
    assert data(db=store).nn_code.tolist() == ["", ""]


def test_round_trip_keeps_every_value(tmp_path, store, store_url):
    fill(store)
    first = export_nnd(tmp_path / "out1", db=store)
    assert first.stats == len(data(db=store)) and not first.warnings  # names fit the layout
    copy = Store(f"sqlite:///{tmp_path / 'copy.db'}")
    summary = import_nnd(tmp_path / "out1", db=copy)
    assert summary.new_stats == first.stats and summary.models_without_code == []
    pd.testing.assert_frame_equal(data(db=copy), data(db=store))
    pd.testing.assert_frame_equal(run_data(db=copy), run_data(db=store))
    export_nnd(tmp_path / "out2", db=copy)
    compared = filecmp.dircmp(tmp_path / "out1", tmp_path / "out2")
    assert _identical(compared)
    copy.dispose()


def _identical(cmp: filecmp.dircmp) -> bool:
    _, mismatch, errors = filecmp.cmpfiles(cmp.left, cmp.right, cmp.common_files, shallow=False)
    return not (cmp.left_only or cmp.right_only or mismatch or errors) and all(
        _identical(sub) for sub in cmp.subdirs.values()
    )


def test_export_can_be_filtered(tmp_path, store):
    fill(store)
    summary = export_nnd(tmp_path / "out", db=store, nn=model_record(1).nn, metric="psnr")
    assert (summary.configs, summary.stats) == (1, 3)
    assert len(list((tmp_path / "out" / "stat" / "train").glob("*/*.json"))) == 3
    assert [p.name for p in (tmp_path / "out" / "nn").iterdir()] == [f"{model_record(1).nn}.py"]


def test_export_refuses_names_the_layout_cannot_hold(tmp_path, store):
    record_trial(store, "s", 0, model_record(0, dataset="SIDD_Small"))
    with pytest.raises(StoreError, match=r"dataset name\(s\) \['SIDD_Small'\] contain '_'"):
        export_nnd(tmp_path / "out", db=store)


def test_export_refuses_reserved_hyperparameter_names(tmp_path, store):
    record_trial(store, "s", 0, model_record(0, {"uid": "mine"}))
    with pytest.raises(StoreError, match="reserved trial keys"):
        export_nnd(tmp_path / "out", db=store)


BAD_INPUT = {
    "missing folder": (lambda root: root / "nowhere", "does not exist"),
    "malformed json": (
        lambda root: _broken(write_nnd(root), "1.json", '[{"accuracy": 0.5,'),
        f"{CONFIG}/1.json: malformed JSON",
    ),
    "not a list": (lambda root: write_nnd(root, trials={"accuracy": 1}), "1.json: expected a JSON list"),
    "no accuracy": (
        lambda root: write_nnd(root, trials=[{"duration": 1, "uid": "u1"}]),
        "1.json: trial 0 (uid u1): 'accuracy' must be a number",
    ),
    "float duration": (
        lambda root: write_nnd(root, trials=[{"accuracy": 1.0, "duration": 1.5}]),
        "'duration' must be an integer",
    ),
    "long uid": (
        lambda root: write_nnd(root, trials=[{"accuracy": 1.0, "duration": 1, "uid": "u" * 40}]),
        "'uid' must be a string of at most 32",
    ),
    "empty": (lambda root: (root / "stat" / "train").mkdir(parents=True) or root, "no NN Dataset statistics"),
    "only non-stats": (lambda root: write_nnd(root, config="img-denoising_only-three"), "no NN Dataset statistics"),
    "bad diagnostics": (
        lambda root: write_nnd(root, trials=[{"accuracy": 1.0, "train_stat": {"train_loss": "x"}}]),
        "'train_loss' must be a number",
    ),
}


def _broken(root: Path, name: str, text: str) -> Path:
    (root / "stat" / "train" / CONFIG / name).write_text(text)
    return root


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_names_the_file(tmp_path, case):
    make, message = BAD_INPUT[case]
    directory = make(tmp_path / "nnd")
    db = tmp_path / "x.db"
    with pytest.raises(StoreError, match=re.escape(message)):
        import_nnd(directory, db=str(db))
    if db.exists():  # validation happens before anything is written
        assert data(db=str(db)).empty


def test_exports_of_earlier_versions_still_import_their_model_facts(tmp_path, store):
    fill(store)
    export_nnd(tmp_path / "out", db=store)
    nn = model_record(0).nn
    sidecar = tmp_path / "out" / "stat" / "nnsearch" / f"{nn}.json"
    # earlier versions kept nnsearch's facts under a "nnsearch" key of stat/nn/<nn>.json
    (tmp_path / "out" / "stat" / "nn" / f"{nn}.json").write_text(
        json.dumps({"nnsearch": json.loads(sidecar.read_text())})
    )
    sidecar.unlink()
    copy = Store(f"sqlite:///{tmp_path / 'copy.db'}")
    import_nnd(tmp_path / "out", db=copy)
    assert data(db=copy, nn=nn).params.tolist() == data(db=store, nn=nn).params.tolist()
    pd.testing.assert_frame_equal(run_data(db=copy, nn=nn), run_data(db=store, nn=nn))
    copy.dispose()


def test_an_unreadable_export_record_is_a_clear_error(tmp_path, store):
    fill(store)
    export_nnd(tmp_path / "out", db=store)
    (tmp_path / "out" / ".nnsearch-export.json").write_text("{not json")
    with pytest.raises(StoreError, match="unreadable record of an earlier export"):
        export_nnd(tmp_path / "out", db=store)
