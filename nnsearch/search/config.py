"""What defines a study: its space, data, distillation budget, latency settings, sampler and objectives."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from nnsearch.common.precision import Precision
from nnsearch.common.paths import safe_component
from nnsearch.errors import NNSearchError
from nnsearch.latency.quantize import CALIBRATION_SAMPLES
from nnsearch.model.space import SearchSpace
from nnsearch.search.early_stopping import EarlyStopRule
from nnsearch.search.multifidelity import RungSchedule
from nnsearch.train.distill import DistillConfig
from nnsearch.train.teacher_check import MIN_GAIN_DB

OBJECTIVES = ("psnr", "latency_ms")
DIRECTIONS = ("maximize", "minimize")
#: The optional third objective (`StudyConfig.minimize_params`).
PARAMS_OBJECTIVE = ("params", "minimize")

#: Trial user attribute saying what a running trial is doing ("distill" once training starts).
PHASE_ATTR = "phase"
#: Study user attribute holding the search space (`SearchSpace.to_mapping`).
SPACE_ATTR = "space"
#: Study user attribute holding the rest of the configuration (`StudyConfig.settings`).
CONFIG_ATTR = "config"
#: Study user attribute holding the teacher's validation PSNR (dB), set when the teacher is checked.
TEACHER_PSNR_ATTR = "teacher_psnr"
#: Study user attribute holding the study's precision (`StudyConfig.precision`).
PRECISION_ATTR = "precision"


@dataclass(frozen=True)
class LatencyConfig:
    """How candidates are timed: device profile name, input resolution, threads, runs."""

    device: str = "host-cpu"
    height: int = 1088
    width: int = 1920
    threads: int = 1
    runs: int = 3
    warmup: int = 1
    predict: bool = True  # predict from the per-layer lookup table before training
    measure: bool = True  # also time the whole exported model (on 'host-cpu', or by a device's agents)
    # A device served by measurement agents (nnsearch.latency.agents): wait for the agent's whole-model timing
    # before the trial completes (True), or go on with the prediction and let the measurement land later.
    wait: bool = True
    wait_timeout_s: float = 3600.0  # waiting longer goes on with the prediction


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study; stored alongside it (`settings`, `from_settings`)."""

    name: str
    space: SearchSpace
    data_spec: str | None = None
    distill: DistillConfig = field(default_factory=DistillConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    teacher: str = "cpu"  # a preset name or a teacher file (nnsearch.train.teacher_files)
    teacher_steps: int | None = None
    teacher_margin_db: float = MIN_GAIN_DB  # refuse a teacher less than this much better than the noisy input
    sampler: str = "guided"  # a name of nnsearch.search.samplers.SAMPLERS
    seed: int = 0
    max_side: int | None = None
    max_latency_ms: float | None = None  # candidates predicted slower are recorded infeasible, not trained
    early_stop: EarlyStopRule | None = field(default_factory=EarlyStopRule)  # None: train every candidate fully
    minimize_params: bool = False  # a third objective: parameter count
    start_from_references: bool = False  # a new study trains the space's reference students first
    # Quantized search: the precision (fp32, fp16, w8a16, int8) whose lookup table gives the latency objective
    # and whose quantized model's full-resolution PSNR is the quality objective (nnsearch.export.candidate_quality).
    precision: str = Precision.FP32
    calibration_samples: int = CALIBRATION_SAMPLES
    # Multi-fidelity search (nnsearch.search.multifidelity): None trains every candidate for `distill.steps`.
    rungs: RungSchedule | None = None

    def __post_init__(self) -> None:
        safe_component(self.name, "study name")  # <results>/<study>/ holds the study's files
        object.__setattr__(self, "precision", Precision.parse(self.precision))
        if self.calibration_samples < 1:
            raise NNSearchError(f"calibration_samples must be >= 1, got {self.calibration_samples}")
        if self.rungs is not None and self.rungs.steps[0] != self.distill.steps:
            raise NNSearchError(f"the first rung ({self.rungs.steps[0]} steps) must be the distillation's steps "
                                f"({self.distill.steps}); leave --steps out with --rungs")

    @property
    def objectives(self) -> dict[str, str]:
        """Objective name -> Optuna direction, in the order trials report them."""
        pairs = list(zip(OBJECTIVES, DIRECTIONS)) + ([PARAMS_OBJECTIVE] if self.minimize_params else [])
        return dict(pairs)

    def settings(self) -> dict[str, Any]:
        """Everything but the name and the space, as JSON-ready values (stored with the Optuna study)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("name", "space")}
        for key in ("distill", "latency", "early_stop", "rungs"):
            values[key] = None if values[key] is None else dataclasses.asdict(values[key])
        values["distill"]["crops"] = list(values["distill"]["crops"])
        if values["rungs"] is not None:
            values["rungs"]["steps"] = list(values["rungs"]["steps"])
        return values

    @classmethod
    def from_settings(cls, name: str, space: SearchSpace, settings: Mapping[str, Any]) -> "StudyConfig":
        """The config `settings()` described (keys it lacks keep their defaults)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"name", "space"}
        values = {k: v for k, v in settings.items() if k in known}
        try:
            if "distill" in values:
                distill = dict(values["distill"])
                distill["crops"] = tuple(distill.get("crops", DistillConfig().crops))
                values["distill"] = DistillConfig(**distill)
            if "latency" in values:
                values["latency"] = LatencyConfig(**values["latency"])
            if values.get("early_stop") is not None:
                values["early_stop"] = EarlyStopRule(**values["early_stop"])
            if values.get("rungs") is not None:
                values["rungs"] = RungSchedule(**{**values["rungs"], "steps": tuple(values["rungs"]["steps"])})
        except TypeError as exc:
            raise NNSearchError(f"study '{name}': its stored configuration is not readable ({exc})") from None
        return cls(name=name, space=space, **values)


@dataclass(frozen=True)
class HeartbeatConfig:
    """A running trial beats every `interval_s`; silent for `grace_s` means its worker died."""

    interval_s: int = 30
    grace_s: int = 120
    max_retry: int = 2  # how often a lost trial is run again

    def __post_init__(self) -> None:
        if self.interval_s < 1 or self.grace_s <= self.interval_s:
            raise NNSearchError(f"need heartbeat interval >= 1 s and grace period > interval, got "
                                f"interval={self.interval_s} grace={self.grace_s}")
