"""`nnsearch export`: verified .tflite/.onnx, model file + weights, model card; clean failures."""

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import RunsCode

from nnsearch.cli import main
from nnsearch.errors import ExportError
from nnsearch.export.onnx import run_onnx
from nnsearch.export.student import export_student
from nnsearch.latency.tflite import check_native_ops, run_tflite
from nnsearch.model.arch import load_model_code
from nnsearch.model.space import load_space
from nnsearch.search.study import LatencyConfig, Study, StudyConfig
from nnsearch.store.engine import Store
from nnsearch.store.recording import record_trial
from nnsearch.train.distill import DistillConfig

FILES = (
    "{}.tflite",
    "{}.int8.tflite",
    "{}.w8a16.tflite",
    "{}.fp16.tflite",
    "{}.onnx",
    "{}.py",
    "{}.pt",
    "MODEL_CARD.md",
)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """A finished 3-trial study on the tiny space: (study, store URL, root directory)."""
    root = tmp_path_factory.mktemp("select")
    url = f"sqlite:///{root / 'store.db'}"
    config = StudyConfig.build(
        name="tiny",
        space=load_space("tiny"),
        data=None,
        max_side=64,
        teacher_steps=20,
        teacher_margin_db=-math.inf,  # a 20-step teacher only exercises the pipeline; quality: test_teacher_check
        distill=DistillConfig(steps=6, epochs=2, batch=2, crops=(32,)),
        latency=LatencyConfig(height=64, width=96, runs=2, warmup=1),
    )
    study = Study(config, Store(url), verbose=False)
    study.results_dir = root / "results" / "tiny"
    study.run(3)
    return study, url, root


@pytest.fixture(scope="module")
def exported(tiny_study):
    study, url, root = tiny_study
    name = study.results().sort_values("psnr")["nn"].iloc[-1]
    result = export_student(name, root / "ship", db=url, resolution=(64, 64), max_side=64)
    return name, result


def test_export_writes_every_artefact(exported):
    name, result = exported
    assert sorted(p.name for p in result.files) == sorted(f.format(name) for f in FILES)
    assert sorted(p.name for p in result.directory.iterdir()) == sorted(f.format(name) for f in FILES)
    assert result.tflite_error <= 1e-4 and result.onnx_error <= 1e-4 and result.reload_error == 0.0
    card = (result.directory / "MODEL_CARD.md").read_text()
    for fact in ("parameters:", "MACs:", "PSNR:", "SSIM:", "host-cpu", "alpha: 0.9", "steps: 6", "`builtin`"):
        assert fact in card


def test_reloaded_artefacts_match_torch_on_a_random_image(exported):
    name, result = exported
    out = result.directory
    net = load_model_code((out / f"{name}.py").read_text()).Net((1, 3, 64, 64), (1, 3, 64, 64), {}, "cpu")
    net.load_state_dict(torch.load(io.BytesIO((out / f"{name}.pt").read_bytes()), weights_only=True))
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = net.eval()(x).numpy()
    assert np.abs(run_tflite(out / f"{name}.tflite", x.numpy()) - expected).max() <= 1e-4
    assert np.abs(run_onnx(out / f"{name}.onnx", x.numpy()) - expected).max() <= 1e-4
    bigger = torch.rand(1, 3, 32, 96)  # the ONNX graph takes any multiple of the downsampling factor
    with torch.no_grad():
        assert np.abs(run_onnx(out / f"{name}.onnx", bigger.numpy()) - net(bigger).numpy()).max() <= 1e-4
    check_native_ops(out / f"{name}.tflite")


def test_unknown_name_is_a_clear_error(tiny_study, tmp_path, capsys):
    _, url, _ = tiny_study
    assert main(["export", "DenoiseUNet-nope", "--to", str(tmp_path / "x"), "--db", url]) == 2
    assert "no model named 'DenoiseUNet-nope'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_student_without_weights(tmp_path):
    from conftest import model_record

    url = f"sqlite:///{tmp_path / 'store.db'}"
    rec = model_record(0, weights=None)
    record_trial(Store(url), "s", 0, rec)
    with pytest.raises(ExportError, match=f"no weights recorded for {rec.nn}; retrain it with"):
        export_student(rec.nn, tmp_path / "out", db=url)
    assert not (tmp_path / "out").exists()


