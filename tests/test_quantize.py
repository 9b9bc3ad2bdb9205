"""Quantized students: signature, int8 / w8a16 / fp16 files, per-precision tables, a quantized study."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nnsearch import data
from nnsearch.cli import main
from nnsearch.common.precision import Precision
from nnsearch.errors import NNSearchError
from nnsearch.export.precisions import StudentQuantizer
from nnsearch.latency.probes import OpKey, write_probe
from nnsearch.latency.quantize import QUANTIZED_OPS, QuantizeError, TFLiteRunner, calibrate
from nnsearch.latency.service import predict_latency
from nnsearch.latency.stored_table import SqlLutBackend
from nnsearch.latency.table import LatencyTable, host_profile
from nnsearch.latency.tflite import export_tflite, make_interpreter, read_op_names, run_tflite
from nnsearch.model.space import load_space
from nnsearch.model.student import build_student
from nnsearch.search.study import LatencyConfig, Study, StudyConfig
from nnsearch.store.dataset_api import run_data
from nnsearch.store.engine import Store
from nnsearch.train.datasets import load_data
from nnsearch.train.distill import DistillConfig

TINY = load_space("tiny").reference("tiny-unet")
#: The dtype each precision's weights and activations are stored in.
TENSOR_TYPE = {"int8": "INT8", "w8a16": "INT16", "fp16": "FLOAT16"}


def _tensor_types(path: Path) -> set[str]:
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    sub = model.Subgraphs(0)
    return {names[sub.Tensors(i).Type()] for i in range(sub.TensorsLength())}


@pytest.fixture(scope="module")
def images():
    return load_data(None, max_side=64, seed=0)


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return build_student(TINY).eval()


def test_written_files_carry_the_serving_default_signature(tmp_path, student):
    path = export_tflite(student, tmp_path / "s.tflite", (1, 3, 32, 32))
    assert make_interpreter(path).get_signature_list() == {"serving_default": {"inputs": ["x"], "outputs": ["output"]}}


@pytest.mark.parametrize("precision", ["int8", "w8a16", "fp16"])
def test_quantized_files_hold_their_dtype_only_allowed_ops_and_run(tmp_path, student, images, precision):
    with StudentQuantizer(student, "tiny", images.train, samples=2) as quantizer:
        path = quantizer.write(precision, tmp_path / f"tiny.{precision}.tflite", 32, 32)
        quality = quantizer.quality(precision, images.val)
        reference = quantizer.quality("fp32", images.val)
    assert TENSOR_TYPE[precision] in _tensor_types(path)
    assert set(read_op_names(path)) <= QUANTIZED_OPS
    runner = TFLiteRunner(path)
    io_dtype = {"int8": "int8", "w8a16": "int16", "fp16": "float32"}[precision]
    assert runner.inputs[0].dtype == io_dtype and runner.outputs[0].dtype == io_dtype
    x = np.random.default_rng(1).random((1, 32, 32, 3), dtype=np.float32)
    fp32 = run_tflite(export_tflite(student, tmp_path / "f.tflite", (1, 3, 32, 32)), x.transpose(0, 3, 1, 2))
    out = runner(x)
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all()
    assert np.abs(out - fp32.transpose(0, 2, 3, 1)).max() < 0.1  # quantized, yet the same function
    assert abs(reference.psnr - quality.psnr) < 1.0 and quality.psnr > 10


def test_calibration_that_does_not_fit_names_the_student_and_step(tmp_path, student, images):
    path = export_tflite(student, tmp_path / "s.tflite", (1, 3, 32, 32))
    with pytest.raises(QuantizeError, match=r"student tiny: calibration sample 0 has shape \(1, 16, 16, 3\)"):
        calibrate(path, "int8", [{"x": np.zeros((1, 16, 16, 3), np.float32)}], "student tiny")
    with pytest.raises(
        QuantizeError, match="student tiny: calibration data: calibration crops of 512 px do not fit training image"
    ):
        StudentQuantizer(student, "tiny", images.train, crop=512)
    with pytest.raises(NNSearchError, match="unknown precision 'int4'"):
        Precision.parse("int4")


def test_per_precision_lookup_tables_are_kept_apart(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    key = OpKey("CONV_2D", 16, 16, 8, 8, 3, 1, "RELU")
    probe = write_probe(key, tmp_path, "int8")
    assert probe.name.endswith(".int8.tflite") and "INT8" in _tensor_types(probe)
    for precision in ("fp32", "int8"):
        LatencyTable(host_profile(1, precision=precision), SqlLutBackend(store), runs=2).build([key])
    fp32 = SqlLutBackend(store).get(host_profile(1), [key])[key]
    int8 = SqlLutBackend(store).get(host_profile(1, precision="int8"), [key])[key]
    assert fp32.device.precision == "fp32" and int8.device.precision == "int8" and fp32.median_ms != int8.median_ms
    store.dispose()


def test_export_probes_at_int8_writes_integer_probes(tmp_path, capsys):
    out = tmp_path / "probes"
    assert (
        main(
            [
                "lut",
                "export-probes",
                "--space",
                "tiny",
                "--resolution",
                "32x32",
                "--out",
                str(out),
                "--precision",
                "int8",
            ]
        )
        == 0
    )
    assert "probe(s) (int8)" in capsys.readouterr().out
    with (out / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {r["precision"] for r in rows} == {"int8"}
    assert all("INT8" in _tensor_types(out / r["file"]) for r in rows)


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "--precision", "int4", "--trials", "1"],
        ["lut", "export-probes", "--out", "x", "--precision", "bf16"],
        ["pareto", "--precision", "INT8"],
    ],
)
def test_an_unknown_precision_exits_2_with_one_line(argv, tmp_path, capsys):
    assert main([*argv, "--db", str(tmp_path / "s.db")] if argv[0] != "lut" else argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown precision" in err and "fp32, fp16, w8a16, int8" in err


def test_an_int8_study_records_int8_quality_and_latency(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    config = StudyConfig.build(
        name="q8",
        space=load_space("tiny"),
        data=None,
        max_side=64,
        teacher_steps=10,
        sampler="random",
        teacher_margin_db=-math.inf,  # a 10-step teacher only exercises the pipeline; quality: test_teacher_check
        distill=DistillConfig(steps=4, epochs=1, batch=2, crops=(32,)),
        early_stop=None,
        latency=LatencyConfig(height=32, width=32, runs=2, warmup=1),
        precision="int8",
        calibration_samples=2,
    )
    store = Store(url)
    study = Study(config, store, verbose=False)
    study.results_dir = tmp_path / "results"
    study.run(2)
    results = study.results()
    assert len(results) == 2 and (results["state"] == "complete").all()
    assert results["psnr"].notna().all() and results["latency_ms"].notna().all()
    rows = data(metric=["psnr", "psnr@int8", "ssim@int8"], db=store)
    for nn in results["nn"]:
        assert set(rows[rows["nn"] == nn]["metric"]) == {"psnr", "psnr@int8", "ssim@int8"}
    runs = run_data(db=store)
    assert set(runs["precision"]) == {"int8"} and set(runs["kind"]) == {"measured", "predicted"}
    columns = data(db=store).columns
    assert "latency_ms@host-cpu@int8" in columns
    arch = load_space("tiny").reference("tiny-unet")
    assert predict_latency(store, arch, "host-cpu", 32, 32, precision="int8") > 0
    with pytest.raises(NNSearchError, match="precision \\(latency.precision\\): stored 'int8', given 'fp32'"):
        Study(config.replace(precision="fp32"), store, verbose=False)
    store.dispose()
