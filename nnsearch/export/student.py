"""Shipping one stored student: verified .tflite and .onnx, its model file, weights and a model card.

Besides `<nn>.tflite` (fp32) it writes `<nn>.int8.tflite`, `<nn>.w8a16.tflite`
and `<nn>.fp16.tflite` (`nnsearch.export.precisions`: calibrated on seeded crops
of the data's training images, each checked for its op set and run), and the
model card has one table row per precision: PSNR / SSIM at full resolution
(tiled) from that file's interpreter output on the validation images, the drop
against fp32, host latency at the export resolution, file size and the input /
output dtype with scale and zero point.

Everything is written into a temporary directory inside the target and moved into
place only after every artefact has been checked against the torch model, so a
failed export leaves no partial files behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnsearch.common.paths import contained_path, safe_component
from nnsearch.common.precision import PRECISIONS, Precision
from nnsearch.errors import ExportError
from nnsearch.export.onnx import export_onnx, onnx_op_types, run_onnx
from nnsearch.export.precisions import CALIBRATION_CROP, StudentQuantizer
from nnsearch.latency.quantize import CALIBRATION_SAMPLES, TFLiteRunner
from nnsearch.latency.tflite import check_native_ops, export_tflite, read_op_names, run_tflite, time_tflite
from nnsearch.model.contract import build_net
from nnsearch.store.dataset_api import data, run_data
from nnsearch.store.engine import Store, open_store
from nnsearch.store.schema import NNStat
from nnsearch.store.stat import STATISTIC, STATISTIC_DETAIL, LatencyStat
from nnsearch.store.stored_model import (
    GIVEN_WEIGHTS,
    StoredModel,
    build_model,
    check_code_allowed,
    load_stored_model,
    with_weights,
)
from nnsearch.train.datasets import DenoiseData, load_data

TOLERANCE = 1e-4


@dataclass(frozen=True)
class PrecisionRow:
    """One precision's line of the model card."""

    precision: Precision
    file: str
    psnr: float
    ssim: float
    drop_db: float
    latency_ms: float
    size_bytes: int
    input: str
    output: str
    ops: tuple[str, ...]


@dataclass(frozen=True)
class ExportResult:
    """Where the artefacts went and how closely each matched torch."""

    directory: Path
    files: tuple[Path, ...]
    tflite_error: float
    onnx_error: float
    reload_error: float
    tflite_ops: tuple[str, ...]
    onnx_ops: tuple[str, ...]
    precisions: tuple[PrecisionRow, ...] = ()

    def line(self) -> str:
        drops = ", ".join(f"{r.precision} {r.drop_db:+.3f} dB" for r in self.precisions if r.precision.quantized)
        return (
            f"exported {len(self.files)} files to {self.directory}: max abs error vs torch "
            f"tflite {self.tflite_error:.2e}, onnx {self.onnx_error:.2e}, reloaded .py+.pt {self.reload_error:.2e}"
            + (f"; PSNR drop vs fp32: {drops}" if drops else "")
        )


