"""Tests of the torch -> TFLite exporter and the interpreter helpers."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnsearch.errors import ExportError
from nnsearch.latency import tflite
from nnsearch.model.arch import Arch
from nnsearch.model.space import load_space
from nnsearch.model.student import build_student


def chooser(seed: int, **fixed: Any) -> Callable[[str, Sequence[Any]], Any]:
    """Random choices, except the decisions pinned in `fixed` (which must be valid choices)."""
    rng = random.Random(seed)

    def choose(name: str, choices: Sequence[Any]) -> Any:
        if name in fixed:
            assert fixed[name] in choices, (name, fixed[name], choices)
            return fixed[name]
        return rng.choice(list(choices))

    return choose


CASES: list[tuple[str, dict[str, Any]]] = [
    ("tiny", dict(levels=2, downsample="maxpool", block="plain", skip_0="add", blocks_0=0, blocks_1=0)),
    ("tiny", dict(levels=3, downsample="conv", block="residual", skip_0="concat", skip_1="add", blocks_0=1)),
    (
        "litedenoise",
        dict(
            levels=3,
            downsample="maxpool",
            block="residual",
            skip_0="none",
            skip_1="concat",
            global_residual=False,
            blocks_0=2,
        ),
    ),
    (
        "litedenoise",
        dict(
            levels=4,
            downsample="conv",
            block="plain",
            skip_0="add",
            skip_1="none",
            skip_2="concat",
            global_residual=True,
            blocks_2=2,
        ),
    ),
    (
        "litedenoise",
        dict(
            levels=5,
            downsample="conv",
            block="residual",
            global_residual=False,
            blocks_0=0,
            blocks_1=0,
            blocks_2=0,
            blocks_3=0,
            blocks_4=0,
        ),
    ),
]
SHAPES = [(1, 3, 32, 48), (1, 3, 64, 64), (1, 3, 32, 48), (1, 3, 48, 32), (1, 3, 32, 32)]


def case_arch(index: int) -> Arch:
    space_name, fixed = CASES[index]
    return load_space(space_name).sample(chooser(index, **fixed))


def export_and_compare(
    model: nn.Module, shape: tuple[int, int, int, int], path: Path
) -> tuple[float, list[str], np.ndarray]:
    """Export, run both ways on a random input; returns (max abs error, op names, torch output)."""
    model.eval()
    tflite.export_tflite(model, path, shape)
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = tflite.run_tflite(path, x)
    assert got.shape == expected.shape
    return float(np.abs(got - expected).max()), tflite.check_native_ops(path), expected


def test_cases_cover_every_option() -> None:
    arches = [case_arch(i) for i in range(len(CASES))]
    assert {a.downsample for a in arches} == {"conv", "maxpool"}
    assert {s for a in arches for s in a.skips} == {"concat", "add", "none"}
    assert {a.block for a in arches} == {"residual", "plain"}
    assert {a.global_residual for a in arches} == {True, False}
    assert any(sum(a.blocks) == 0 for a in arches) and any(2 in a.blocks for a in arches)


@pytest.mark.parametrize("index", range(len(CASES)))
def test_student_matches_torch(index: int, tmp_path: Path) -> None:
    torch.manual_seed(index)
    arch = case_arch(index)
    error, ops, expected = export_and_compare(build_student(arch), SHAPES[index], tmp_path / "m.tflite")
    assert error < 1e-4, arch.describe()
    assert set(ops) <= tflite.NATIVE_OPS
    assert ops[-1] == "RELU_N1_TO_1" and "RELU" not in ops  # every ReLU fused, clamp = fused RELU + RELU_N1_TO_1
    assert ("PAD" in ops) == (arch.downsample == "conv")
    assert ("MAX_POOL_2D" in ops) == (arch.downsample == "maxpool")
    assert ((expected > 0) & (expected < 1)).mean() > 0.05  # the clamp does not hide the comparison


def test_clamp_and_global_residual_lowering() -> None:
    arch = case_arch(1)
    graph = tflite.lower(build_student(arch), (1, 3, 32, 32))
    add, clamp = graph.layers[-2:]
    assert (add.op, add.activation, clamp.op) == ("ADD", "RELU", "RELU_N1_TO_1")
    assert graph.inputs[0] in add.inputs
    assert graph.shapes[graph.output] == (1, 32, 32, 3)
    strided = [layer for layer in graph.layers if layer.op == "CONV_2D" and layer.stride == 2]
    assert strided and all(layer.padding == "VALID" for layer in strided)


def test_published_reference_matches_torch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_student(load_space("litedenoise").reference("LiteDenoiseNet"))
    error, ops, _ = export_and_compare(model, (1, 3, 32, 32), tmp_path / "ldn.tflite")
    assert error < 1e-4 and set(ops) <= tflite.NATIVE_OPS


class SharedRelu(nn.Module):
    """A conv output used twice, so its ReLU cannot be fused; method-style clamp."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return (torch.relu(h) + h).clamp(0, 1)


