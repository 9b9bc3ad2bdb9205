"""One rule per behaviour, the same on SQLite and PostgreSQL: finite metrics, one set per uid, first record kept."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import model_record
from sqlalchemy import select
from test_input_limits import nnsearch, refused
from test_store_nnd import TRIALS, write_nnd

from nnsearch.errors import StoreError
from nnsearch.nnd.importing import import_nnd
from nnsearch.store.dataset_api import data
from nnsearch.store.recording import record_trial
from nnsearch.store.schema import Stat, Weights


def test_nan_and_infinite_accuracies_are_refused_naming_the_file(tmp_path, store_url):
    for value in ("NaN", "Infinity", "-Infinity"):
        tree = tmp_path / value
        write_nnd(tree)
        epoch_file = next((tree / "stat" / "train").glob("*/1.json"))
        epoch_file.write_text(epoch_file.read_text().replace(str(TRIALS[1]["accuracy"]), value))
        if value == "NaN":  # the command line: exit 2, one paragraph
            refused(
                nnsearch("import-nnd", str(tree), "--db", store_url),
                str(epoch_file),
                "accuracy",
                "expected a finite number",
                "nothing was written",
            )
        else:
            with pytest.raises(StoreError, match="expected a finite number") as raised:
                import_nnd(tree, db=store_url)
            assert str(epoch_file) in str(raised.value)
    import_nnd(write_nnd(tmp_path / "fine"), db=store_url)
    assert len(data(db=store_url)) == 2


def test_a_uid_reused_with_other_values_is_refused_naming_both_sets(tmp_path, store_url):
    import_nnd(write_nnd(tmp_path / "first"), db=store_url)
    before = data(db=store_url).sort_values("prm_uid")
    changed = [{**TRIALS[0], "lr": 0.5, "extra": 1}, TRIALS[1]]
    tree = write_nnd(tmp_path / "second", config="img-classification_celeba-gender_acc_Other", trials=changed)
    message = refused(
        nnsearch("import-nnd", str(tree), "--db", store_url),
        TRIALS[0]["uid"],
        f'"lr": {TRIALS[0]["lr"]}',
        '"lr": 0.5',
        '"extra": 1',
    )
    assert "nothing was written" in message
    after = data(db=store_url).sort_values("prm_uid")
    assert after.prm.tolist() == before.prm.tolist() and len(after) == len(before)  # earlier rows unchanged
    within = write_nnd(
        tmp_path / "third",
        config="img-classification_celeba-gender_acc_Third",
        trials=[TRIALS[1], {**TRIALS[1], "lr": 0.25}],
    )  # one file, one uid, two sets
    with pytest.raises(StoreError, match=f'{TRIALS[1]["uid"]}.*"lr": 0.25'):
        import_nnd(within, db=store_url)


def test_a_model_recorded_twice_keeps_its_first_stats_and_weights(store):
    first = model_record(weights=b"first weights")
    again = model_record(weights=b"second weights")
    again.epochs[-1].psnr += 1.0  # another training of the same model and hyperparameters
    record_trial(store, "twice", 0, first)
    record_trial(store, "twice", 1, again)
    with store.read() as conn:
        weights = conn.execute(select(Weights.state, Weights.sha256)).all()
        psnrs = conn.scalars(select(Stat.accuracy).where(Stat.metric == "psnr").order_by(Stat.epoch)).all()
    assert weights == [(b"first weights", hashlib.sha256(b"first weights").hexdigest())]
    assert psnrs == [e.psnr for e in first.epochs]


def test_hyperparameter_json_reads_back_as_written(tmp_path, store_url):
    trials = [{**TRIALS[0], "uid": None, "crops": [32, 64], "flag": True}]
    trials[0].pop("uid")
    import_nnd(write_nnd(tmp_path / "a", trials=trials), db=store_url)
    again = import_nnd(write_nnd(tmp_path / "b", trials=json.loads(json.dumps(trials))), db=store_url)
    assert again.new_stats == 0  # the same set again: not a clash