def max_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise ExportError(f"output shapes differ: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def _check(what: str, error: float, tolerance: float) -> float:
    if not error <= tolerance:
        raise ExportError(f"{what} output differs from torch by {error:.3g} (> {tolerance:g}); nothing was written")
    return error


#: The .tflite input size (HxW) when neither the caller nor a study gives one (a model imported without a study).
FALLBACK_RESOLUTION = (256, 256)


def export_student(
    name: str,
    target: str | Path,
    db: Store | str | None = None,
    resolution: tuple[int, int] = FALLBACK_RESOLUTION,
    tolerance: float = TOLERANCE,
    prm: str | None = None,
    weights_file: str | Path | None = None,
    data_spec: str | None = None,
    max_side: int | None = None,
    calibration_samples: int = CALIBRATION_SAMPLES,
    seed: int = 0,
    trust_code: bool = False,
) -> ExportResult:
    """Write `<nn>.tflite` (+ .int8/.w8a16/.fp16), `<nn>.onnx`, `<nn>.py`, `<nn>.pt` and MODEL_CARD.md.

    `resolution` (HxW) is the .tflite file's fixed input size and the verification input's; `nnsearch
    export` passes the resolution of the study that found the student unless `--resolution` is given.
    The weights are those of hyperparameter set `prm`, by default the set with the best final PSNR;
    `weights_file`: a state_dict of the model's `Net` to export instead of its stored weights.
    `data_spec` / `max_side` / `seed`: the data (as `nnsearch.train.datasets.load_data`
    takes them) whose training crops calibrate the quantized files and whose
    validation pairs measure each precision's quality. `trust_code`: run the
    stored code of a model that is not nnsearch's own student (`build_model`).
    """
    safe_component(name, "model name")  # <target>/<nn>.tflite, ...
    with open_store(db) as store:
        model = load_stored_model(store, name, prm, weights_file)
        card_facts = _card_facts(store, model)
    check_code_allowed(model, trust_code)  # before anything is written
    height, width = resolution
    if height % model.arch.min_divisor or width % model.arch.min_divisor:
        raise ExportError(
            f"resolution {height}x{width} must be a multiple of {model.arch.min_divisor} "
            f"for {name} ({model.arch.levels} levels)"
        )
    shape = (1, model.arch.in_channels, height, width)
    images = load_data(data_spec, max_side=max_side, seed=seed)
    target = Path(target)
    staging = _staging_dir(target)
    try:
        staged = _write_verified(model, staging, shape, tolerance, card_facts, trust_code)
        precisions = _write_quantized(model, staging, shape, images, calibration_samples, seed, trust_code)
        staged = replace(
            staged,
            files=tuple(p for p in staged.files if p.name != "MODEL_CARD.md")
            + tuple(staging / r.file for r in precisions if r.precision.quantized)
            + (staging / "MODEL_CARD.md",),
            precisions=precisions,
        )
        card_facts["data"] = images.source
        (staging / "MODEL_CARD.md").write_text(model_card(model, card_facts, shape, staged))
        files = _move_into_place(staged.files, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return replace(staged, directory=target, files=files)


def _staging_dir(target: Path) -> Path:
    try:
        target.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".export-", dir=target))
    except OSError as exc:
        raise ExportError(f"cannot write to {target}: {exc.strerror or exc}") from None


def _move_into_place(paths: tuple[Path, ...], target: Path) -> tuple[Path, ...]:
    """Move the checked files from the staging folder into `target` (every destination checked first)."""
    destinations = tuple(contained_path(target, path.name, "export") for path in paths)
    for path, destination in zip(paths, destinations):
        os.chmod(path, 0o644)  # temp files are created private
        os.replace(path, destination)
    return destinations


def _write_verified(
    model: StoredModel,
    out: Path,
    shape: tuple[int, int, int, int],
    tolerance: float,
    card_facts: dict[str, Any],
    trust_code: bool,
) -> ExportResult:
    """Write and check each artefact in `out`; ExportError on the first check that fails."""
    net = build_model(model, shape, trust_code=trust_code)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = net(x).numpy()
    stem = out / model.nn
    tflite = export_tflite(net, stem.with_suffix(".tflite"), shape)
    tflite_ops = tuple(sorted(set(check_native_ops(tflite))))
    tflite_error = _check("TFLite", max_abs_error(run_tflite(tflite, x.numpy()), expected), tolerance)
    onnx_path = export_onnx(net, stem.with_suffix(".onnx"), shape)
    onnx_error = _check("ONNX", max_abs_error(run_onnx(onnx_path, x.numpy()), expected), tolerance)
    py_path, pt_path = stem.with_suffix(".py"), stem.with_suffix(".pt")
    py_path.write_text(model.code)
    pt_path.write_bytes(model.state)
    # the shipped file as its users will run it: nnsearch's own generated text, or code the user trusts
    shipped = build_net(py_path.read_text(), model.nn, shape, shape, {}, trusted=True)
    with torch.no_grad():
        rebuilt = with_weights(shipped, pt_path.read_bytes())(x).numpy()
    reload_error = _check("the reloaded .py + .pt", max_abs_error(rebuilt, expected), 0.0)
    result = ExportResult(
        out,
        (tflite, onnx_path, py_path, pt_path, out / "MODEL_CARD.md"),
        tflite_error,
        onnx_error,
        reload_error,
        tflite_ops,
        tuple(onnx_op_types(onnx_path)),
    )
    result.files[-1].write_text(model_card(model, card_facts, shape, result))
    return result


