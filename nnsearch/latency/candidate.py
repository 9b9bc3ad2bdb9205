"""Latency of a study's candidates: the lookup-table prediction before training, the measured timing after."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from nnsearch.common.precision import Precision
from nnsearch.errors import LatencyError, NNSearchError
from nnsearch.latency.service import HOST_DEVICE, measured_record, predict_latency, prediction_record
from nnsearch.latency.tflite import export_tflite, time_tflite
from nnsearch.model.arch import Arch
from nnsearch.store.engine import Store
from nnsearch.store.record import LatencyRecord


class LatencyTarget(Protocol):
    """What a candidate is timed at: a study's latency configuration (`nnsearch.search.config.LatencyConfig`)."""

    device: str
    height: int
    width: int
    threads: int
    runs: int
    warmup: int
    predict: bool
    measure: bool


class CandidateLatency:
    """Predicts (from the store's lookup table) and measures (TFLite on this host) candidates' latencies.

    Exported models for timing go to `tflite_dir`.
    """

    def __init__(self, store: Store, config: LatencyTarget, tflite_dir: Path, *,
                 max_latency_ms: float | None = None, precision: str = Precision.FP32) -> None:
        self.store = store
        self.config = config
        self.tflite_dir = tflite_dir
        self.max_latency_ms = max_latency_ms
        self.precision = precision  # of the lookup table predicting, and of the model measured

    def predicted_ms(self, arch: Arch) -> float:
        """The lookup table's prediction (raises LatencyError where the device's table lacks an entry)."""
        lat = self.config
        return predict_latency(self.store, arch, lat.device, lat.height, lat.width, lat.threads,
                               precision=self.precision)

    def predicted_or_none(self, arch: Arch) -> float | None:
        """The prediction a sampler may use, None where the device's table cannot give one."""
        try:
            return self.predicted_ms(arch)
        except LatencyError:
            return None

    def predict(self, arch: Arch) -> LatencyRecord | None:
        """The prediction as a record for the store (None when predictions are disabled)."""
        lat = self.config
        if not lat.predict:
            if self.max_latency_ms is not None:
                raise NNSearchError("a latency budget needs lookup-table predictions (predict=True)")
            if not self.can_measure:
                raise NNSearchError(f"device '{lat.device}' cannot be timed here; enable lookup-table predictions")
            return None
        return prediction_record(self.store, self.predicted_ms(arch), lat.device, lat.height, lat.width, lat.threads,
                                 self.precision)

    def budget_excess(self, predicted: LatencyRecord | None) -> float:
        """Predicted ms over the budget (<= 0: feasible; 0 without a budget or a prediction)."""
        if self.max_latency_ms is None or predicted is None:
            return 0.0
        return predicted.ms - self.max_latency_ms

    @property
    def can_measure(self) -> bool:
        """Whole-model timing is on and the device profile is this host."""
        return self.config.measure and self.config.device == HOST_DEVICE

    def measure(self, student: torch.nn.Module, arch: Arch, quantizer: Any = None) -> LatencyRecord:
        """Export `student` to TFLite (through `quantizer` at a precision other than fp32) and time it.

        The student is moved back to its device afterwards.
        """
        lat = self.config
        path = self.tflite_dir / Precision.parse(self.precision).tflite_name(arch.name)
        if quantizer is not None:
            quantizer.write(self.precision, path, lat.height, lat.width)
        else:
            device = next(student.parameters()).device
            export_tflite(student.cpu().eval(), path, (1, arch.in_channels, lat.height, lat.width))
            student.to(device)
        timing = time_tflite(path, runs=lat.runs, warmup=lat.warmup, threads=lat.threads)
        return measured_record(timing, lat.device, lat.height, lat.width, self.precision)
