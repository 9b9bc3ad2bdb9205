"""Model code from an NN Dataset folder or the store runs only with the opt-in (--trust-code / NNSEARCH_TRUST_CODE)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from conftest import ARCH_FIELDS, model_record

from nnsearch.cli import main
from nnsearch.common.trust import TRUST_ENV, UntrustedCodeError
from nnsearch.export.student import export_student
from nnsearch.model.arch import Arch
from nnsearch.model.student import build_student
from nnsearch.nnd.importing import import_nnd
from nnsearch.store.dataset_api import data
from nnsearch.store.recording import record_trial

ARCH = Arch(**ARCH_FIELDS[0])
TRIALS = [
    {"accuracy": 30.5, "duration": 7, "lr": 0.01, "uid": "a" * 32},
    {"accuracy": 31.0, "duration": 8, "lr": 0.02, "uid": "b" * 32},
]


def marking_code(marker: Path) -> str:
    """A valid img-denoising model file whose top level also creates `marker`."""
    return ARCH.model_code() + f"\nimport pathlib\npathlib.Path({str(marker)!r}).touch()\n"


def crafted_folder(root: Path, marker: Path) -> Path:
    """An NN Dataset folder: model Evil with marking code in nn/, plus .py files lying among the statistics."""
    config = root / "stat" / "train" / "img-denoising_sidd_psnrdb_Evil"
    config.mkdir(parents=True)
    (config / "1.json").write_text(json.dumps(TRIALS))
    (root / "nn").mkdir()
    (root / "nn" / "Evil.py").write_text(marking_code(marker))
    stray = marker.with_name("stray")
    for place in (root / "stat" / "train" / "Evil.py", config / "Evil.py", config / "helper.py"):
        place.write_text(f"import pathlib\npathlib.Path({str(stray)!r}).touch()\n")
    return root


def test_import_without_the_opt_in_runs_nothing_and_keeps_every_statistic(tmp_path, store, monkeypatch) -> None:
    monkeypatch.delenv(TRUST_ENV, raising=False)
    marker = tmp_path / "ran"
    summary = import_nnd(crafted_folder(tmp_path / "nnd", marker), db=store)
    assert not marker.exists() and not marker.with_name("stray").exists()
    frame = data(db=store)
    assert sorted(frame.accuracy) == [30.5, 31.0] and set(frame.nn) == {"Evil"}
    assert set(frame.nn_code) == {marking_code(marker)}  # recorded as text
    assert summary.not_run == ["Evil"] and summary.rebuilt == []
    (warning,) = summary.warnings
    assert "--trust-code" in warning and TRUST_ENV in warning and "Evil" in warning


def test_import_with_the_opt_in_rebuilds_the_model_but_never_runs_files_among_the_statistics(
    tmp_path, store, monkeypatch
) -> None:
    monkeypatch.delenv(TRUST_ENV, raising=False)
    marker = tmp_path / "ran"
    summary = import_nnd(crafted_folder(tmp_path / "nnd", marker), db=store, trust_code=True)
    assert marker.exists() and summary.rebuilt == ["Evil"] and summary.warnings == []
    assert not marker.with_name("stray").exists()
    assert set(data(db=store).params) == {sum(p.numel() for p in build_student(ARCH).parameters())}


def test_the_cli_warns_naming_the_opt_in_and_the_setting_gives_it(tmp_path, store_url, monkeypatch, capsys) -> None:
    monkeypatch.delenv(TRUST_ENV, raising=False)
    marker = tmp_path / "ran"
    root = crafted_folder(tmp_path / "nnd", marker)
    assert main(["import-nnd", str(root), "--db", store_url]) == 0
    captured = capsys.readouterr()
    assert "warning: 1 model(s) with code were not rebuilt" in captured.err and "--trust-code" in captured.err
    assert "imported 2 stat rows" in captured.out and not marker.exists()
    monkeypatch.setenv(TRUST_ENV, "1")
    assert main(["import-nnd", str(root), "--db", store_url]) == 0
    assert marker.exists() and "1 model(s) rebuilt" in capsys.readouterr().out


def test_export_runs_stored_code_that_is_not_nnsearchs_own_only_with_the_opt_in(
    tmp_path, store, store_url, monkeypatch, capsys
) -> None:
    monkeypatch.delenv(TRUST_ENV, raising=False)
    marker = tmp_path / "ran"
    buffer = io.BytesIO()
    torch.save(build_student(ARCH).state_dict(), buffer)
    record = model_record(0, code=marking_code(marker), weights=buffer.getvalue())
    record_trial(store, "s", 0, record)
    target = tmp_path / "ship"
    with pytest.raises(UntrustedCodeError, match="not the model file nnsearch generates"):
        export_student(record.nn, target, db=store_url, resolution=(32, 32))
    assert main(["export", record.nn, "--to", str(target), "--db", store_url, "--resolution", "32x32"]) == 2
    err = capsys.readouterr().err
    assert "--trust-code" in err and "Traceback" not in err
    assert main(["evaluate", record.nn, "--data", str(tmp_path), "--db", store_url, "--no-classical"]) == 2
    assert "--trust-code" in capsys.readouterr().err
    assert not marker.exists() and not target.exists()