def _write_quantized(
    model: StoredModel,
    out: Path,
    shape: tuple[int, int, int, int],
    images: DenoiseData,
    samples: int,
    seed: int,
    trust_code: bool,
) -> tuple[PrecisionRow, ...]:
    """Write `<nn>.<precision>.tflite` for each quantized precision and measure every precision's row."""
    net = build_model(model, shape, trust_code=trust_code)
    _, _, height, width = shape
    rows = []
    with StudentQuantizer(net, model.nn, images.train, samples=samples, seed=seed) as quantizer:
        for precision in PRECISIONS:
            path = out / precision.tflite_name(model.nn)
            if precision.quantized:
                quantizer.write(precision, path, height, width)
            quality = quantizer.quality(precision, images.val)
            runner = TFLiteRunner(path)
            timing = time_tflite(path, runs=3, warmup=1)
            rows.append(
                PrecisionRow(
                    precision,
                    path.name,
                    quality.psnr,
                    quality.ssim,
                    0.0,
                    timing.ms,
                    path.stat().st_size,
                    runner.inputs[0].describe(),
                    runner.outputs[0].describe(),
                    tuple(sorted(set(read_op_names(path)))),
                )
            )
    reference = rows[0].psnr
    return tuple(replace(r, drop_db=reference - r.psnr) for r in rows)


def _card_facts(store: Store, model: StoredModel) -> dict[str, Any]:
    """What the model card reports, read from the store."""
    stats = data(nn=model.nn, prm=model.prm_uid, db=store)
    with store.session() as session:
        size = session.get(NNStat, model.nn)
        size_facts = None if size is None else (size.params, size.macs, size.macs_height, size.macs_width)
    return {"stats": stats, "runs": run_data(nn=model.nn, db=store), "size": size_facts}


def model_card(model: StoredModel, facts: dict[str, Any], shape: tuple[int, ...], checks: ExportResult) -> str:
    """MODEL_CARD.md text: architecture, size, quality, latency, training budget, verification."""
    arch, stats = model.arch, facts["stats"]
    lines = [
        f"# {model.nn}",
        "",
        "## Architecture",
        "",
        f"- {arch.describe()}",
        f"- fields: `{json.dumps(arch.to_dict(), sort_keys=True)}`",
        f"- input: NCHW float32 in [0, 1], 1x{arch.in_channels}xHxW with H and W multiples of "
        f"{arch.min_divisor}; output: the denoised image, same shape",
        "",
    ]
    if facts["size"]:
        params, macs, mh, mw = facts["size"]
        lines += [f"- parameters: {params:,}", f"- MACs: {macs / 1e9:.3f} G at {mh}x{mw}", ""]
    lines += ["## Quality", ""] + _quality_lines(stats) + ["", "## Latency", ""] + _latency_lines(facts["runs"])
    lines += _precision_lines(checks.precisions, facts.get("data", ""), shape)
    prm = stats["prm"].iloc[0] if len(stats) else {}
    lines += [
        "",
        "## Training",
        "",
        f"- hyperparameter set `{model.prm_uid}`"
        if model.prm_uid != GIVEN_WEIGHTS
        else "- weights: a state_dict given with `--weights`, not trained by nnsearch",
    ]
    lines += [f"- {key}: {value}" for key, value in sorted(prm.items())]
    if "alpha" in prm:
        lines.append(
            f"- distillation: loss = {prm['alpha']} * L(student, teacher) + "
            f"{1 - float(prm['alpha']):g} * L(student, ground truth)"
        )
    lines += [
        "",
        "## Files and verification",
        "",
        f"- `{model.nn}.tflite`: NHWC input fixed at 1x{shape[2]}x{shape[3]}x{shape[1]}, ops {', '.join(checks.tflite_ops)}; max abs error vs torch "
        f"{checks.tflite_error:.2e} (ai-edge-litert) on a random 1x{shape[1]}x{shape[2]}x{shape[3]} image",
        f"- `{model.nn}.onnx`: NCHW, dynamic height/width, ops {', '.join(checks.onnx_ops)}; max abs error vs torch "
        f"{checks.onnx_error:.2e} (onnxruntime), passes onnx.checker",
        f"- `{model.nn}.py` + `{model.nn}.pt`: the NN Dataset model file and its state_dict; "
        f"`Net(in_shape, out_shape, prm, device)` then `load_state_dict(torch.load('{model.nn}.pt', weights_only=True))`",
        "",
    ]
    return "\n".join(lines)