def test_unwritable_target_and_failed_check_leave_no_files(tiny_study, exported, tmp_path, capsys):
    _, url, _ = tiny_study
    name, _ = exported
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert main(["export", name, "--to", str(blocker / "sub"), "--db", url]) == 2
    assert "cannot write to" in capsys.readouterr().err
    with pytest.raises(ExportError, match="differs from torch"):
        export_student(name, tmp_path / "strict", db=url, resolution=(64, 64), tolerance=-1.0)
    assert list((tmp_path / "strict").iterdir()) == []
    with pytest.raises(ExportError, match="multiple of"):
        # odd sides: no student of the tiny space (2-3 levels, divisor 2 or 4) takes them
        export_student(name, tmp_path / "odd", db=url, resolution=(31, 31))
    assert not (tmp_path / "odd").exists()


def test_cli_export_prints_the_files(tiny_study, exported, tmp_path, capsys):
    _, url, _ = tiny_study
    name, _ = exported
    assert main(["export", name, "--to", str(tmp_path / "cli"), "--db", url, "--resolution", "32x48"]) == 0
    out = capsys.readouterr().out
    assert "max abs error vs torch" in out and Path(tmp_path / "cli" / f"{name}.onnx").exists()


def test_model_card_latency_table_accepts_rows_without_a_spread() -> None:
    """Predicted latencies (and some imported runs) have no min/max; the card must still be written."""
    import pandas as pd

    from nnsearch.export.student import _latency_lines

    row = dict(
        device="host-cpu",
        kind="predicted",
        runtime="lut",
        runtime_version="-",
        threads=1,
        height=1088,
        width=1920,
        median_ms=12.5,
        runs=0,
    )
    runs = pd.DataFrame(
        [
            {**row, "min_ms": 11.0, "max_ms": None},
            {**row, "min_ms": None, "max_ms": None},
            {**row, "min_ms": 11.0, "max_ms": 14.0},
        ]
    )
    lines = _latency_lines(runs)
    assert [line.split("|")[8].strip() for line in lines[2:5]] == ["-", "-", "11.00-14.00"]
    assert [line.split("|")[6].strip() for line in lines[2:5]] == ["11.00", "12.50", "11.00"]  # LatencyStat.ms


def test_cli_export_writes_the_tflite_at_the_study_resolution(tiny_study, exported, tmp_path, capsys):
    """A phone app needs the size it runs at: by default the .tflite input is the study's (64x96 here)."""
    from nnsearch.latency.quantize import TFLiteRunner
    from nnsearch.store.stat import STATISTIC

    _, url, _ = tiny_study
    name, _ = exported
    assert main(["export", name, "--to", str(tmp_path / "app"), "--db", url]) == 0
    assert "input 64x96, the resolution study 'tiny' times at" in capsys.readouterr().out
    for file in (f"{name}.tflite", f"{name}.int8.tflite"):
        assert TFLiteRunner(tmp_path / "app" / file).inputs[0].shape == (1, 64, 96, 3)
    card = (tmp_path / "app" / "MODEL_CARD.md").read_text()
    assert "input fixed at 1x64x96x3" in card and "at 64x96." in card
    # one name for the measured statistic: the card says what the docs' convention says
    assert STATISTIC in card and "wall-clock time of" not in card
    docs = (Path(__file__).resolve().parents[1] / "docs" / "latency.md").read_text()
    assert STATISTIC in " ".join(docs.split())


@pytest.mark.parametrize("kind", ["random bytes", "code-running pickle", "not a state_dict", "other network"])
def test_a_weights_file_that_is_not_this_models_state_dict_exits_2_naming_it(
    tiny_study, exported, tmp_path, capsys, kind
):
    _, url, _ = tiny_study
    name, _ = exported
    weights, marker = tmp_path / "given.pt", tmp_path / "ran"
    if kind == "random bytes":
        weights.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "code-running pickle":
        torch.save({"conv.weight": RunsCode(marker)}, weights)
    elif kind == "not a state_dict":
        torch.save([1, 2, 3], weights)
    else:
        torch.save({"conv.weight": torch.zeros(3, 3)}, weights)
    code = main(["export", name, "--to", str(tmp_path / "out"), "--db", url, "--weights", str(weights)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert (str(weights) in err) if kind != "other network" else ("do not fit" in err)
    assert not marker.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
