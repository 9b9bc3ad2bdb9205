"""`nnsearch query`, `check`, `import-nnd` and `export-nnd` from the command line."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from conftest import model_record
from sqlalchemy import text

from nnsearch.cli import main
from nnsearch.store.dataset_api import data
from nnsearch.store.recording import record_trial


@pytest.fixture
def db(store):
    record_trial(store, "alpha", 0, model_record(0))
    record_trial(store, "beta", 1, model_record(1, {"lr": 0.01}))
    return store.url


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_query_formats_and_filters(db, capsys):
    code, out, _ = run(capsys, "query", "--db", db, "--format", "csv", "--metric", "psnr", "--epoch", "1")
    frame = pd.read_csv(io.StringIO(out))
    assert code == 0 and len(frame) == 2 and set(frame.metric) == {"psnr"} and "nn_code" not in frame
    code, out, _ = run(capsys, "query", "--db", db, "--format", "json", "--nn", model_record(1).nn, "--code")
    rows = json.loads(out)
    assert len(rows) == 4 and rows[0]["prm"] == {"lr": 0.01}
    assert rows[0]["nn_code"] == model_record(1).code and rows[0]["latency_ms@host-cpu"] == 4.5  # min over runs
    code, out, _ = run(capsys, "query", "--db", db, "--only-best", "--max-rows", "1")
    assert code == 0 and len(out.strip().splitlines()) == 2


def test_query_study_shows_its_trials_or_its_stats(db, capsys):
    _, out, _ = run(capsys, "query", "--db", db, "--study", "beta", "--format", "csv")
    trials = pd.read_csv(io.StringIO(out))
    assert list(trials.columns[:3]) == ["trial", "nn", "state"] and trials.trial.tolist() == [1]
    _, out, _ = run(capsys, "query", "--db", db, "--study", "beta", "--view", "stats", "--format", "csv")
    assert len(pd.read_csv(io.StringIO(out))) == 4
    code, _, err = run(capsys, "query", "--db", db, "--study", "beta", "--nn", "x", "--view", "trials")
    assert code == 2 and "exactly one --study" in err


def test_check_reports_and_sets_the_exit_code(store, db, capsys):
    code, out, _ = run(capsys, "check", "--db", db)
    assert code == 0 and "OK" in out
    with store.write_engine.begin() as conn:
        conn.execute(text("UPDATE nn SET code = 'edited'"))
    code, out, err = run(capsys, "check", "--db", db)
    assert code == 1 and "whose id is not the md5" in out and "1 problem(s)" in err


def test_export_then_import(db, tmp_path, capsys):
    code, out, err = run(capsys, "export-nnd", str(tmp_path / "out"), "--db", db, "--study", "alpha")
    assert code == 0 and "exported 4 stat rows" in out and "warning" not in err
    target = tmp_path / "copy.db"
    code, out, _ = run(capsys, "import-nnd", str(tmp_path / "out"), "--db", str(target))
    assert code == 0 and out.startswith("imported 4 stat rows (4 new)")
    assert set(data(db=str(target)).nn) == {model_record(0).nn}


def test_user_errors_exit_2_without_traceback(tmp_path, capsys):
    code, _, err = run(capsys, "import-nnd", str(tmp_path / "missing"), "--db", str(tmp_path / "x.db"))
    assert code == 2 and err.startswith("nnsearch: error:") and "does not exist" in err
    code, _, err = run(capsys, "query", "--db", str(tmp_path / "none.db"))
    assert code == 2 and "no nnsearch store" in err