def test_unfusable_relu_stays_an_op(tmp_path: Path) -> None:
    error, ops, _ = export_and_compare(SharedRelu(), (1, 3, 16, 16), tmp_path / "r.tflite")
    assert error < 1e-5
    assert ops == ["CONV_2D", "RELU", "ADD", "RELU_N1_TO_1"]


class Wrapper(nn.Module):
    """Puts one module at the path `decoder.0.<name>` after a valid conv."""

    def __init__(self, name: str, module: nn.Module) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.decoder = nn.ModuleList([nn.Sequential()])
        self.decoder[0].add_module(name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder[0](self.stem(x))


class Functional(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


@pytest.mark.parametrize(
    "name, module, words",
    [
        ("upsample", nn.Upsample(scale_factor=2, mode="bilinear"), "Upsample(mode='bilinear'"),
        ("act", nn.Sigmoid(), "Sigmoid"),
        ("norm", nn.BatchNorm2d(4), "BatchNorm2d"),
        ("up", nn.ConvTranspose2d(4, 4, 2, stride=2), "ConvTranspose2d"),
        ("conv", nn.Conv2d(4, 4, 5, padding=2), "kernel_size=(5, 5)"),
        ("conv", nn.Conv2d(4, 4, 3, padding=1, groups=2), "groups=2"),
        ("conv", nn.Conv2d(4, 4, 3, padding=2, dilation=2), "dilation=(2, 2)"),
        ("pool", nn.MaxPool2d(3, stride=1), "MaxPool2d"),
    ],
)
def test_unsupported_module_is_refused(name: str, module: nn.Module, words: str, tmp_path: Path) -> None:
    with pytest.raises(ExportError) as info:
        tflite.export_tflite(Wrapper(name, module), tmp_path / "bad.tflite", (1, 3, 16, 16))
    message = str(info.value)
    assert message.startswith(f"decoder.0.{name}: ") and words in message
    assert "not an NPU-native op; allowed:" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "fn, words",
    [
        (lambda x: torch.clamp(x, 0, 2), "clamp(min=0, max=2)"),
        (lambda x: F.interpolate(x, scale_factor=2.0), "interpolate"),
        (lambda x: x * 2, "mul"),
        (lambda x: x + 1, "constant 1"),
    ],
)
def test_unsupported_function_is_refused(
    fn: Callable[[torch.Tensor], torch.Tensor], words: str, tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match="not an NPU-native op") as info:
        tflite.export_tflite(Functional(fn), tmp_path / "bad.tflite", (1, 3, 16, 16))
    assert words in str(info.value)


def test_check_native_ops_names_foreign_op_and_file(tmp_path: Path) -> None:
    graph = tflite.Graph([tflite.Layer("RELU_0_TO_1", ["x"], "y")], {"x": (1, 4, 4, 3), "y": (1, 4, 4, 3)}, ["x"], "y")
    path = tmp_path / "foreign.tflite"
    path.write_bytes(tflite.to_flatbuffer(graph))
    assert tflite.read_op_names(path) == ["RELU_0_TO_1"]
    with pytest.raises(ExportError, match=r"foreign\.tflite.*RELU_0_TO_1"):
        tflite.check_native_ops(path)
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer")
    with pytest.raises(ExportError, match="garbage.tflite"):
        tflite.check_native_ops(garbage)


def test_export_overwrites_atomically_and_checks_input_shape(tmp_path: Path) -> None:
    model = build_student(case_arch(0))
    path = tmp_path / "sub" / "m.tflite"
    for _ in range(2):
        assert tflite.export_tflite(model, path, (1, 3, 16, 16)) == path
    assert [p.name for p in path.parent.iterdir()] == ["m.tflite"]
    with pytest.raises(ExportError, match="NCHW"):
        tflite.run_tflite(path, np.zeros((1, 3, 32, 32), np.float32))


def test_timing_is_sane(tmp_path: Path) -> None:
    path = tflite.export_tflite(build_student(case_arch(1)), tmp_path / "t.tflite", (1, 3, 32, 48))
    timing = tflite.time_tflite(path, runs=3, warmup=1, threads=1)
    assert 0 < timing.min_ms <= timing.median_ms <= timing.max_ms < 10_000
    assert (timing.runs, timing.threads, timing.height, timing.width) == (3, 1, 32, 48)
    assert timing.runtime == tflite.RUNTIME
    assert timing.runtime_version == tflite.runtime_version()
    assert tflite.runtime_version().startswith("ai-edge-litert ")
