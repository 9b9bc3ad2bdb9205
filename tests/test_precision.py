"""The Precision type: its names, metric names and file names, and that it is the one owner of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import nnsearch
from nnsearch.common.precision import NAMES, PRECISIONS, QUANTIZED, Precision, PrecisionError
from nnsearch.errors import NNSearchError


def test_names_metric_names_and_file_names():
    assert NAMES == ("fp32", "fp16", "w8a16", "int8")
    assert PRECISIONS[0] is Precision.FP32 and set(QUANTIZED) == set(PRECISIONS) - {Precision.FP32}
    assert Precision.FP32.metric("psnr") == "psnr" and Precision.INT8.metric("psnr") == "psnr@int8"
    assert Precision.W8A16.metric("ssim") == "ssim@w8a16"
    assert Precision.FP32.tflite_name("Net-1") == "Net-1.tflite"
    assert Precision.INT8.tflite_name("Net-1") == "Net-1.int8.tflite"
    assert Precision.FP16.tflite_name("a.32x32") == "a.32x32.fp16.tflite"
    assert Precision.FP32.label() == "" and Precision.INT8.label(" at ") == " at int8"
    assert not Precision.FP32.quantized and all(p.quantized for p in QUANTIZED)
    assert "static_wi8_ai8" in Precision.INT8.recipe


def test_a_precision_is_its_name():
    assert Precision.INT8 == "int8" and f"{Precision.W8A16}" == "w8a16" and str(Precision.FP32) == "fp32"
    assert {"int8": 1}[Precision.INT8] == 1
    assert Precision.parse("fp16") is Precision.FP16 and Precision.parse(Precision.INT8) is Precision.INT8


def test_an_unknown_name_is_a_clear_error():
    with pytest.raises(PrecisionError, match="unknown precision 'int4'; expected one of fp32, fp16, w8a16, int8"):
        Precision.parse("int4")
    with pytest.raises(NNSearchError, match="unknown --precision 'FP32'"):
        Precision.parse("FP32", what="--precision")


def test_the_name_fp32_is_spelled_in_one_module():
    root = Path(nnsearch.__file__).parent
    spelled = sorted(
        str(p.relative_to(root)) for p in root.rglob("*.py") if re.search(r"[\"']fp32[\"']", p.read_text())
    )
    assert spelled == ["common/precision.py"]
