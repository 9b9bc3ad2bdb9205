"""Latency of a study's candidates: the lookup-table prediction before training, the measured timing after.

The measured timing is taken on this host for 'host-cpu', or by the device's
measurement agents (`nnsearch.latency.agents`) for a device they serve: the
exported model is queued once the trial is recorded, and the trial waits for
it (`LatencyTarget.wait`) or goes on with the prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from nnsearch.common.precision import Precision
from nnsearch.errors import LatencyError, NNSearchError
from nnsearch.latency.accuracy import prediction_accuracy
from nnsearch.latency.agents.service import AgentTiming, served_by_agents
from nnsearch.latency.freshness import remeasure, suspect_inflated
from nnsearch.latency.service import (
    HOST_DEVICE,
    latency_table,
    measured_record,
    predict_latency,
    prediction_record,
    resolve_profile,
)
from nnsearch.latency.tflite import export_tflite, time_tflite
from nnsearch.model.arch import Arch
from nnsearch.store.engine import Store
from nnsearch.store.record import LatencyRecord

Log = Callable[[str], None]


class LatencyTarget(Protocol):
    """What a candidate is timed at: a study's latency configuration (`nnsearch.search.config.LatencyConfig`)."""

    @property
    def device(self) -> str: ...
    @property
    def height(self) -> int: ...
    @property
    def width(self) -> int: ...
    @property
    def threads(self) -> int: ...
    @property
    def runs(self) -> int: ...
    @property
    def warmup(self) -> int: ...
    @property
    def predict(self) -> bool: ...
    @property
    def measure(self) -> bool: ...
    @property
    def wait(self) -> bool: ...  # for a device served by agents: wait for the measurement (else the prediction)
    @property
    def wait_timeout_s(self) -> float: ...


class CandidateLatency:
    """Predicts (from the store's lookup table) and measures (TFLite on this host) candidates' latencies.

    Exported models for timing go to `tflite_dir`.
    """

    def __init__(
        self,
        store: Store,
        config: LatencyTarget,
        tflite_dir: Path,
        *,
        max_latency_ms: float | None = None,
        precision: str = Precision.FP32,
        study: str | None = None,
        log: Log = lambda message: None,
    ) -> None:
        self.store = store
        self.config = config
        self.tflite_dir = tflite_dir
        self.max_latency_ms = max_latency_ms
        self.precision = precision  # of the lookup table predicting, and of the model measured
        self.study = study
        self.log = log
        self._agents: AgentTiming | bool | None = False  # False: not looked up yet
        self._exported: dict[str, Path] = {}  # models waiting to be queued for the agents
        self._predicted: dict[str, float] = {}
        self._warned = False

    @property
    def agents(self) -> AgentTiming | None:
        """The agents' timing of the study's device, None when no agent serves it (looked up once)."""
        if self._agents is False:
            lat = self.config
            served = lat.measure and served_by_agents(self.store, lat.device)
            self._agents = (
                AgentTiming(self.store, lat.device, lat.height, lat.width, lat.threads, self.precision, self.study)
                if served
                else None
            )
        return self._agents  # type: ignore[return-value]

    def predicted_ms(self, arch: Arch) -> float:
        """The lookup table's prediction (raises LatencyError where the device's table lacks an entry)."""
        lat = self.config
        return predict_latency(
            self.store, arch, lat.device, lat.height, lat.width, lat.threads, precision=self.precision
        )

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
        predicted = self.predicted_ms(arch)
        self._predicted[arch.name] = predicted
        return prediction_record(self.store, predicted, lat.device, lat.height, lat.width, lat.threads, self.precision)

    def budget_excess(self, predicted: LatencyRecord | None) -> float:
        """Predicted ms over the budget (<= 0: feasible; 0 without a budget or a prediction)."""
        if self.max_latency_ms is None or predicted is None:
            return 0.0
        return predicted.ms - self.max_latency_ms

    @property
    def can_measure(self) -> bool:
        """Whole-model timing is on and the device profile is this host or served by agents."""
        return self.config.measure and (self.config.device == HOST_DEVICE or self.agents is not None)

    def measure(self, student: torch.nn.Module, arch: Arch, quantizer: Any = None) -> LatencyRecord | None:
        """Export `student` to TFLite (through `quantizer` at a precision other than fp32) and time it here.

        For a device served by agents the file is only kept for `land` (None is
        returned). The student is moved back to its device afterwards.
        """
        path = self._export(student, arch, quantizer)
        if self.agents is not None:
            self._exported[arch.name] = path
            return None
        lat = self.config
        timing = time_tflite(path, runs=lat.runs, warmup=lat.warmup, threads=lat.threads)
        record = measured_record(timing, lat.device, lat.height, lat.width, self.precision)
        self._refresh_entries(arch, record.ms)
        return record

    def land(self, arch: Arch, predicted: LatencyRecord | None, log: Log | None = None) -> LatencyRecord | None:
        """Queue a recorded candidate's whole-model timing with the device's agents; its record once timed.

        With `LatencyTarget.wait` the agent's measurement is awaited (up to
        `wait_timeout_s`); otherwise None is returned at once and the measurement
        lands in the store later (the one-latency rule then prefers it).
        """
        log = log or self.log
        path = self._exported.pop(arch.name, None)
        if path is None or self.agents is None:
            return None
        job = self.agents.submit(arch.name, path.read_bytes(), predicted.ms if predicted else None)
        if not self.config.wait:
            log(f"{arch.name}: whole-model timing queued for the agents of '{self.config.device}' (job {job})")
            return None
        measured = self.agents.wait(job, self.config.wait_timeout_s, log)
        self.warn_if_table_predicts_badly(log)
        return measured

    def warn_if_table_predicts_badly(self, log: Log | None = None) -> None:
        """Log (once) a warning when the device's lookup table predicts its measured models badly."""
        if self._warned:
            return
        accuracy = prediction_accuracy(self.store, self.config.device)
        warning = accuracy.warning() if accuracy is not None else None
        if warning:
            self._warned = True
            (log or self.log)(f"warning: {warning}")

    def _refresh_entries(self, arch: Arch, measured_ms: float) -> None:
        """On this host: re-measure the entries of a model the table clearly over-predicts (`latency.freshness`)."""
        predicted = self._predicted.get(arch.name)
        lat = self.config
        if predicted is None or lat.device != HOST_DEVICE or not suspect_inflated(predicted, measured_ms):
            return
        table = latency_table(self.store, resolve_profile(self.store, lat.device, lat.threads, self.precision))
        inflated = remeasure(table, [key for key, _ in table.keys(arch, lat.height, lat.width)])
        self.log(
            f"{arch.name}: the table predicted {predicted:.1f} ms, measured {measured_ms:.1f} ms; re-measured "
            f"its entries, {len(inflated)} were inflated"
        )

    def _export(self, student: torch.nn.Module, arch: Arch, quantizer: Any) -> Path:
        lat = self.config
        path = self.tflite_dir / Precision.parse(self.precision).tflite_name(arch.name)
        if quantizer is not None:
            quantizer.write(self.precision, path, lat.height, lat.width)
        else:
            device = next(student.parameters()).device
            export_tflite(student.cpu().eval(), path, (1, arch.in_channels, lat.height, lat.width))
            student.to(device)
        return path
