"""Names that become paths (study, model, transform, runtime, precision, device) never lead outside the folder named."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nnsearch.cli import main
from nnsearch.common.paths import safe_component
from nnsearch.errors import NNSearchError
from nnsearch.nnd.exporting import export_nnd
from nnsearch.nnd.importing import import_nnd
from nnsearch.nnd.runs import NND_RUNTIME_VERSION, UNKNOWN_TIME
from nnsearch.store.dataset_api import data, run_data
from nnsearch.store.record import Bundle
from nnsearch.store.recording import record_bundle

ESCAPES = ["../../x", "/abs/x", "..", ".", "", "a\\b", "a\x00b", "x" * 201]
TRIAL = {"accuracy": 0.5, "duration": 1000, "lr": 0.1, "transform": "norm_64", "uid": "0123456789abcdef"}


def tree(root: Path) -> set[Path]:
    """Every file and folder under `root`."""
    return set(root.rglob("*"))


@pytest.mark.parametrize("name", ESCAPES)
def test_a_name_that_is_not_one_plain_file_name_is_refused(name: str) -> None:
    with pytest.raises(NNSearchError, match="study name .* cannot be used as a file or folder name"):
        safe_component(name, "study name")


@pytest.mark.parametrize("name", ["LiteDenoiseNet", "img-denoising", "rlfn-0.5", "android_SM-P613", "..x", "a b"])
def test_plain_names_pass_unchanged(name: str) -> None:
    assert safe_component(name, "model name") == name


@pytest.mark.parametrize("study", ["../../x", "/abs/x"])
def test_search_refuses_a_study_name_that_leads_outside_the_results_folder(
    store_url, tmp_path, monkeypatch, capsys, study: str
) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("NNSEARCH_RESULTS", str(work / "results"))
    name = str(tmp_path / "abs" / "x") if study.startswith("/") else study
    before = tree(tmp_path)
    code = main(
        [
            "search",
            "--db",
            store_url,
            "--study",
            name,
            "--space",
            "tiny",
            "--trials",
            "1",
            "--steps",
            "2",
            "--epochs",
            "1",
            "--batch",
            "2",
            "--crops",
            "32",
            "--max-side",
            "64",
            "--resolution",
            "64x64",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "study name" in err and "Traceback" not in err
    assert tree(tmp_path) - before <= {tmp_path / "store.db"}  # at most the (SQLite) store the user named


@pytest.mark.parametrize("command", ["report", "replay"])
def test_report_and_replay_refuse_a_study_name_that_leads_outside(tmp_path, capsys, command: str) -> None:
    before = tree(tmp_path)
    code = main(
        [
            command,
            "--study",
            "../../x",
            "--db",
            f"sqlite:///{tmp_path / 'store.db'}",
            "--results",
            str(tmp_path / "results"),
        ]
    )
    assert code == 2 and "study name '../../x'" in capsys.readouterr().err
    assert tree(tmp_path) == before


def test_export_refuses_a_model_name_that_leads_outside(tmp_path, store, store_url, capsys) -> None:
    work = tmp_path / "work"
    work.mkdir()
    code = main(["export", "../../X", "--to", str(work / "a" / "b" / "ship"), "--db", store_url])
    assert code == 2 and "model name '../../X'" in capsys.readouterr().err
    assert tree(work) == set()


def write_folder(root: Path, trials: list[dict], sidecar: dict | None = None) -> Path:
    """An NN Dataset folder with one img-denoising configuration of model Crafted."""
    stats = root / "stat" / "train" / "img-denoising_denoise_psnr_Crafted"
    stats.mkdir(parents=True)
    (stats / "1.json").write_text(json.dumps(trials))
    if sidecar is not None:
        (root / "stat" / "nnsearch").mkdir()
        (root / "stat" / "nnsearch" / "Crafted.json").write_text(json.dumps(sidecar))
    return root


def test_a_transform_name_that_leads_outside_is_refused_naming_the_file(tmp_path, store) -> None:
    secret = tmp_path / "outside" / "secret.py"
    secret.parent.mkdir()
    secret.write_text("# not part of the NN Dataset folder\n")
    root = write_folder(tmp_path / "nnd", [{**TRIAL, "transform": "../../../outside/secret"}])
    with pytest.raises(NNSearchError, match="1.json: trial 0 .* 'transform' '../../../outside/secret' cannot be"):
        import_nnd(root, db=store)
    assert data(db=store).empty  # nothing recorded


def test_a_sidecar_runtime_that_leads_outside_is_refused_naming_the_file(tmp_path, store) -> None:
    run = {
        "runtime": "../../../../escaped",
        "runtime_version": NND_RUNTIME_VERSION,
        "precision": "int8",
        "device": "android_X-cpu",
        "threads": 0,
        "kind": "measured",
        "height": 0,
        "width": 0,
        "runs": 1,
        "median_ms": 1.0,
        "min_ms": None,
        "max_ms": None,
        "created_at": "1970-01-01T00:00:00",
    }
    root = write_folder(tmp_path / "nnd", [TRIAL], {"arch": None, "nn_stat": None, "latency": [run]})
    with pytest.raises(NNSearchError, match="Crafted.json: latency run 'runtime' '../../../../escaped' cannot be"):
        import_nnd(root, db=store)
    assert data(db=store).empty and run_data(db=store).empty


@pytest.mark.parametrize(
    "key,value",
    [
        ("runtime", "../../../../escaped"),
        ("precision", "/abs/escaped"),
        ("device", "../../../../../escaped/android_X-cpu"),
    ],
)
@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_export_nnd_writes_nothing_outside_its_target_whatever_the_store_holds(
    tmp_path, store, key: str, value: str, force: bool
) -> None:
    """Names recorded by other means (an older version, the Python API) are checked again on export."""
    import_nnd(write_folder(tmp_path / "nnd", [TRIAL]), db=store)
    run = {
        "nn": "Crafted",
        "runtime": "tflite",
        "runtime_version": NND_RUNTIME_VERSION,
        "precision": "int8",
        "device": "android_X-cpu",
        "threads": 0,
        "kind": "measured",
        "height": 0,
        "width": 0,
        "runs": 1,
        "median_ms": 1.0,
        "min_ms": None,
        "max_ms": None,
        "created_at": UNKNOWN_TIME,
    }
    record_bundle(store, Bundle(latencies=[{**run, key: value}]))
    target = tmp_path / "deep" / "er" / "out"
    before = tree(tmp_path)
    with pytest.raises(NNSearchError, match=f"{key} '[^']*escaped"):  # the precision is refused as unknown
        export_nnd(target, db=store, force=force)
    assert tree(tmp_path) - before <= {tmp_path / "deep", tmp_path / "deep" / "er", target}
    assert not list(target.rglob("*.json")) if target.exists() else True


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_export_nnd_does_not_follow_a_link_in_the_target_out_of_it(tmp_path, store, force: bool) -> None:
    import_nnd(write_folder(tmp_path / "nnd", [TRIAL]), db=store)
    target, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (target / "stat").mkdir(parents=True)
    elsewhere.mkdir()
    os.symlink(elsewhere, target / "stat" / "train")
    with pytest.raises(NNSearchError, match=r"leads outside .* \(through a link\)"):
        export_nnd(target, db=store, force=force)
    assert list(elsewhere.iterdir()) == []


def test_a_measurement_job_cannot_write_its_model_outside_the_agents_folder(tmp_path) -> None:
    from nnsearch.latency.agents.agent import Agent
    from nnsearch.latency.agents.interface import RunnerError
    from nnsearch.latency.agents.jobs import Claim

    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    job = Claim(
        id=7,
        token="t",
        device="phone",
        kind="model",
        target="x",
        round=0,
        nn="../../escaped",
        key=None,
        precision="fp32",
        threads=1,
        height=64,
        width=64,
        payload=b"tflite bytes",
        attempts=0,
    )
    with pytest.raises(RunnerError, match="job 7: model name '../../escaped' cannot be used"):
        Agent._file(job, folder)
    assert tree(tmp_path) == {tmp_path / "a", folder}
    assert Agent._file(Claim(**{**job.__dict__, "nn": "Student-1"}), folder).read_bytes() == b"tflite bytes"