def _precision_lines(rows: tuple[PrecisionRow, ...], data_source: str, shape: tuple[int, ...]) -> list[str]:
    """The model card's per-precision table (quantized variants)."""
    if not rows:
        return []
    lines = [
        "",
        "## Precisions",
        "",
        "| precision | file | PSNR dB | SSIM | drop vs fp32 dB | latency ms | size KiB | input | output | ops |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.precision} | `{r.file}` | {r.psnr:.3f} | {r.ssim:.4f} | {r.drop_db:.3f} | "
            f"{r.latency_ms:.2f} | {r.size_bytes / 1024:.1f} | {r.input} | {r.output} | {', '.join(r.ops)} |"
        )
    lines += [
        "",
        "Recipes: " + "; ".join(f"{p} = {p.recipe}" for p in PRECISIONS) + ". PSNR / SSIM: mean over "
        f"the validation images of {data_source or 'the data'} at full resolution, tiled, from each file's "
        f"ai-edge-litert output (integer inputs quantized and outputs dequantized with the scale and zero point "
        f"shown); calibration on seeded {CALIBRATION_CROP} px crops of the training images. Latency: the "
        f"{STATISTIC} over 3 invoke() calls on this host, 1 thread, at {shape[2]}x{shape[3]}.",
    ]
    return lines


def _quality_lines(stats: Any) -> list[str]:
    if stats.empty:
        return ["- no quality figures recorded"]
    lines = []
    last = stats.sort_values("epoch").groupby(["metric", "dataset"]).tail(1)
    for _, row in last.sort_values(["dataset", "metric"]).iterrows():
        unit = " dB" if row["metric"] == "psnr" else ""
        lines.append(
            f"- {row['metric'].upper()}: {row['accuracy']:.4f}{unit} on `{row['dataset']}` "
            f"(validation split, after epoch {row['epoch']}, task {row['task']})"
        )
    return lines


def _known(value: Any) -> bool:
    """A recorded number (not None / NaN): predicted latencies may have no min/max."""
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def _latency_lines(runs: Any) -> list[str]:
    if runs.empty:
        return ["- no latency recorded"]
    lines = [
        "| device profile | kind | runtime | threads | input HxW | latency ms | median ms | min-max ms | runs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in runs.iterrows():
        spread = f"{r['min_ms']:.2f}-{r['max_ms']:.2f}" if _known(r["min_ms"]) and _known(r["max_ms"]) else "-"
        latency = LatencyStat(median_ms=r["median_ms"], min_ms=r["min_ms"] if _known(r["min_ms"]) else None).ms
        lines.append(
            f"| {r['device']} | {r['kind']} | {r['runtime']} {r['runtime_version']} | {r['threads']} | "
            f"{r['height']}x{r['width']} | {latency:.2f} | {r['median_ms']:.2f} | {spread} | {r['runs']} |"
        )
    lines += [
        "",
        f"latency ms: the {STATISTIC} ({STATISTIC_DETAIL}), the figure nnsearch compares; measured: "
        "`runs` invoke() calls of the whole .tflite file in the runtime named, after warm-up; predicted: "
        "the sum of the per-layer lookup-table figures for that device profile.",
    ]
    return lines
